"""Compile a DNA into a JAX decoder block: an ``init`` / ``apply`` pair.

``compile_block(dna, d_model)`` validates and canonicalises the DNA, then returns a
:class:`Block`. ``block.apply(params, x)`` interprets the program with ``jax.numpy``; under
``jax.jit`` the interpretation happens once, at trace time, so a compiled block costs
exactly the XLA graph of its ops.

Parameters are a nested dict that mirrors the readable program: the instruction that
writes ``h3`` with CONV_1X1 owns ``params["h3_CONV_1X1"]``; a call writing ``h5`` to
subprogram 2 owns ``params["h5_sub2"]``, itself a dict for that subprogram. Each call site
has its own parameters (two LayerNorm calls are two LayerNorms). A multi-head call's
parameters carry a leading axis of size ``heads``.

The shape-mismatch rule (``primitives._numerics.fit_channels``): a binary op fits input 2
to input 1's channel count (broadcast one channel, truncate wider, tile narrower), and
MAT_MUL fits input 1 to ``seq`` channels. Dimension sizes resolve to
``max(1, round(dim * unit))`` channels, where the unit is ``d_model`` in MAIN and the
exact fraction ``unit / heads`` inside a multi-head branch. The concatenated branches are
fitted to the width the call returns in the caller's unit, so a valid DNA compiles at
every width, also where the heads do not divide it.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any, Callable

import jax
import jax.numpy as jnp

import primitives
from primitives._numerics import fit_channels
from primitives.spec import Width
from primer_search.dna import DNA, Instruction
from primer_search.validate import MAIN_WIDTH, canonical, output_width

__all__ = ["Block", "CompileError", "compile_block", "param_name"]

Params = dict[str, Any]


class CompileError(ValueError):
    """A block cannot be built with these arguments (a bad width or input shape)."""


def param_name(i: int, ins: Instruction) -> str:
    """Key of the parameters owned by instruction ``i`` (the one writing ``h{i+2}``)."""
    return f"h{i + 2}_sub{ins.target}" if ins.is_call else f"h{i + 2}_{ins.op}"


@dataclasses.dataclass(frozen=True)
class Block:
    """A compiled decoder block for inputs ``[batch, seq, d_model]``.

    Attributes:
      dna: the canonical (pruned) program that was compiled; parameter keys follow it.
      d_model: the model width.
      init: ``init(key, x) -> params``; jit-compatible (only shapes of ``x`` are used).
      apply: ``apply(params, x) -> y`` with ``y.shape == x.shape``; pure, jit-compatible.
    """

    dna: DNA
    d_model: int
    init: Callable[[jax.Array, jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]


def _run(dna: DNA, sub: int, a, b, widths: tuple[Width, Width], unit: Fraction,
         params: Params | None, key):
    """Interpret subprogram ``sub`` on arguments ``a``, ``b`` of symbolic ``widths``.

    With ``params`` given, use them; with ``params=None``, create them from ``key`` (init
    mode). Returns ``(output, params, output width)``.
    """
    init = params is None
    made: Params = {}
    states, sym = [a, b], list(widths)
    for i, ins in enumerate(dna.subprograms[sub].instructions):
        name = param_name(i, ins)
        x1, x2 = states[ins.in1], states[ins.in2]
        w12 = (sym[ins.in1], sym[ins.in2])
        ikey = jax.random.fold_in(key, i) if init else None
        if ins.is_call:
            y, p, w = _call(dna, ins, x1, x2, w12, unit,
                            None if init else params.get(name, {}), ikey)
            if p:
                made[name] = p
        else:
            prim = primitives.get(ins.op)
            w = prim.shape(*w12, ins.dim)
            out_width = max(1, round(ins.dim * unit))
            p = None
            if prim.has_params:
                p = prim.init(ikey, x1.shape[-1], out_width, x1.dtype) if init else params[name]
                made[name] = p
            y = primitives.run(prim, p, x1, x2, ins.const, out_width)
        states.append(y)
        sym.append(w)
    return states[-1], made, sym[-1]


def _call(dna: DNA, ins: Instruction, x1, x2, widths, unit: Fraction, params, key):
    if ins.heads == 1:
        return _run(dna, ins.target, x1, x2, widths, unit, params, key)
    branch_unit = unit / ins.heads

    def branch(p, k):
        y, made, _ = _run(dna, ins.target, x1, x2, widths, branch_unit, p, k)
        return y, made

    if params is None:
        ys, p = jax.vmap(lambda k: branch(None, k))(jax.random.split(key, ins.heads))
    else:
        ys, p = jax.vmap(lambda q: branch(q, None), axis_size=ins.heads)(params)
    heads, batch, seq, width = ys.shape  # (H, B, T, w) -> (B, T, H * w), head-major
    y = jnp.transpose(ys, (1, 2, 0, 3)).reshape(batch, seq, heads * width)
    # A branch returns `f` branch units, so the call returns `f` units of the caller; when
    # the unit does not divide by the heads, rounding is settled by the fitting rule.
    w = output_width(dna, ins.target, *widths)
    return fit_channels(y, max(1, round(w.value * unit))), p, w


def compile_block(dna: DNA, d_model: int) -> Block:
    """Compile ``dna`` for model width ``d_model``.

    Raises ``DNAError`` for an invalid program and :class:`CompileError` when a valid one
    cannot run at this width.
    """
    if not isinstance(d_model, int) or d_model < 1:
        raise CompileError(f"d_model must be a positive integer, got {d_model!r}")
    program = canonical(dna)
    unit = Fraction(d_model)

    def _check_input(x):
        if x.ndim != 3 or x.shape[-1] != d_model:
            raise CompileError(f"block input must be [batch, seq, {d_model}], got {x.shape}")

    def init(key, x) -> Params:
        _check_input(x)
        return _run(program, 0, x, x, (MAIN_WIDTH, MAIN_WIDTH), unit, None, key)[1]

    def apply(params: Params, x):
        _check_input(x)
        return _run(program, 0, x, x, (MAIN_WIDTH, MAIN_WIDTH), unit, params, None)[0]

    return Block(dna=program, d_model=d_model, init=init, apply=apply)
