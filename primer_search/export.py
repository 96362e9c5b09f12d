"""Export a block as a standalone, readable Flax module (Primer's winner leaves the engine).

``export_source(dna, d_model)`` writes Python source that imports only jax, flax and numpy:

* a ``flax.linen`` module ``Block`` (x: [batch, seq, d_model] -> same shape) whose methods
  mirror the program: ``main``, ``sub1``, ... take their parameters and two arguments,
  and each instruction is one statement named after its op, with the DNA line as a
  comment;
* a ``LanguageModel`` wrapper with the engine's fixed shell: scaled embedding plus
  sinusoids, N blocks under ``lax.scan``, final LayerNorm, tied output.

Why ``flax.linen``: its variables are a plain nested dict, so the engine's parameter tree
(and trained weights) load into the exported module as they are, with
``flax.serialization``; the program's own structure is kept in plain methods instead of
being re-expressed as sub-module objects.

Parameters live in one ``self.param("program", ...)`` tree whose keys are the engine's
(``h3_CONV_1X1`` owns ``{"kernel": ...}``; multi-head calls carry a leading heads axis).
The initialiser in the file reproduces the engine's distributions for a fresh start.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

import primitives
from primer_search.compiler import compile_block, param_name
from primer_search.dna import DNA, format_instruction, save_dna
from primer_search.model import sinusoids
from primer_search.validate import MAIN_WIDTH, canonical, output_width
from primitives import extended
from primitives._numerics import fit_channels

__all__ = ["export_source", "export", "ExportError"]


class ExportError(ValueError):
    """An export cannot be written as asked (the message says why)."""


# One expression template per primitive: a, b are the input names, c the constant, p the
# instruction's parameters, T/C the sequence length and a's channel count.
_BINARY = {"ADD": "{a} + _fit({b}, {a})", "DIFFERENCE": "{a} - _fit({b}, {a})",
           "MULTIPLY": "{a} * _fit({b}, {a})", "DIVIDE": "{a} / _safe_den(_fit({b}, {a}))",
           "MAX": "jnp.maximum({a}, _fit({b}, {a}))", "MIN": "jnp.minimum({a}, _fit({b}, {a}))"}
_UNARY = {"ABS_ROOT": "jnp.sqrt(jnp.abs({a}) + 1e-30)", "SQUARE": "jnp.square({a})",
          "EXP": "jnp.exp(jnp.minimum({a}, 80.0))", "LOG": "jnp.log(jnp.abs({a}) + 1e-30)",
          "ABS": "jnp.abs({a})", "RECIP": "1.0 / _safe_den({a})", "SIGN": "jnp.sign({a})",
          "COS": "jnp.cos({a})", "SIN": "jnp.sin({a})", "TANH": "jnp.tanh({a})",
          "SIGMOID": "jax.nn.sigmoid({a})", "C_MUL": "{a} * {c}", "C_ADD": "{a} + {c}",
          "SCALE": "{a} * {p}['scale']", "SHIFT": "{a} + {p}['shift']",
          "RED_MEAN": "jnp.mean({a}, axis=-1, keepdims=True)",
          "RED_SUM": "jnp.sum({a}, axis=-1, keepdims=True)",
          "RED_MIN": "jnp.min({a}, axis=-1, keepdims=True)",
          "RED_MAX": "jnp.max({a}, axis=-1, keepdims=True)",
          "RED_PROD": "_finite(jnp.prod({a}, axis=-1, keepdims=True))",
          "T_MAT_MUL": "_t_mat_mul({a}, _fit({b}, {a}))",
          "MAT_MUL": "_mat_mul({a}, {b})", "MASK": "_mask({a})",
          "CUM_SUM": "jnp.cumsum({a}, axis=1)", "CUM_PROD": "_finite(jnp.cumprod({a}, axis=1))",
          "CONV_1X1": "{a} @ {p}['kernel']"}
for _k in (3, 7, 15, 31):
    _UNARY[f"CONV_{_k}X1"] = "_causal_conv({a}, {p}['kernel'])"
    _UNARY[f"DCONV_{_k}X1"] = "_depthwise_conv({a}, {p}['taps'])"
# The primitives of ``primitives.extended`` call its functions, which the exported file
# carries verbatim (only those its program uses); {w} is the output width.
_BINARY["DECAY_SUM"] = "decay_sum({a}, _fit({b}, {a}))"
_UNARY.update({"DELAY": "delay({a})", "LONG_CONV": "long_conv({a}, {p})",
               "MONARCH": "monarch({a}, {p}, {w})",
               "RAND_FEATURES": "random_features({a}, {w}, {c})", "ALIBI": "alibi({a}, {c})"})
_EXTENDED_SOURCES = {
    "DELAY": [extended.delay], "DECAY_SUM": [extended.decay_sum],
    "LONG_CONV": [extended.long_conv_modes, extended.long_conv_filter, extended.long_conv],
    "MONARCH": [extended.monarch],
    "RAND_FEATURES": [extended.orthogonal_features, extended.random_features],
    "ALIBI": [extended.alibi]}

_HELPERS = '''

def _fit(x, like):
    """Resize x's channels to like's (see fit_channels)."""
    return fit_channels(x, like.shape[-1])


def _fit_to(x, width):
    return fit_channels(x, width)


def _causal(rows, cols):
    return jnp.arange(cols)[None, :] <= jnp.arange(rows)[:, None]


def _finite(y):
    return jnp.nan_to_num(y, nan=0.0)


def _safe_den(b):
    sign = jnp.where(b < 0, -1.0, 1.0).astype(b.dtype)
    return jnp.where(jnp.abs(b) < 1e-12, sign * 1e-12, b)


def _t_mat_mul(a, b):
    """Causal scores a b^T / sqrt(channels), zero above the diagonal."""
    seq = a.shape[1]
    scores = jnp.einsum("btc,bsc->bts", a, b) / np.sqrt(a.shape[-1])
    return jnp.where(_causal(seq, seq), scores, 0.0)


def _mat_mul(a, b):
    """out_t = sum_{j <= t} a[t, j] b_j, a read as a causal [seq, seq] matrix."""
    seq = a.shape[1]
    visible = jnp.where(_causal(seq, seq), _fit_to(a, seq), 0.0)
    return jnp.einsum("bts,bsc->btc", visible, _finite(b))


def _mask(a):
    return jnp.where(_causal(a.shape[1], a.shape[-1]), a, -1e30)


def _shift_right(x, lag):
    pad = jnp.zeros(x.shape[:1] + (lag,) + x.shape[2:], x.dtype)
    return jnp.concatenate([pad, x[:, :-lag]], axis=1)[:, : x.shape[1]]


def _causal_conv(x, kernel):
    """y_t = sum_i x_{t-i} @ kernel[i], zero-padded on the left."""
    k = kernel.shape[0]
    return jax.lax.conv_general_dilated(x, kernel[::-1], window_strides=(1,),
                                        padding=[(k - 1, 0)],
                                        dimension_numbers=("NWC", "WIO", "NWC"))


def _depthwise_conv(x, taps):
    """y_t = sum_i taps[i] * x_{t-i}, one filter per channel."""
    out = taps[0] * x
    for lag in range(1, taps.shape[0]):
        out = out + taps[lag] * _shift_right(x, lag)
    return out


def _heads(ys, width):
    """(H, B, T, w) branch outputs -> (B, T, H * w), fitted to `width` channels."""
    h, b, t, w = ys.shape
    return _fit_to(jnp.transpose(ys, (1, 2, 0, 3)).reshape(b, t, h * w), width)
'''


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


def _method(dna: DNA, ctx: Context, names: dict[Context, str]) -> list[str]:
    s = ctx[0]
    widths = _state_widths(dna, ctx)
    lines = [f"    def {names[ctx]}(self, p, h0, h1, unit):"]
    for i, ins in enumerate(dna.subprograms[s].instructions):
        out, a, b = f"h{i + 2}", f"h{ins.in1}", f"h{ins.in2}"
        key = param_name(i, ins)
        reads = None if ins.is_call else primitives.get(ins.op).reads()
        lines.append(f"        # {format_instruction(i, ins, reads)}")
        if ins.is_call:
            callee = names[(ins.target, widths[ins.in1], widths[ins.in2])]
            if ins.heads == 1:
                lines.append(f"        {out} = self.{callee}(p.get({key!r}, {{}}), {a}, {b}, "
                             "unit)")
            else:
                f = widths[i + 2].value
                lines.append(f"        {out} = _heads(jax.vmap(lambda q: self.{callee}("
                             f"q, {a}, {b}, unit / {ins.heads}), axis_size={ins.heads})"
                             f"(p.get({key!r}, {{}})), max(1, round({f.numerator} * unit / "
                             f"{f.denominator})))")
            continue
        template = _BINARY.get(ins.op) or _UNARY[ins.op]
        f = widths[i + 2].value
        width = f"max(1, round({f.numerator} * unit / {f.denominator}))"
        expr = template.format(a=a, b=b, c=repr(ins.const), p=f"p[{key!r}]", w=width)
        lines.append(f"        {out} = {expr}")
    lines.append(f"        return h{len(dna.subprograms[s]) + 1}")
    return lines


def _init_lines(tree, indent: str) -> list[str]:
    """Source of a nested dict literal of initialisers, in program order."""
    lines = []
    for name, node in tree.items():
        if isinstance(node, dict) and not any(isinstance(v, np.ndarray) for v in node.values()):
            lines.append(f"{indent}{name!r}: {{")
            lines += _init_lines(node, indent + "    ")
            lines.append(f"{indent}}},")
            continue
        op = name.split("_", 1)[1]
        entries = []
        for pname, arr in node.items():
            shape = tuple(arr.shape)
            if pname == "kernel":
                fan_in = int(np.prod(shape[-3:-1])) if op != "CONV_1X1" else shape[-2]
                entries.append(f"{pname!r}: _normal(next(keys), {shape}, {fan_in})")
            elif pname == "taps":
                entries.append(f"{pname!r}: _dconv_taps({shape})")
            elif pname in ("kernel_r", "kernel_l", "amplitude"):  # MONARCH, LONG_CONV
                entries.append(f"{pname!r}: _normal(next(keys), {shape}, {shape[-2]})")
            elif pname in ("log_decay", "frequency"):  # LONG_CONV's deterministic start
                which = 0 if pname == "log_decay" else 1
                entries.append(f"{pname!r}: jnp.broadcast_to(long_conv_modes({shape[-1]})[{which}], "
                               f"{shape})")
            elif pname == "scale":
                entries.append(f"{pname!r}: jnp.ones({shape})")
            else:
                entries.append(f"{pname!r}: jnp.zeros({shape})")
        lines.append(f"{indent}{name!r}: {{{', '.join(entries)}}},")
    return lines


def export_source(dna: DNA, d_model: int, class_name: str = "Block") -> str:
    """The standalone module source for ``dna`` at width ``d_model`` (see module doc)."""
    program = canonical(dna)
    block = compile_block(program, d_model)
    shapes = block.init(0, jax.ShapeDtypeStruct((1, 1, d_model), jnp.float32))
    out = ['"""A decoder block found by primer-search, as a standalone Flax module.',
           "",
           "The program, one line per instruction (h0 = h1 = the block input x):",
           "", *["    " + line for line in str(program).rstrip().splitlines()], "",
           "Imports only jax, flax and numpy. Block maps x [batch, seq, d_model] to the same",
           "shape; LanguageModel wraps N blocks in the fixed shell the search trained them in.",
           '"""', "", "import flax.linen as nn", "import jax",
           "import jax.numpy as jnp", "import numpy as np", "",
           f"D_MODEL = {d_model}"]
    # The engine's own functions, copied verbatim so the file needs nothing else.
    out += ["", "", inspect.getsource(fit_channels).rstrip(), "", "",
            inspect.getsource(sinusoids).rstrip()]
    out.append(_HELPERS)
    used = {ins.op for sub in program.subprograms for ins in sub.instructions}
    if "LONG_CONV" in used:
        out += ["", f"LONG_CONV_MODES = {extended.LONG_CONV_MODES}"]
    for op, fns in _EXTENDED_SOURCES.items():
        if op in used:
            out += [line for fn in fns for line in ["", "", inspect.getsource(fn).rstrip()]]
    out += ["", "def _normal(key, shape, fan_in):",
            "    return jax.random.normal(key, shape) / np.sqrt(fan_in)", "", "",
            "def _dconv_taps(shape):",
            '    """Mostly the current position: tap 0 is 0.5, each lagged tap 0.5 / k."""',
            "    k = shape[-2]",
            "    return jnp.full(shape, 0.5 / k).at[..., 0, :].set(0.5)", "", "",
            "def init_program(key):", '    """Fresh parameters, as the search initialised them."""',
            f"    keys = iter(jax.random.split(key, {max(1, len(jax.tree_util.tree_leaves(shapes)))}))",
            "    return {"]
    out += _init_lines(shapes, "        ")
    out += ["    }", "", "", f"class {class_name}(nn.Module):",
            '    """The searched block: x [batch, seq, d_model] -> same shape."""', "",
            "    @nn.compact", "    def __call__(self, x):",
            '        p = self.param("program", init_program)',
            f"        return self.main(p, x, x, {d_model})", ""]
    names = _contexts(program)
    for ctx in names:
        out += _method(program, ctx, names)
        out.append("")
    out += _LM_SOURCE.format(block=class_name).splitlines()
    return "\n".join(out).rstrip() + "\n"


_LM_SOURCE = '''

class LanguageModel(nn.Module):
    """Embedding * sqrt(d) + sinusoids, N blocks, final LayerNorm, tied output."""

    vocab_size: int
    num_layers: int

    @nn.compact
    def __call__(self, tokens):
        d = D_MODEL
        embed = self.param("embed", lambda k: jax.random.normal(k, (self.vocab_size, d)) / np.sqrt(d))
        blocks = self.param("blocks", lambda k: jax.vmap(init_program)(
            jax.random.split(k, self.num_layers)))
        norm = self.param("final_norm", lambda k: {{"scale": jnp.ones((d,)), "bias": jnp.zeros((d,))}})
        x = embed[tokens] * np.sqrt(d) + sinusoids(tokens.shape[-1], d)
        block = {block}()

        def layer(h, p):
            return block.main(p, h, h, d), None

        x, _ = jax.lax.scan(layer, x, blocks, length=self.num_layers)
        mean = x.mean(-1, keepdims=True)
        var = jnp.square(x - mean).mean(-1, keepdims=True)
        x = (x - mean) / jnp.sqrt(var + 1e-6) * norm["scale"] + norm["bias"]
        return x @ embed.T
'''


def export(dna: DNA, out_dir: str | os.PathLike, d_model: int,
           lm_params: dict | None = None, module_name: str = "block",
           weights: bytes | None = None) -> dict[str, Path]:
    """Write ``{module_name}.py``, ``weights.msgpack`` (when ``lm_params`` or serialised
    ``weights`` are given: the language model's trained parameters, loadable into
    ``LanguageModel``) and ``program.dna``. Returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"source": out / f"{module_name}.py", "dna": out / "program.dna"}
    paths["source"].write_text(export_source(dna, d_model))
    save_dna(canonical(dna), paths["dna"])
    if lm_params is not None:
        host = jax.tree_util.tree_map(np.asarray, lm_params)
        weights = flax.serialization.to_bytes({"params": host})
    if weights is not None:
        paths["weights"] = out / "weights.msgpack"
        paths["weights"].write_bytes(weights)
    return paths


