"""Validation, dead-code pruning and the canonical form of a DNA.

``validate(dna)`` checks a DNA against the op vocabulary before anything is compiled or
trained (ops known, input widths accepted, MAIN maps ``[batch, seq, d_model]`` to the same
shape, multi-head callees return relative widths); ``load_dna(path)`` reads a file and
validates it.

``canonical(dna)`` prunes dead code and unreachable subprograms, resets the fields an op
does not read, writes MAIN's ``h1`` as ``h0`` (both are the block input), and renumbers
what is left. Two DNAs that differ only in dead code or in
ignored fields have the same canonical form, and :func:`dna_hash` hashes that form.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction

import primitives
from primer_search.program.dna import (
    DNA,
    DNAError,
    Instruction,
    Subprogram,
    fields_read,
    format_instruction,
    read_dna,
)
from primitives.spec import REL, ShapeError, Width

__all__ = ["MAIN_WIDTH", "canonical", "dna_hash", "load_dna", "output_width", "readable",
           "validate"]

# The width MAIN reads and returns: the model width.
MAIN_WIDTH = Width.rel(1)


# ---- widths against the op vocabulary ---------------------------------------------------

def _where(s: int, i: int, ins: Instruction) -> str:
    return f"subprogram {s}, instruction {i} ({format_instruction(i, ins)})"


def _unknown_op(s: int, i: int, ins: Instruction) -> DNAError:
    return DNAError(f"{_where(s, i, ins)}: unknown op {ins.op!r}; known ops: "
                    f"CALL, {', '.join(primitives.names())}")


def output_width(dna: DNA, sub: int, w0, w1, _memo=None):
    """The symbolic width (a :class:`primitives.Width`) that a subprogram returns for
    argument widths ``w0``, ``w1``.

    Raises :class:`DNAError` at the first instruction whose op rejects its inputs.
    """
    memo = {} if _memo is None else _memo
    key = (sub, w0, w1)
    if key in memo:
        return memo[key]
    widths = [w0, w1]
    for i, ins in enumerate(dna.subprograms[sub].instructions):
        a, b = widths[ins.in1], widths[ins.in2]
        if ins.is_call:
            out = output_width(dna, ins.target, a, b, memo)
            if ins.heads > 1 and out.kind != REL:
                raise DNAError(f"{_where(sub, i, ins)}: a call with heads={ins.heads} "
                               f"concatenates its branches, so subprogram {ins.target} must "
                               f"return a width relative to its unit, but it returns {out}")
        else:
            if not primitives.is_primitive(ins.op):
                raise _unknown_op(sub, i, ins)
            try:
                out = primitives.get(ins.op).shape(a, b, ins.dim)
            except ShapeError as e:
                raise DNAError(f"{_where(sub, i, ins)}: {e} (input widths: {a}, {b})") from None
        widths.append(out)
    memo[key] = widths[-1]
    return widths[-1]


def validate(dna: DNA) -> DNA:
    """Check ``dna`` against the op vocabulary; return it unchanged, or raise
    :class:`DNAError` naming the subprogram, the instruction and the problem:

    * every op is known (structure was checked when the DNA was built);
    * every op accepts the widths of its inputs (see :class:`primitives.Width`); every
      subprogram is shape-checked where it is called, uncalled ones are dead code;
    * MAIN maps ``[batch, seq, d_model]`` to the same shape;
    * a multi-head call's subprogram returns a width relative to its unit.
    """
    if not isinstance(dna, DNA):
        raise DNAError(f"expected a DNA, got {type(dna).__name__}")
    for s, sub in enumerate(dna.subprograms):
        for i, ins in enumerate(sub.instructions):
            if not ins.is_call and not primitives.is_primitive(ins.op):
                raise _unknown_op(s, i, ins)
    out = output_width(dna, 0, MAIN_WIDTH, MAIN_WIDTH)
    if out != MAIN_WIDTH:
        raise DNAError(f"subprogram 0 (main) returns width {out}, but a block must map "
                       "[batch, seq, d_model] to the same shape (width d)")
    return dna


def load_dna(path: str | os.PathLike) -> DNA:
    """Read a DNA file (msgpack, or the program as text) and validate it: every problem
    raises :class:`DNAError` naming the file and the instruction (in a text file, its
    line)."""
    return read_dna(path, check=validate)


# ---- pruning and the canonical form -------------------------------------------------

def _live(sub: Subprogram, uses_args: dict[int, tuple[bool, bool]]) -> tuple[list[bool], tuple[bool, bool]]:
    """Which instructions feed the return value, and whether h0 / h1 are read."""
    n = len(sub)
    needed = [False] * (n + 2)
    needed[n + 1] = True
    for i in range(n - 1, -1, -1):
        if not needed[i + 2]:
            continue
        ins = sub.instructions[i]
        if ins.is_call:
            use0, use1 = uses_args[ins.target]
            needed[ins.in1] |= use0
            needed[ins.in2] |= use1
        else:
            needed[ins.in1] = True
            if primitives.get(ins.op).arity == 2:
                needed[ins.in2] = True
    return needed[2:], (needed[0], needed[1])


def _normalise(ins: Instruction, uses: tuple[bool, bool] | None) -> Instruction:
    """Reset fields the instruction does not read to their defaults."""
    if ins.is_call:
        # An argument the callee ignores repeats the other one (0 if both are ignored).
        in1 = ins.in1 if uses[0] else ins.in2 if uses[1] else 0
        in2 = ins.in2 if uses[1] else in1
        return Instruction("CALL", in1, in2, target=ins.target, heads=ins.heads)
    reads = fields_read(ins)
    return Instruction(ins.op, ins.in1, ins.in2 if "in2" in reads else 0,
                       ins.const if "const" in reads else 0.0,
                       ins.dim if "dim" in reads else Fraction(1))


def canonical(dna: DNA) -> DNA:
    """Pruned, normalised and renumbered form of a valid DNA (see module doc)."""
    validate(dna)
    subs = dna.subprograms
    # Callees have higher indices, so walk from the last subprogram to MAIN.
    uses_args: dict[int, tuple[bool, bool]] = {}
    live: dict[int, list[bool]] = {}
    for s in range(len(subs) - 1, -1, -1):
        live[s], uses_args[s] = _live(subs[s], uses_args)
    # Subprograms reachable from MAIN through live calls, in their original order.
    reachable, stack = {0}, [0]
    while stack:
        s = stack.pop()
        for i, ins in enumerate(subs[s].instructions):
            if live[s][i] and ins.is_call and ins.target not in reachable:
                reachable.add(ins.target)
                stack.append(ins.target)
    new_index = {old: new for new, old in enumerate(sorted(reachable))}
    out = []
    for s in sorted(reachable):
        # Renumber states: h0, h1 stay; live instruction outputs are packed after them.
        # In MAIN both arguments are the block input x, so h1 is written as h0.
        state_map = {0: 0, 1: 0 if s == 0 else 1}
        kept = []
        for i, ins in enumerate(subs[s].instructions):
            if not live[s][i]:
                continue
            uses = uses_args[ins.target] if ins.is_call else None
            ins = _normalise(ins, uses)
            ins = ins.replace(in1=state_map.get(ins.in1, 0), in2=state_map.get(ins.in2, 0))
            if ins.is_call:
                ins = ins.replace(target=new_index[ins.target])
            state_map[i + 2] = len(kept) + 2
            kept.append(ins)
        out.append(Subprogram(tuple(kept)))
    return DNA(tuple(out))


def dna_hash(dna: DNA) -> str:
    """sha256 hex digest of the canonical form: equal for programs equal up to dead code."""
    return hashlib.sha256(canonical(dna).to_bytes()).hexdigest()


def readable(dna: DNA, prune: bool = False) -> str:
    """The program as code, each op showing only the fields it reads (``str(dna)``);
    with ``prune``, the canonical form."""
    return str(canonical(dna) if prune else dna)
