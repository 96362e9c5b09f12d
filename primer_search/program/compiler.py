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

The shape-mismatch rule (``primitives.numerics.fit_channels``): a binary op fits input 2
to input 1's channel count (broadcast one channel, truncate wider, tile narrower), and
MAT_MUL fits input 1 to ``seq`` channels. Dimension sizes resolve to
``max(1, round(dim * unit))`` channels, where the unit is ``d_model`` in MAIN and the
exact fraction ``unit / heads`` inside a multi-head branch. The concatenated branches are
fitted to the width the call returns in the caller's unit, so a valid DNA compiles at
every width, also where the heads do not divide it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import primitives
from primer_search.program.dna import DNA, Instruction
from primer_search.program.fusions import fused
from primer_search.program.validate import MAIN_WIDTH, canonical, output_width
from primitives.numerics import fit_channels
from primitives.spec import Width

__all__ = ["Block", "CompileError", "LeafDraw", "compile_block", "param_name"]

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
      init: ``init(seed, x) -> params`` as numpy arrays; ``seed`` is an int or a numpy
        Generator, and only the shape of ``x`` is used. Initialisation runs on the host:
        a shape-only trace finds what each instruction needs, and numpy draws it, so it
        costs no XLA compile (random-number init compiled with the step doubles it).
      init_with: ``init_with(draw, x) -> params``: the same tree, each instruction's
        parameters made by ``draw(path, op, in_width, out_width)`` (see ``LeafDraw``);
        the fingerprint draws them by the structure of the program, not its order.
      apply: ``apply(params, x) -> y`` with ``y.shape == x.shape``; pure, jit-compatible.
    """

    dna: DNA
    d_model: int
    init: Callable[[Any, Any], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    init_with: Callable[[LeafDraw, Any], Params]


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """Plan of one parametric instruction: which init to call, with which widths."""

    op: str
    in_width: int
    out_width: int


@dataclasses.dataclass(frozen=True)
class _Heads:
    """Plan of a multi-head call: ``heads`` independent draws of ``plan``, stacked."""

    heads: int
    plan: dict


# Parameters are only traced for their shapes while planning; any values do.
_PLANNING_RNG = np.random.default_rng(0)


def _run(dna: DNA, sub: int, a, b, widths: tuple[Width, Width], unit: Fraction,
         params: Params | None, fuse: bool):
    """Interpret subprogram ``sub`` on arguments ``a``, ``b`` of symbolic ``widths``.

    With ``params``, compute the block. With ``params=None`` (planning, only ever traced
    for shapes), record what parameters each instruction needs. Returns
    ``(output, plan, output width)``; the plan is empty when computing.
    """
    planning = params is None
    plan: dict = {}
    fusion = fused(dna.subprograms[sub]) if fuse else None
    if fusion is not None:  # a known parameter-free pattern with the width of its input
        return fusion[1](a), plan, widths[0]
    states, sym = [a, b], list(widths)
    for i, ins in enumerate(dna.subprograms[sub].instructions):
        name = param_name(i, ins)
        x1, x2 = states[ins.in1], states[ins.in2]
        w12 = (sym[ins.in1], sym[ins.in2])
        if ins.is_call:
            y, p, w = _call(dna, ins, x1, x2, w12, unit,
                            None if planning else params.get(name, {}), fuse)
            if p:
                plan[name] = p
        else:
            prim = primitives.get(ins.op)
            w = prim.shape(*w12, ins.dim)
            out_width = max(1, round(ins.dim * unit))
            p = None
            if prim.has_params:
                if planning:
                    plan[name] = _Leaf(ins.op, x1.shape[-1], out_width)
                    p = prim.init(_PLANNING_RNG, x1.shape[-1], out_width)
                else:
                    p = params[name]
            y = primitives.run(prim, p, x1, x2, ins.const, out_width)
        states.append(y)
        sym.append(w)
    return states[-1], plan, sym[-1]


def _call(dna: DNA, ins: Instruction, x1, x2, widths, unit: Fraction, params, fuse: bool):
    if ins.heads == 1:
        return _run(dna, ins.target, x1, x2, widths, unit, params, fuse)
    branch_unit = unit / ins.heads
    if params is None:  # planning: one branch gives the shapes of all
        y, plan, _ = _run(dna, ins.target, x1, x2, widths, branch_unit, None, fuse)
        ys = jnp.broadcast_to(y, (ins.heads,) + y.shape)
        plan = _Heads(ins.heads, plan) if plan else {}
    else:
        def branch(p):
            return _run(dna, ins.target, x1, x2, widths, branch_unit, p, fuse)[0]

        ys = jax.vmap(branch, axis_size=ins.heads)(params)
        plan = {}
    # A branch returns `f` branch units, so the call returns `f` units of the caller; when
    # the unit does not divide by the heads, rounding is settled by the fitting rule.
    w = output_width(dna, ins.target, *widths)
    return concat_heads(ys, max(1, round(w.value * unit))), plan, w


def concat_heads(ys, width: int):
    """Branch outputs ``(heads, B, T, w)`` -> ``(B, T, heads * w)``, head-major, fitted to
    ``width`` channels (the exported module copies this function)."""
    heads, batch, seq, w = ys.shape
    y = jnp.transpose(ys, (1, 2, 0, 3)).reshape(batch, seq, heads * w)
    return fit_channels(y, width)


# draw(path, op, in_width, out_width) -> the parameters of one instruction. ``path`` is
# the parameter keys from the top, with a head index after each multi-head call's key.
LeafDraw = Callable[[tuple, str, int, int], dict]


def stack_trees(trees):
    """Stack equally shaped parameter trees along a new leading axis (a multi-head call's
    branches; the language model's layers)."""
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *trees)


def _materialise(plan: dict, draw: LeafDraw, path: tuple = ()) -> Params:
    """Draw parameters for a plan, in program order (so a seed fixes them)."""
    out: Params = {}
    for name, node in plan.items():
        if isinstance(node, _Leaf):
            out[name] = draw(path + (name,), node.op, node.in_width, node.out_width)
        elif isinstance(node, _Heads):
            draws = [_materialise(node.plan, draw, path + (name, h)) for h in range(node.heads)]
            out[name] = stack_trees(draws)
        else:
            out[name] = _materialise(node, draw, path + (name,))
    return out


def as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def compile_block(dna: DNA, d_model: int, fuse: bool = True) -> Block:
    """Compile ``dna`` for model width ``d_model``.

    With ``fuse``, subprograms that are exactly a known pattern (softmax, ReLU) run as
    their ``jax.nn`` implementation (see :mod:`primer_search.program.fusions`); without, every
    instruction is interpreted op by op.

    Raises ``DNAError`` for an invalid program and :class:`CompileError` when a valid one
    cannot run at this width.
    """
    if not isinstance(d_model, int) or d_model < 1:
        raise CompileError(f"d_model must be a positive integer, got {d_model!r}")
    program = canonical(dna)
    unit = Fraction(d_model)

    def _check_input(x):
        if len(x.shape) != 3 or x.shape[-1] != d_model:
            raise CompileError(f"block input must be [batch, seq, {d_model}], got {x.shape}")

    plans: dict = {}

    def init_with(draw: LeafDraw, x) -> Params:
        _check_input(x)
        if "plan" not in plans:  # parameter shapes depend on d_model only
            def trace(x):
                y, plans["plan"], _ = _run(program, 0, x, x, (MAIN_WIDTH, MAIN_WIDTH), unit,
                                           None, fuse)
                return y

            jax.eval_shape(trace, jax.ShapeDtypeStruct(x.shape, jnp.float32))
        return _materialise(plans["plan"], draw)

    def init(seed, x) -> Params:
        rng = as_rng(seed)
        return init_with(lambda path, op, n_in, n_out: primitives.get(op).init(rng, n_in, n_out),
                         x)

    def apply(params: Params, x):
        _check_input(x)
        return _run(program, 0, x, x, (MAIN_WIDTH, MAIN_WIDTH), unit, params, fuse)[0]

    return Block(dna=program, d_model=d_model, init=init, apply=apply, init_with=init_with)
