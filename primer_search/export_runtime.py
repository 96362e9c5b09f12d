"""The exported file's own code, as engine code: :mod:`primer_search.export` copies this module.

An exported block (``primer-search export``) is this module's source with a program filled
in. Export copies it top-level statement by statement, as it copies primitives:

* the stand-in program (``D_MODEL``, the body of ``init_program``, the methods of ``Block``
  after ``__call__``) is replaced by the exported program's;
* the engine functions imported here by name (the shell's :func:`shell_hidden` and
  :func:`init_lm_params`, the tokenisers' encoding and decoding) are replaced by their
  source, copied with :func:`primitives.source.standalone_source` with everything they use;
* everything else is copied as it is: the host-side parameter drawing, the
  ``LanguageModel`` shell and ``load()``.

So this module may import only flax, jax and numpy (under the names the exported file
uses; the standard library inside functions), besides engine functions by name. It runs
as it is, with the stand-in: MAIN with no instructions (the block returns its input) and
no parameters; the tests check that shell against the engine's.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from primer_search.fitness.data.tokenizers import (
    byte_decode,
    byte_encode,
    subword_decode,
    subword_encode,
    word_decode,
    word_encode,
)
from primer_search.fitness.model import init_lm_params, shell_hidden
from primer_search.program.compiler import as_rng

# The stand-in program's width; an exported file sets its block's.
D_MODEL = 8


def _host_init(draw, seed, key):
    """The parameters ``draw(rng)`` makes, ``rng`` a numpy Generator: seeded by ``seed``
    when one is given (then they are exactly the engine's for that seed), else by the bits
    of Flax's key. Flax also traces initialisers (to check shapes on every apply), so the
    key's draw runs as a host callback, which works under ``jax.jit`` too."""
    if seed is not None:
        return _on_device(draw(np.random.default_rng(seed)))
    like = draw(np.random.default_rng(0))
    shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), like)
    return jax.pure_callback(lambda bits: draw(np.random.default_rng(np.asarray(bits))),
                             shapes, jax.random.key_data(key))


def _on_device(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


def init_program(seed):
    """Fresh parameters, drawn on the host in program order exactly as the engine
    draws them (``compile_block(dna, D_MODEL).init(seed, x)``): ``seed`` is an
    int, or a numpy Generator that the draws continue."""
    return {}  # the stand-in program has no parameters


class Block(nn.Module):
    """The searched block: x [batch, seq, d_model] -> same shape.

    With ``seed`` set, ``init`` gives exactly the engine's parameters for that
    seed."""

    seed: int | None = None

    @nn.compact
    def __call__(self, x):
        p = self.param("program", lambda key: _host_init(init_program, self.seed, key))
        return self.main(p, x, x, D_MODEL)

    # The stand-in program; export writes one method like this per subprogram (and
    # argument widths), one statement per instruction.
    def main(self, p, h0, h1, unit):
        return h1


def init_language_model(seed, vocab_size, num_layers):
    """Fresh parameters of the language model, drawn as the engine draws them: the
    embedding, then each block's parameters, from one numpy Generator."""
    return init_lm_params(as_rng(seed), init_program, vocab_size, D_MODEL, num_layers)


class LanguageModel(nn.Module):
    """Embedding * sqrt(d) + sinusoids, N blocks, final LayerNorm, tied output.

    With ``seed`` set, ``init`` gives exactly the engine's parameters for that seed."""

    vocab_size: int
    num_layers: int
    seed: int | None = None

    @nn.compact
    def __call__(self, tokens):
        def fresh(part):  # one part of the engine's initialisation, drawn on the host
            return lambda key: _host_init(
                lambda rng: init_language_model(rng, self.vocab_size, self.num_layers)[part],
                self.seed, key)

        params = {part: self.param(part, fresh(part)) for part in ("embed", "blocks", "final_norm")}
        block = Block()
        x = shell_hidden(params, tokens, lambda p, h: block.main(p, h, h, D_MODEL), self.num_layers)
        return x @ params["embed"].T


def load(folder=None):
    """The trained language model exported beside this file, usable on text without
    primer-search: returns (model, variables, encode, decode).

    ``model.json`` gives the model's size and tokeniser, ``weights.msgpack`` its trained
    parameters (variables is None without them: ``model.init`` draws fresh ones) and
    ``vocab.txt`` a word vocabulary, one token per line (``tokenizer.model`` a SentencePiece
    model, for subwords). ``encode(text)`` tokenises as the search did: each non-empty
    line's whitespace-separated words, then an end of sentence; words are looked up in
    the vocabulary (unknown ones as ``<unk>``), or, for a byte tokeniser, written as their
    UTF-8 bytes with 256 as the end, or, for subwords, cut into the model's pieces (the
    package ``sentencepiece`` is needed) with 0 as the end. ``decode(ids)`` is the
    reverse, with a newline for each end of sentence."""
    import json
    import pathlib

    import flax.serialization

    here = pathlib.Path(folder) if folder is not None else pathlib.Path(__file__).parent
    cfg = json.loads((here / "model.json").read_text())
    if cfg["d_model"] != D_MODEL:
        raise ValueError(f"model.json has d_model {cfg['d_model']}, this block was exported "
                         f"at {D_MODEL}")
    model = LanguageModel(vocab_size=cfg["vocab_size"], num_layers=cfg["num_layers"])
    variables = None
    if (here / "weights.msgpack").exists():
        variables = flax.serialization.msgpack_restore((here / "weights.msgpack").read_bytes())
    if cfg["tokenizer"] == "byte":
        def encode(text):
            return byte_encode(text.splitlines())

        def decode(ids):
            return byte_decode(ids)
    elif cfg["tokenizer"] == "subword":
        import sentencepiece

        pieces = sentencepiece.SentencePieceProcessor(model_file=str(here / "tokenizer.model"))

        def encode(text):
            return subword_encode(pieces, text.splitlines())

        def decode(ids):
            return subword_decode(pieces, ids)
    else:
        vocab = (here / "vocab.txt").read_text(encoding="utf-8").split("\n")[:cfg["vocab_size"]]
        index = {word: i for i, word in enumerate(vocab)}

        def encode(text):
            return word_encode(index, text.splitlines())

        def decode(ids):
            return word_decode(vocab, ids)
    return model, variables, encode, decode
