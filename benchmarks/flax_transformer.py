"""A hand-written Flax Transformer LM: the reference the DNA-compiled seed is timed against.

Same configuration as ``primer_search.program.seeds.transformer()`` inside the fixed shell of
``primer_search.fitness.model``:

* token embedding times ``sqrt(d_model)`` plus ``sinusoids(seq, d_model)``;
* ``num_layers`` pre-norm blocks ``x + Wo MHA(LN(x))`` then ``x + W2 relu(W1 LN(x))``,
  LayerNorm eps 1e-6 with scale and bias, ``heads`` heads, Q/K/V/out projections and the
  FFN (``d_ff * d_model`` hidden units) without biases, scores scaled by
  ``1 / sqrt(head_dim)``, causal mask;
* a final LayerNorm and an output layer tied to the embedding.

It is written as a Flax user would write it (``nn.Dense``, reshape to heads, ``einsum``,
``jax.nn.softmax`` over masked scores) with nothing from the program interpreter.

Layers run under ``nn.scan`` by default (``scan=True``): that is the structure of the DNA
shell (``jax.lax.scan`` over stacked block parameters), so the headline comparison measures
the block's graph and not loop unrolling. ``scan=False`` gives a Python loop of separately
named blocks (XLA sees the layers unrolled, and fuses across them); on a 2-core CPU at the
benchmark's config it was about 5% faster than the scan, so the full benchmark times it too
and reports the ratio against it as a second, stricter baseline.

:class:`FlaxLM` has the ``init(key, tokens)`` / ``apply(params, tokens)`` interface of
:class:`primer_search.fitness.model.LanguageModel`, so ``primer_search.fitness.train.make_steps`` takes it
unchanged. :func:`params_from_dna` maps the parameters of a DNA-compiled ``transformer``
seed onto this model, for checking that both compute the same function.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from primer_search.fitness.config import ModelConfig
from primer_search.fitness.model import sinusoids

__all__ = ["Block", "FlaxLM", "TransformerLM", "params_from_dna"]

LN_EPS = 1e-6


class Block(nn.Module):
    """One pre-norm decoder block; ``__call__(x, _) -> (x, None)`` so it can be scanned."""

    d_model: int
    heads: int = 4
    d_ff: int = 4

    @nn.compact
    def __call__(self, x, _=None):
        batch, seq, d = x.shape
        head_dim = d // self.heads

        # Attention: x + Wo concat_h softmax(mask(q_h k_h^T / sqrt(dh))) v_h
        h = nn.LayerNorm(epsilon=LN_EPS, name="ln1")(x)
        q, k, v = (nn.Dense(d, use_bias=False, name=n)(h).reshape(batch, seq, self.heads,
                                                                   head_dim)
                   for n in ("query", "key", "value"))
        scores = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(head_dim)
        causal = jnp.tril(jnp.ones((seq, seq), bool))
        scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
        probs = jax.nn.softmax(scores, axis=-1)
        attn = jnp.einsum("bhts,bshd->bthd", probs, v).reshape(batch, seq, d)
        x = x + nn.Dense(d, use_bias=False, name="out")(attn)

        # Feed-forward: x + W2 relu(W1 LN(x))
        h = nn.LayerNorm(epsilon=LN_EPS, name="ln2")(x)
        h = nn.relu(nn.Dense(self.d_ff * d, use_bias=False, name="ffn_in")(h))
        x = x + nn.Dense(d, use_bias=False, name="ffn_out")(h)
        return x, None


class TransformerLM(nn.Module):
    vocab_size: int
    d_model: int
    num_layers: int
    heads: int = 4
    d_ff: int = 4
    scan: bool = True

    def setup(self):
        self.embed = nn.Embed(self.vocab_size, self.d_model,
                              embedding_init=nn.initializers.normal(self.d_model ** -0.5))
        if self.scan:
            stack = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                            length=self.num_layers)
            self.blocks = stack(self.d_model, self.heads, self.d_ff)
        else:
            self.blocks = [Block(self.d_model, self.heads, self.d_ff)
                           for _ in range(self.num_layers)]
        self.final_norm = nn.LayerNorm(epsilon=LN_EPS)

    def __call__(self, tokens):
        seq = tokens.shape[-1]
        x = self.embed(tokens) * math.sqrt(self.d_model)
        x = x + jnp.asarray(sinusoids(seq, self.d_model))
        if self.scan:
            x, _ = self.blocks(x, None)
        else:
            for block in self.blocks:
                x, _ = block(x, None)
        return self.embed.attend(self.final_norm(x))  # tied output: h @ embedding.T


@dataclasses.dataclass(frozen=True)
class FlaxLM:
    """``LanguageModel``-compatible wrapper: ``init`` returns the bare params tree."""

    config: ModelConfig
    vocab_size: int
    heads: int = 4
    d_ff: int = 4
    scan: bool = True

    @property
    def module(self) -> TransformerLM:
        c = self.config
        return TransformerLM(self.vocab_size, c.d_model, c.num_layers, self.heads, self.d_ff,
                             self.scan)

    def init(self, seed, tokens) -> dict[str, Any]:
        """Parameters for ``tokens`` of this shape; ``seed`` is an int, a numpy Generator
        (as :meth:`LanguageModel.init` takes) or a JAX PRNG key."""
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2 ** 31))
        key = jax.random.PRNGKey(seed) if isinstance(seed, (int, np.integer)) else seed
        return self.module.init(key, jnp.asarray(tokens))["params"]

    def apply(self, params, tokens):
        """Logits ``[batch, seq, vocab]`` for tokens ``[batch, seq]``."""
        return self.module.apply({"params": params}, tokens)


# ---- parameter mapping from the DNA-compiled seed -----------------------------------

def _ln(p) -> dict:
    return {"scale": p["h9_SCALE"]["scale"], "bias": p["h10_SHIFT"]["shift"]}


def _heads_to_dense(kernel):
    """(L, H, d, dh) per-head projections -> (L, d, H * dh), head-major like the reshape."""
    layers, heads, d, dh = kernel.shape
    return jnp.transpose(kernel, (0, 2, 1, 3)).reshape(layers, d, heads * dh)


def params_from_dna(dna_params, scan: bool = True) -> dict[str, Any]:
    """Flax params equal to the LM params of the DNA ``transformer`` seed.

    Follows the parameter keys of the canonical seed (``h3_sub2`` is the multi-head call,
    ``h2``/``h3``/``h4`` its Q/K/V projections, ...). Raises ``KeyError`` if the compiler
    names them differently.
    """
    b = dna_params["blocks"]
    att = b["h3_sub2"]
    stacked = {
        "ln1": _ln(b["h2_sub1"]),
        "query": {"kernel": _heads_to_dense(att["h2_CONV_1X1"]["kernel"])},
        "key": {"kernel": _heads_to_dense(att["h3_CONV_1X1"]["kernel"])},
        "value": {"kernel": _heads_to_dense(att["h4_CONV_1X1"]["kernel"])},
        "out": {"kernel": b["h4_CONV_1X1"]["kernel"]},
        "ln2": _ln(b["h6_sub1"]),
        "ffn_in": {"kernel": b["h7_CONV_1X1"]["kernel"]},
        "ffn_out": {"kernel": b["h9_CONV_1X1"]["kernel"]},
    }
    out = {"embed": {"embedding": dna_params["embed"]},
           "final_norm": dict(dna_params["final_norm"])}
    if scan:
        out["blocks"] = stacked
    else:
        layers = int(np.shape(stacked["out"]["kernel"])[0])
        for i in range(layers):
            out[f"blocks_{i}"] = jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
    return out
