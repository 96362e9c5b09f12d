"""Export a block as a standalone, readable Flax module (Primer's winner leaves the engine).

``export_source(dna, d_model)`` writes Python source that imports only jax, flax and numpy:

* the engine's own functions that the block needs, copied from their source by
  :mod:`primitives.source`: each primitive the program uses (``add``, ``t_mat_mul``, ...),
  its parameter initialiser, and the helpers and constants they reach; nothing here
  knows any op by name, so a newly registered primitive exports as it is;
* ``init_program(seed)``: fresh parameters, drawn on the host by those initialisers in
  program order, exactly as the engine's ``compile_block(dna, d).init(seed, x)`` draws them;
* a ``flax.linen`` module ``Block`` (x: [batch, seq, d_model] -> same shape) whose methods
  mirror the program: ``main``, ``sub1``, ... take their parameters and two arguments, and
  each instruction is one statement, written by the registry's own recipe
  (:func:`primitives.registry.invoke`) with the DNA line as a comment, e.g.
  ``h5 = add(h2, fit_like(h3, h2))  # h5 = ADD(h2, h3)``;
* a ``LanguageModel`` wrapper with the engine's fixed shell: scaled embedding plus
  sinusoids, N blocks under ``lax.scan``, final LayerNorm, tied output.

Why ``flax.linen``: its variables are a plain nested dict, so the engine's parameter tree
(and trained weights) load into the exported module as they are, with
``flax.serialization``; the program's own structure is kept in plain methods instead of
being re-expressed as sub-module objects.

Parameters live in one ``self.param("program", ...)`` tree whose keys are the engine's
(``h3_CONV_1X1`` owns ``{"kernel": ...}``; multi-head calls carry a leading heads axis).
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp

import primitives
from primer_search.fitness.model import (
    init_lm_params,
    layer_norm,
    layer_unroll,
    params_to_bytes,
    sinusoids,
)
from primer_search.program.compiler import as_rng, compile_block, concat_heads, param_name, stack_trees
from primer_search.program.dna import DNA, format_instruction, save_dna
from primer_search.program.validate import MAIN_WIDTH, canonical, output_width
from primitives._numerics import fit_channels
from primitives.registry import invoke
from primitives.source import call_source, standalone_source

__all__ = ["export", "export_source"]

# ---- the program's structure ------------------------------------------------------------

Context = tuple  # (subprogram index, width of h0, width of h1)


def _state_widths(dna: DNA, ctx: Context) -> list:
    """Symbolic widths of a subprogram's states when called with these argument widths."""
    s, w0, w1 = ctx
    widths = [w0, w1]
    for ins in dna.subprograms[s].instructions:
        a, b = widths[ins.in1], widths[ins.in2]
        widths.append(output_width(dna, ins.target, a, b) if ins.is_call
                      else primitives.get(ins.op).shape(a, b, ins.dim))
    return widths


def _contexts(dna: DNA) -> dict[Context, str]:
    """Every (subprogram, argument widths) reached from MAIN, with a method name each. A
    subprogram called with different widths gets one method per case (``sub2``, ``sub2_1``)."""
    names: dict[Context, str] = {}
    todo = [(0, MAIN_WIDTH, MAIN_WIDTH)]
    while todo:
        ctx = todo.pop(0)
        if ctx in names:
            continue
        s = ctx[0]
        k = sum(1 for c in names if c[0] == s)
        base = "main" if s == 0 else f"sub{s}"
        names[ctx] = base if k == 0 else f"{base}_{k}"
        widths = _state_widths(dna, ctx)
        for ins in dna.subprograms[s].instructions:
            if ins.is_call:
                todo.append((ins.target, widths[ins.in1], widths[ins.in2]))
    return names


def _has_params(dna: DNA, sub: int) -> bool:
    """Whether a subprogram owns parameters (then its call site has a key in the tree)."""
    return any(_has_params(dna, ins.target) if ins.is_call
               else primitives.get(ins.op).has_params
               for ins in dna.subprograms[sub].instructions)


def _width(f: Fraction, unit: str = "unit") -> str:
    """Source of ``max(1, round(f * unit))``, a relative width in channels."""
    scaled = unit if f == 1 else f"{unit} * {f.numerator}" + (
        f" / {f.denominator}" if f.denominator != 1 else "")
    return f"max(1, round({scaled}))"


# ---- the block's methods ----------------------------------------------------------------

def _method(dna: DNA, ctx: Context, names: dict[Context, str], used: list) -> list[str]:
    """Source of one method: one statement per instruction, the DNA line as its comment.
    Every engine function a statement calls is appended to ``used``."""

    def write(fn, *args):  # evaluates the registry's recipe as source text
        used.append(fn)
        return call_source(fn, args)

    s = ctx[0]
    widths = _state_widths(dna, ctx)
    lines = [f"    def {names[ctx]}(self, p, h0, h1, unit):"]
    for i, ins in enumerate(dna.subprograms[s].instructions):
        out, a, b = f"h{i + 2}", f"h{ins.in1}", f"h{ins.in2}"
        key = param_name(i, ins)
        if ins.is_call:
            params = f"p[{key!r}]" if _has_params(dna, ins.target) else "{}"
            callee = names[(ins.target, widths[ins.in1], widths[ins.in2])]
            if ins.heads == 1:
                expr = f"self.{callee}({params}, {a}, {b}, unit)"
            else:
                used.append(concat_heads)
                expr = (f"concat_heads(jax.vmap(lambda q: self.{callee}(q, {a}, {b}, unit / "
                        f"{ins.heads}), axis_size={ins.heads})({params}), "
                        f"{_width(widths[i + 2].value)})")
        else:
            expr = invoke(primitives.get(ins.op), a, b, repr(ins.const), f"p[{key!r}]",
                          _width(ins.dim), write)
        lines.append(f"        {out} = {expr}  # {format_instruction(i, ins)}")
    lines.append(f"        return h{len(dna.subprograms[s]) + 1}")
    return lines


# ---- fresh parameters -------------------------------------------------------------------

@dataclasses.dataclass
class _Draw:
    """One instruction's initialiser call, with the widths the engine passes it."""

    op: str
    in_width: int
    out_width: int


@dataclasses.dataclass
class _Stack:
    """A multi-head call's parameters: ``heads`` draws of ``tree``, stacked."""

    heads: int
    tree: dict


def _init_plan(block) -> dict:
    """The engine's parameter tree, each leaf replaced by the init call that draws it.

    ``Block.init_with`` calls its draw function once per parametric instruction, in the
    order of the engine's own initialisation, with the widths it passes; only the first
    head of a multi-head call is kept (every head draws the same way)."""
    plan: dict = {}

    def record(path, op, in_width, out_width):
        node, rest = plan, list(path)
        while len(rest) > 1:
            name = rest.pop(0)
            if rest and isinstance(rest[0], int):  # a head index follows a multi-head key
                stack = node.setdefault(name, _Stack(0, {}))
                stack.heads = max(stack.heads, rest[0] + 1)
                if rest.pop(0) != 0:
                    return {}
                node = stack.tree
            else:
                node = node.setdefault(name, {})
        node[rest[0]] = _Draw(op, in_width, out_width)
        return {}

    block.init_with(record, jax.ShapeDtypeStruct((1, 1, block.d_model), jnp.float32))
    return plan


def _init_lines(tree: dict, indent: str, used: list) -> list[str]:
    """Dict-literal entries that draw ``tree``; Python evaluates them in order, so the
    draws come in the engine's order."""
    lines = []
    for name, node in tree.items():
        if isinstance(node, _Draw):
            init = primitives.get(node.op).init
            used.append(init)
            call = call_source(init, ["rng", str(node.in_width), str(node.out_width)])
            lines.append(f"{indent}{name!r}: {call},")
        elif isinstance(node, _Stack):
            used.append(stack_trees)
            lines.append(f"{indent}{name!r}: stack_trees([{{")
            lines += _init_lines(node.tree, indent + "    ", used)
            lines.append(f"{indent}}} for _ in range({node.heads})]),")
        else:
            lines.append(f"{indent}{name!r}: {{")
            lines += _init_lines(node, indent + "    ", used)
            lines.append(f"{indent}}},")
    return lines


def _init_source(block, used: list) -> list[str]:
    lines = ["def init_program(seed):",
             '    """Fresh parameters, drawn on the host in program order exactly as the engine',
             "    draws them (``compile_block(dna, D_MODEL).init(seed, x)``): ``seed`` is an",
             '    int, or a numpy Generator that the draws continue."""']
    entries = _init_lines(_init_plan(block), "        ", used)
    if not entries:
        return lines + ["    return {}"]
    used.append(as_rng)
    return lines + ["    rng = as_rng(seed)", "    return {", *entries, "    }"]


# ---- the file ---------------------------------------------------------------------------

# Names the exported file defines itself; a copied engine function may not take them.
_RESERVED = ("D_MODEL", "Block", "LanguageModel", "init_program", "init_language_model",
             "_host_init", "_on_device", "nn", "jax", "jnp", "np")

_HELPERS = '''

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
'''

_LM_SOURCE = '''

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
        d = D_MODEL

        def fresh(part):  # one part of the engine's initialisation, drawn on the host
            return lambda key: _host_init(
                lambda rng: init_language_model(rng, self.vocab_size, self.num_layers)[part],
                self.seed, key)

        embed = self.param("embed", fresh("embed"))
        blocks = self.param("blocks", fresh("blocks"))
        norm = self.param("final_norm", fresh("final_norm"))
        x = embed[tokens] * float(np.sqrt(d)) + sinusoids(tokens.shape[-1], d)
        block = BLOCK_CLASS()

        def layer(h, p):
            return block.main(p, h, h, d), None

        x, _ = jax.lax.scan(layer, x, blocks, length=self.num_layers,
                            unroll=layer_unroll(self.num_layers))
        x = layer_norm(x, norm["scale"], norm["bias"])
        return x @ embed.T
'''


_LOADER_SOURCE = '''

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
            ids = []
            for line in text.splitlines():
                if line.split():
                    ids += list(" ".join(line.split()).encode("utf-8")) + [256]
            return np.asarray(ids, np.int32)

        def decode(ids):
            out = bytes(int(i) if i < 256 else 10 for i in ids)
            return out.decode("utf-8", errors="replace")
        return model, variables, encode, decode
    if cfg["tokenizer"] == "subword":
        import sentencepiece

        pieces = sentencepiece.SentencePieceProcessor(model_file=str(here / "tokenizer.model"))

        def encode(text):
            ids = []
            for line in text.splitlines():
                if line.split():
                    ids += pieces.encode(" ".join(line.split())) + [0]
            return np.asarray(ids, np.int32)

        def decode(ids):
            out, sentence = [], []
            for i in map(int, ids):
                if i == 0:
                    out.append(pieces.decode(sentence) + "\\n")
                    sentence = []
                else:
                    sentence.append(i)
            return "".join(out) + (pieces.decode(sentence) if sentence else "")
        return model, variables, encode, decode
    vocab = (here / "vocab.txt").read_text(encoding="utf-8").split("\\n")[:cfg["vocab_size"]]
    index = {word: i for i, word in enumerate(vocab)}
    eos, unk = index["<eos>"], index["<unk>"]

    def encode(text):
        ids = []
        for line in text.splitlines():
            words = line.split()
            if words:
                ids += [index.get(w, unk) for w in words] + [eos]
        return np.asarray(ids, np.int32)

    def decode(ids):
        return " ".join(vocab[int(i)] for i in ids).replace(" <eos> ", "\\n").replace(
            "<eos>", "\\n")
    return model, variables, encode, decode
'''


def export_source(dna: DNA, d_model: int, class_name: str = "Block") -> str:
    """The standalone module source for ``dna`` at width ``d_model`` (see module doc)."""
    program = canonical(dna)
    block = compile_block(program, d_model)
    # Engine functions the file calls: collected while the statements are written.
    used: list = [fit_channels, sinusoids, layer_norm, layer_unroll, init_lm_params, as_rng]
    names = _contexts(program)
    methods = []
    for ctx in names:
        methods += [""] + _method(program, ctx, names, used)
    init = _init_source(block, used)
    copied = standalone_source(used, reserved=_RESERVED + (class_name,))
    out = ['"""A decoder block found by primer-search, as a standalone Flax module.',
           "",
           "The program, one line per instruction (h0 = h1 = the block input x):",
           "", *[("    " + line).rstrip() for line in str(program).rstrip().splitlines()], "",
           "Imports only jax, flax and numpy. Block maps x [batch, seq, d_model] to the same",
           "shape; LanguageModel wraps N blocks in the fixed shell the search trained them in.",
           "Parameters are drawn on the host with numpy, as the engine draws them.",
           '"""', "", "import flax.linen as nn", "import jax",
           "import jax.numpy as jnp", "import numpy as np", "",
           f"D_MODEL = {d_model}", "", "",
           "# ---- engine functions this block uses, copied from their source ----", "",
           copied, _HELPERS, "", *init, "", "",
           f"class {class_name}(nn.Module):",
           '    """The searched block: x [batch, seq, d_model] -> same shape.',
           "",
           "    With ``seed`` set, ``init`` gives exactly the engine's parameters for that",
           '    seed."""', "",
           "    seed: int | None = None", "",
           "    @nn.compact", "    def __call__(self, x):",
           '        p = self.param("program", lambda key: _host_init(init_program, self.seed, key))',
           "        return self.main(p, x, x, D_MODEL)", *methods]
    out += _LM_SOURCE.replace("BLOCK_CLASS", class_name).splitlines()
    out += _LOADER_SOURCE.splitlines()
    return "\n".join(out).rstrip() + "\n"


def export(dna: DNA, out_dir: str | os.PathLike, d_model: int,
           lm_params: dict | None = None, module_name: str = "block",
           weights: bytes | None = None, lm_config: dict | None = None,
           vocab: list[str] | tuple[str, ...] | None = None,
           subword_model: bytes | None = None) -> dict[str, Path]:
    """Write ``{module_name}.py``, ``weights.msgpack`` (when ``lm_params`` or serialised
    ``weights`` are given: the language model's trained parameters, loadable into
    ``LanguageModel``) and ``program.dna``; with ``lm_config`` (``num_layers``,
    ``vocab_size``, ``tokenizer``) also ``model.json``, with a word ``vocab`` its
    ``vocab.txt`` and with a ``subword_model`` (a serialised SentencePiece model) its
    ``tokenizer.model``, which the exported file's ``load()`` reads. Returns the written
    paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"source": out / f"{module_name}.py", "dna": out / "program.dna"}
    if lm_config is not None:
        import json

        missing = {"num_layers", "vocab_size", "tokenizer"} - set(lm_config)
        if missing:
            raise ValueError(f"export: lm_config lacks {sorted(missing)}")
        paths["config"] = out / "model.json"
        paths["config"].write_text(json.dumps({"d_model": d_model, **lm_config}, indent=1))
    if vocab is not None:
        if any(not w or any(c.isspace() for c in w) for w in vocab):
            raise ValueError("export: a vocabulary entry is empty or holds whitespace")
        paths["vocab"] = out / "vocab.txt"
        paths["vocab"].write_text("\n".join(vocab), encoding="utf-8")
    if subword_model is not None:
        paths["tokenizer"] = out / "tokenizer.model"
        paths["tokenizer"].write_bytes(subword_model)
    paths["source"].write_text(export_source(dna, d_model))
    save_dna(canonical(dna), paths["dna"])
    if lm_params is not None:
        weights = params_to_bytes(lm_params)
    if weights is not None:
        paths["weights"] = out / "weights.msgpack"
        paths["weights"].write_bytes(weights)
    return paths
