"""The spec of a primitive: everything the DNA validator and the compiler need to know.

A primitive (Primer, So et al. 2021, Sec. 2 and Appendix A.1) is one low-level tensor op.
Every hidden state of a program is a tensor of shape ``[batch, seq, channels]``; the spec
says how many inputs the op reads, which instruction fields it reads, how the channel
width of its output follows from its inputs (the *shape rule*), whether it owns trainable
parameters, and whether it mixes information across sequence positions.

Widths are symbolic here so that one DNA can be validated without choosing a model width:
see :class:`Width`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Literal

__all__ = ["ABS", "REL", "SEQ", "Primitive", "ShapeError", "Width"]

REL: Literal["rel"] = "rel"
ABS: Literal["abs"] = "abs"
SEQ: Literal["seq"] = "seq"


class ShapeError(ValueError):
    """An op cannot take an input of this width (raised by shape rules)."""


@dataclasses.dataclass(frozen=True)
class Width:
    """The channel width of a hidden state.

    * ``rel f``: ``f`` times the width unit of the enclosing subprogram (the model width
      ``d_model`` for MAIN). Resolves to ``max(1, round(f * unit))`` channels.
    * ``abs n``: exactly ``n`` channels (a reduction gives ``abs 1``).
    * ``seq``: one channel per sequence position, as in an attention score matrix
      ``[batch, seq, seq]`` built by T_MAT_MUL.
    """

    kind: Literal["rel", "abs", "seq"]
    value: Fraction = Fraction(1)

    @staticmethod
    def rel(f: Fraction | int) -> Width:
        return Width(REL, Fraction(f))

    @staticmethod
    def abs(n: int) -> Width:
        return Width(ABS, Fraction(n))

    @staticmethod
    def seq() -> Width:
        return Width(SEQ, Fraction(1))

    def resolve(self, unit: int, seq_len: int | None = None) -> int:
        """Concrete channel count for a width unit (and sequence length, for ``seq``)."""
        if self.kind == REL:
            return max(1, round(self.value * unit))
        if self.kind == ABS:
            return int(self.value)
        if seq_len is None:
            raise ShapeError("a sequence-width state has no size without a sequence length")
        return seq_len

    def __str__(self) -> str:
        if self.kind == REL:
            return f"{self.value}d" if self.value != 1 else "d"
        if self.kind == ABS:
            return str(int(self.value))
        return "seq"


# Shape rule: (width of input 1, width of input 2, instruction dim) -> output width.
ShapeRule = Callable[[Width, Width, Fraction], Width]
# Parameter init: (numpy Generator, in_width_1, out_width) -> dict of float32 numpy arrays.
# Initialisation runs on the host: it costs no XLA compile, and a seed fixes it. A named
# module-level function, or a ``functools.partial`` of one with keyword arguments only.
InitFn = Callable[[Any, int, int], dict]
# The computation: a named module-level function with the natural signature
# ``fn(x1[, x2][, const][, params][, out_width])`` (see ``Primitive.arguments``).
Fn = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Primitive:
    """One entry of the op vocabulary.

    Attributes:
      name: upper-case op name, as it appears in DNA and in ``str(dna)``.
      arity: 1 or 2 hidden-state inputs.
      reads_const: the op reads the instruction's constant.
      reads_dim: the op reads the instruction's dimension size (relative width).
      mixes_sequence: the op combines different positions. Such an op must be causal by
        construction; the causality test checks every one of them.
      shape: the shape rule.
      fn: what the op computes, a pure JAX function defined at module level (its source is
        copied into exported blocks, see :mod:`primitives.source`). It takes the inputs,
        then the constant if the op reads one, then its parameters if it has them, then
        the output width if it reads it: ``fn(x1[, x2][, const][, params][, out_width])``.
        Inputs are ``[batch, seq, channels]``, already fitted as the fields below say.
      init: parameter initialiser ``init(rng, in_width, out_width) -> {name: array}``
        drawing from a numpy Generator; ``None`` for ops without trainable parameters.
      reads_width: ``fn`` takes the output width (``max(1, round(dim * unit))``).
      fit_input2: how input 2 is resized before ``fn``: ``"x1"`` to the width of input
        1 (elementwise ops), ``None`` to leave it alone.
      fit_input1_to_seq: MAT_MUL reads input 1 as a ``[seq, seq]`` matrix per batch row,
        so input 1 is resized to ``seq`` channels.
      guard: pass the output through ``finite`` (NaN -> 0, Inf -> max float); for ops
        that overflow on moderate inputs, such as products over many terms.
      commutative: a binary op whose inputs may be exchanged when they have the same
        width (with different widths, input 2 is fitted to input 1, so order matters).
        The fingerprint uses it to see that ``ADD(a, b)`` and ``ADD(b, a)`` are one program.
      doc: one line shown by ``primer-search ops``.
    """

    name: str
    arity: int
    shape: ShapeRule
    fn: Fn
    doc: str
    reads_const: bool = False
    reads_dim: bool = False
    mixes_sequence: bool = False
    init: InitFn | None = None
    reads_width: bool = False
    fit_input2: Literal["x1"] | None = None
    fit_input1_to_seq: bool = False
    guard: bool = False
    commutative: bool = False

    @property
    def has_params(self) -> bool:
        return self.init is not None

    def reads(self) -> frozenset[str]:
        """The instruction fields this op reads."""
        fields = {"in1"}
        if self.arity == 2:
            fields.add("in2")
        if self.reads_const:
            fields.add("const")
        if self.reads_dim:
            fields.add("dim")
        return frozenset(fields)

    def arguments(self, x1, x2, const, params, out_width) -> list:
        """The arguments of :attr:`fn`, in order, among those an instruction offers."""
        args = [x1, x2] if self.arity == 2 else [x1]
        if self.reads_const:
            args.append(const)
        if self.has_params:
            args.append(params)
        if self.reads_width:
            args.append(out_width)
        return args
