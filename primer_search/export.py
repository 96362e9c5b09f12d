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
  sinusoids, N blocks under ``lax.scan``, final LayerNorm, tied output; and ``load()``,
  which reads trained weights and the tokeniser exported beside the file.

Everything but the program's own statements is real engine code: the file is
:mod:`primer_search.export_runtime` (the host-side init, the ``Block`` frame, the shell,
``load()``), copied statement by statement with its stand-in program replaced by this
one's, and with the engine functions it imports by name (the shell's forward pass, the
tokenisers' encoding and decoding) replaced by their source like the primitives'. This
module writes only statements from the DNA; it holds no code in strings.

Why ``flax.linen``: its variables are a plain nested dict, so the engine's parameter tree
(and trained weights) load into the exported module as they are, with
``flax.serialization``; the program's own structure is kept in plain methods instead of
being re-expressed as sub-module objects.

Parameters live in one ``self.param("program", ...)`` tree whose keys are the engine's
(``h3_CONV_1X1`` owns ``{"kernel": ...}``; multi-head calls carry a leading heads axis).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp

import primitives
from primer_search import export_runtime
from primer_search.files import new_folder
from primer_search.fitness.model import params_to_bytes
from primer_search.program.compiler import as_rng, compile_block, concat_heads, param_name, stack_trees
from primer_search.program.dna import DNA, format_instruction, save_dna
from primer_search.program.validate import MAIN_WIDTH, canonical, output_width
from primitives.numerics import fit_channels
from primitives.registry import invoke
from primitives.source import call_source, standalone_source

__all__ = ["Exported", "WidthMismatch", "export", "export_candidate", "export_source"]

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
    """The statements of one method (``self, p, h0, h1, unit`` its arguments): one per
    instruction, the DNA line as its comment. Every engine function a statement calls is
    appended to ``used``."""

    def write(fn, *args):  # evaluates the registry's recipe as source text
        used.append(fn)
        return call_source(fn, args)

    s = ctx[0]
    widths = _state_widths(dna, ctx)
    lines = []
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


def _init_body(block, used: list) -> list[str]:
    """The statements of ``init_program``: the draws, in the engine's order."""
    entries = _init_lines(_init_plan(block), "        ", used)
    if not entries:
        return ["    return {}"]
    used.append(as_rng)
    return ["    rng = as_rng(seed)", "    return {", *entries, "    }"]


# ---- the file ---------------------------------------------------------------------------

# Modules the exported file imports (as export_runtime imports them).
_LIBRARIES = ("flax", "jax", "numpy")
# What export fills in: export_runtime's stand-in program.
_WIDTH, _INIT, _BLOCK, _TEMPLATE_METHOD = "D_MODEL", "init_program", "Block", "main"


@dataclasses.dataclass
class _Runtime:
    """:mod:`primer_search.export_runtime`, cut into the parts export puts together."""

    imports: list[str]  # its imports of flax, jax and numpy, as written there
    engine: list  # the engine functions it imports by name (export copies their source)
    reserved: tuple[str, ...]  # the names it defines, which copied functions may not take
    # Its top-level statements after the imports, each as its lines (with the comments
    # before it), or as the stand-in's name for the three parts export writes itself.
    parts: list
    init_head: list[str]  # init_program's def line and docstring
    block_head: list[str]  # class Block up to the end of its __call__
    method_head: str  # the stand-in method's def line, whose name export replaces


def _runtime() -> _Runtime:
    lines = inspect.getsource(export_runtime).splitlines()
    body = ast.parse("\n".join(lines)).body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the module docstring
    imports, engine, reserved, parts = [], [], [], []
    init_head = block_head = method_head = None
    end = 0  # last line of the previous statement
    for node in body:
        chunk, start, end = lines[end:node.end_lineno], node.lineno - 1, node.end_lineno
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if module.split(".")[0] in _LIBRARIES:
                imports += lines[start:end]
                reserved += [a.asname or a.name for a in node.names]
            else:  # an engine function, copied with what it uses
                engine += [getattr(export_runtime, a.asname or a.name) for a in node.names]
            continue
        name = node.targets[0].id if isinstance(node, ast.Assign) else node.name
        reserved.append(name)
        if name == _INIT:
            init_head = lines[start:node.body[0].end_lineno]  # def line and docstring
        elif name == _BLOCK:
            k = next(i for i, n in enumerate(node.body) if getattr(n, "name", "") == _TEMPLATE_METHOD)
            block_head = lines[end - len(chunk):node.body[k - 1].end_lineno]  # to __call__'s end
            method_head = lines[node.body[k].lineno - 1]
        parts.append(name if name in (_WIDTH, _INIT, _BLOCK) else chunk)
    return _Runtime(imports, engine, tuple(reserved), parts, init_head, block_head, method_head)


def _strip(lines: list[str]) -> list[str]:
    """``lines`` without the blank ones at either end."""
    text = "\n".join(lines).strip("\n")
    return text.split("\n") if text else []


def export_source(dna: DNA, d_model: int) -> str:
    """The standalone module source for ``dna`` at width ``d_model`` (see module doc)."""
    program = canonical(dna)
    block = compile_block(program, d_model)
    runtime = _runtime()
    # Engine functions the file calls: collected while the statements are written.
    used: list = [fit_channels]
    names = _contexts(program)
    methods = []
    before, _, after = runtime.method_head.partition(f"{_TEMPLATE_METHOD}(")
    for ctx in names:
        methods += ["", f"{before}{names[ctx]}({after}", *_method(program, ctx, names, used)]
    init = runtime.init_head + _init_body(block, used)
    copied = standalone_source(used + runtime.engine, reserved=runtime.reserved)
    written = {_WIDTH: [f"{_WIDTH} = {d_model}", "", "",
                        "# ---- engine functions this block uses, copied from their source ----",
                        "", copied],
               _INIT: init, _BLOCK: _strip(runtime.block_head) + methods}
    parts = [written[part] if isinstance(part, str) else _strip(part) for part in runtime.parts]
    out = ['"""A decoder block found by primer-search, as a standalone Flax module.',
           "",
           "The program, one line per instruction (h0 = h1 = the block input x):",
           "", *[("    " + line).rstrip() for line in str(program).rstrip().splitlines()], "",
           "Imports only jax, flax and numpy. Block maps x [batch, seq, d_model] to the same",
           "shape; LanguageModel wraps N blocks in the fixed shell the search trained them in.",
           "Parameters are drawn on the host with numpy, as the engine draws them.",
           '"""', "", *runtime.imports, "", *parts[0]]  # one blank line after imports
    for part in parts[1:]:
        out += ["", "", *part]
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
    paths. The inputs are checked before anything is written, and a failure removes the
    folders this call created."""
    import json

    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
        raise ValueError(f"export: d_model must be a positive integer, got {d_model!r}")
    if not module_name.isidentifier():
        raise ValueError(f"export: module_name {module_name!r} is not a Python identifier")
    if lm_config is not None:
        missing = {"num_layers", "vocab_size", "tokenizer"} - set(lm_config)
        if missing:
            raise ValueError(f"export: lm_config lacks {sorted(missing)}")
    if vocab is not None and any(not w or any(c.isspace() for c in w) for w in vocab):
        raise ValueError("export: a vocabulary entry is empty or holds whitespace")
    source = export_source(dna, d_model)  # a program that does not compile fails here
    if lm_params is not None:
        weights = params_to_bytes(lm_params)
    with new_folder(out_dir) as out:
        out.mkdir(parents=True, exist_ok=True)
        paths = {"source": out / f"{module_name}.py", "dna": out / "program.dna"}
        if lm_config is not None:
            paths["config"] = out / "model.json"
            paths["config"].write_text(json.dumps({"d_model": d_model, **lm_config}, indent=1))
        if vocab is not None:
            paths["vocab"] = out / "vocab.txt"
            paths["vocab"].write_text("\n".join(vocab), encoding="utf-8")
        if subword_model is not None:
            paths["tokenizer"] = out / "tokenizer.model"
            paths["tokenizer"].write_bytes(subword_model)
        paths["source"].write_text(source)
        save_dna(canonical(dna), paths["dna"])
        if weights is not None:
            paths["weights"] = out / "weights.msgpack"
            paths["weights"].write_bytes(weights)
    return paths


class WidthMismatch(ValueError):
    """A width asked of :func:`export_candidate` that its stored weights were not trained at."""


@dataclasses.dataclass(frozen=True)
class Exported:
    """What :func:`export_candidate` wrote: the paths by kind (as :func:`export` returns
    them), a phrase naming what was exported, whether trained weights went with it, and
    notes for the user (a corpus that could not be read, weights that are missing)."""

    paths: dict[str, Path]
    what: str
    weights: bool
    notes: tuple[str, ...] = ()


def export_candidate(store_path: str | os.PathLike, cid: int, out_dir: str | os.PathLike, *,
                     retrained: bool = False, d_model: int | None = None) -> Exported:
    """Export candidate ``cid`` of a search store, as ``primer-search export STORE ID``
    does: its program at the search's width, with the trained weights the store kept for
    it (``retrained``: those of its best retraining run instead), the language model's
    settings and the tokeniser's files, so that the written module's ``load()`` returns a
    ready model. ``d_model`` exports the program alone at another width (no weights)."""
    from primer_search.search.loop import weights_folder
    from primer_search.search.store import Store

    if d_model is not None and (isinstance(d_model, bool) or not isinstance(d_model, int)
                                or d_model < 1):
        raise ValueError(f"export: d_model must be a positive integer, got {d_model!r}")
    with Store(store_path, readonly=True) as store:
        cand = store.get(cid)
        stored = store.config
    model = stored["fitness"]["model"]
    trained_width = model["d_model"]
    what = f"candidate #{cand.id} of {store_path}"
    path = weights_folder(store_path) / f"{cand.id}.msgpack"
    if retrained:
        from primer_search.retrain import best_retrained_weights

        found = best_retrained_weights(store_path, cand.id)
        if found is None:
            raise ValueError(f"no retrained weights are kept for {what}: retrain it first "
                             f"(`primer-search retrain {store_path} --top K`)")
        row, path = found
        with Store(store_path, readonly=True) as store:
            budget = store.retrain_budget(row.id)
        what = (f"{what}, retrained for {budget} (seed {row.seed}, row #{row.id}, "
                f"fitness {row.fitness:.4g})")
    weights = path.read_bytes() if path.exists() else None
    if weights is not None and d_model not in (None, trained_width):
        raise WidthMismatch(f"d_model {d_model} does not match the stored weights of {what}, "
                            f"trained at d_model {trained_width}: leave the width out, or "
                            "export the program alone (`export --dna FILE`, or export())")
    notes: list[str] = []
    lm_config, tokenizer = None, {}
    if d_model in (None, trained_width):
        lm_config, tokenizer, note = _lm_files(stored, model["num_layers"])
        notes += [note] if note else []
    paths = export(cand.dna, out_dir, d_model or trained_width, weights=weights,
                   lm_config=lm_config, **tokenizer)
    if weights is None:
        notes.append(f"no trained weights are stored for {what} (a search keeps those of its "
                     "best `keep_weights` candidates): the module was exported to initialise "
                     "fresh (LanguageModel(...).init), and weights.msgpack was not written")
    return Exported(paths, what, weights is not None, tuple(notes))


def _lm_files(stored: dict, num_layers: int) -> tuple[dict | None, dict, str | None]:
    """The language model's settings a search trained with and its tokeniser's files (as
    :func:`export` takes them: a word ``vocab`` or a ``subword_model``), from its corpus
    (read from the cache); (None, {}, why) when the corpus cannot be read here."""
    from primer_search.fitness.data import DataConfig, DataError, load_dataset

    try:
        data = load_dataset(DataConfig(**stored["fitness"]["data"]))
    except (DataError, OSError) as e:
        return None, {}, ("model.json and the tokeniser were not written: the search's corpus "
                          f"cannot be read here ({e})")
    config = {"num_layers": num_layers, "vocab_size": data.vocab_size,
              "tokenizer": data.config.tokenizer, "seq_len": data.seq_len}
    if data.config.tokenizer == "word":
        return config, {"vocab": data.vocab}, None
    if data.config.tokenizer == "subword":
        return config, {"subword_model": data.tokenizer.model}, None
    return config, {}, None
