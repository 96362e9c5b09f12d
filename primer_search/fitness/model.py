"""The fixed language-model shell around a searched block.

As in Primer (So et al. 2021, Sec. 2), only the decoder block is searched; the shell is
fixed: token embedding (scaled by sqrt(d_model)) plus sinusoidal position signal, N
stacked copies of the block (same program, separate weights), a final LayerNorm, and an
output layer tied to the embedding.

The N blocks run under ``jax.lax.scan`` over stacked parameters, so the block is traced
once whatever the depth. On the CPU the scan is unrolled (:func:`layer_unroll`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from primer_search.fitness.config import ModelConfig
from primer_search.program.compiler import Block, as_rng, compile_block, stack_trees
from primer_search.program.dna import DNA

__all__ = ["LanguageModel", "build_lm", "count_params", "layer_norm", "layer_unroll",
           "params_to_bytes", "shell_hidden", "sinusoids"]

LN_EPS = 1e-6


def sinusoids(seq_len: int, d_model: int) -> np.ndarray:
    """The Transformer's fixed position signal, ``[seq_len, d_model]`` (sin | cos halves)."""
    half = d_model // 2
    freqs = np.exp(-np.log(10_000.0) * np.arange(half) / max(half - 1, 1))
    angles = np.arange(seq_len)[:, None] * freqs[None, :]
    out = np.zeros((seq_len, d_model), np.float32)
    out[:, :half] = np.sin(angles)
    out[:, half:2 * half] = np.cos(angles)
    return out


def layer_norm(x, scale, bias, eps: float = LN_EPS):
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * scale + bias


@dataclasses.dataclass(frozen=True)
class LanguageModel:
    """``init(key, tokens) -> params`` and ``apply(params, tokens) -> logits``."""

    config: ModelConfig
    # Number of token types, including padding/unknown tokens (the data decides it).
    vocab_size: int
    block: Block
    # Layers per step of the shell's scan; None: :func:`layer_unroll`'s choice.
    unroll: int | None = None

    def init(self, seed, tokens) -> dict[str, Any]:
        """Parameters as device arrays; ``seed`` is an int or a numpy Generator."""
        cfg = self.config
        x = jax.ShapeDtypeStruct(tuple(tokens.shape) + (cfg.d_model,), jnp.float32)
        params = init_lm_params(as_rng(seed), lambda rng: self.block.init(rng, x),
                                self.vocab_size, cfg.d_model, cfg.num_layers)
        return jax.tree_util.tree_map(jnp.asarray, params)

    def hidden(self, params, tokens):
        """Final hidden states ``[batch, seq, d_model]`` before the output layer."""
        return shell_hidden(params, tokens, self.block.apply, self.config.num_layers, self.unroll)

    def apply(self, params, tokens):
        """Logits ``[batch, seq, vocab]`` for tokens ``[batch, seq]``."""
        return self.hidden(params, tokens) @ params["embed"].T


def shell_hidden(params, tokens, apply_block, num_layers: int, unroll: int | None = None):
    """The shell up to its output layer: ``params["embed"][tokens]`` scaled by sqrt(d_model)
    plus :func:`sinusoids`, then ``num_layers`` blocks (``apply_block(block_params, h)``)
    under ``lax.scan`` over ``params["blocks"]``, then the final LayerNorm. ``unroll``:
    layers per step of the scan, None for :func:`layer_unroll`'s choice. The engine's
    :class:`LanguageModel` and the exported one both run this function (export copies it)."""
    embed = params["embed"]
    d_model = embed.shape[-1]
    x = embed[tokens] * float(np.sqrt(d_model)) + jnp.asarray(sinusoids(tokens.shape[-1], d_model))

    def layer(h, block_params):
        return apply_block(block_params, h), None

    x, _ = jax.lax.scan(layer, x, params["blocks"], length=num_layers,
                        unroll=unroll or layer_unroll(num_layers))
    return layer_norm(x, params["final_norm"]["scale"], params["final_norm"]["bias"])


def layer_unroll(num_layers: int) -> int:
    """How many layers one step of the shell's scan runs: all of them on the CPU, one
    elsewhere.

    XLA's CPU backend leaves the gradient convolutions of a block inside a loop in a
    layout its fast convolution kernels do not take, and runs them through generic loops:
    measured by ``benchmarks/layer_loop.py`` (2 layers), a train step of a block with one
    CONV_15X1 took 306 ms under the loop and 20 ms unrolled. Unrolled, the seed blocks'
    steps are also 10-30% faster on the CPU (the loop copies its carried state); the
    compile takes as long at 2 layers and about 1.3x as long at 4. The trace is the same
    either way: the block is traced once."""
    return num_layers if jax.default_backend() == "cpu" else 1


def init_lm_params(rng, init_block, vocab_size: int, d_model: int, num_layers: int) -> dict:
    """Fresh language-model parameters as host arrays, drawn from one numpy Generator in
    a fixed order: the embedding, then each block's (``init_block(rng)``). The exported
    module copies this function, so its fresh start is the engine's."""
    embed = rng.standard_normal((vocab_size, d_model), np.float32)
    layers = [init_block(rng) for _ in range(num_layers)]
    return {
        "embed": (embed * d_model ** -0.5).astype(np.float32),
        "blocks": stack_trees(layers),
        "final_norm": {"scale": np.ones((d_model,), np.float32),
                       "bias": np.zeros((d_model,), np.float32)},
    }


def build_lm(dna: DNA, config: ModelConfig, vocab_size: int) -> LanguageModel:
    """The language model of ``config``'s size around ``dna``'s block."""
    return LanguageModel(config=config, vocab_size=vocab_size,
                         block=compile_block(dna, config.d_model))


def params_to_bytes(params) -> bytes:
    """A language model's parameters as ``weights.msgpack`` bytes: flax.serialization of
    ``{"params": params}`` with every leaf on the host. The search keeps its best
    candidates' weights in this form, and ``export`` writes it."""
    import flax.serialization

    host = jax.tree_util.tree_map(np.asarray, params)
    return flax.serialization.to_bytes({"params": host})


def count_params(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
