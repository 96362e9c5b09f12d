"""DNA: a decoder block written as a program, as plain immutable data.

Following Primer (So et al. 2021, arXiv 2109.08668, Sec. 2), a DNA is a bank of
subprograms; subprogram 0 is MAIN. A subprogram is a list of instructions. Each
instruction names an op (a primitive, or ``CALL`` of a subprogram with a *higher* index,
so the call graph has no cycles) and carries the full argument set; the op reads only the
fields it needs:

* ``in1``, ``in2``: indices of earlier hidden states of the same subprogram;
* ``const``: a float constant (C_MUL, C_ADD);
* ``dim``: a dimension size *relative to the width unit* (a fraction; 1 is the model
  width in MAIN), so one DNA runs at any model width;
* ``target`` and ``heads`` for calls (see below).

Hidden states: a subprogram starts with ``h0`` and ``h1``, its two arguments (for MAIN
both are the block input ``x`` of shape ``[batch, seq, d_model]``). Instruction ``i``
writes ``h{i+2}``. A subprogram returns its last state.

Multi-head branches: a ``CALL`` with ``heads = H`` runs the callee ``H`` times in
parallel on the same arguments, each branch with its own parameters and a width unit of
``unit / H``, and concatenates the branch outputs along channels. A branch that returns
``1`` unit (``d / H`` channels) therefore gives ``d`` channels back: that is multi-head
attention, with per-head projections living inside the head subprogram. The callee must
return a width relative to the unit.

``str(dna)`` prints the program as code (:func:`to_text`), exactly: the parser in
:mod:`primer_search.program.text` reads it back to the same DNA, and :func:`read_dna`
reads a file in either form, msgpack or text.

This module imports no JAX: DNA is data. :func:`fields_read` asks the op vocabulary
(:mod:`primitives`) which fields an op reads, importing it when first used. Checking a
DNA against the vocabulary (ops known, widths accepted), pruning and the canonical form
live in :mod:`primer_search.program.validate`, which builds on this module (never the other way
round); compilation in :mod:`primer_search.program.compiler`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable
from fractions import Fraction

import msgpack

__all__ = [
    "CALL",
    "DNA",
    "FORMAT",
    "FORMAT_VERSION",
    "DNAError",
    "Instruction",
    "Subprogram",
    "fields_read",
    "format_instruction",
    "read_dna",
    "save_dna",
    "to_text",
]

CALL = "CALL"
FORMAT = "primer-search/dna"
FORMAT_VERSION = 1
# Multi-head branch counts a call may use.
HEADS = (1, 2, 4, 8, 16)
# Bounds on relative dimension sizes (16 times the width is already a very wide layer).
MAX_DIM = 16
MAX_DIM_DENOMINATOR = 64


class DNAError(ValueError):
    """A DNA is malformed or invalid. The message names where and what."""


def _fraction(value) -> Fraction:
    if isinstance(value, Fraction):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Fraction(int(value[0]), int(value[1]))
    if isinstance(value, (int, str)):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value).limit_denominator(1024)
    raise DNAError(f"dimension size {value!r} must be a fraction, int, or (num, den)")


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One line of a subprogram: ``h[i+2] = op(h[in1], h[in2], const, dim)``."""

    op: str
    in1: int = 0
    in2: int = 0
    const: float = 0.0
    dim: Fraction = Fraction(1)
    target: int = 0
    heads: int = 1

    def __post_init__(self):
        object.__setattr__(self, "dim", _fraction(self.dim))
        object.__setattr__(self, "const", float(self.const))

    @property
    def is_call(self) -> bool:
        return self.op == CALL

    def replace(self, **changes) -> Instruction:
        return dataclasses.replace(self, **changes)

    def to_list(self) -> list:
        return [self.op, self.in1, self.in2, self.const, self.dim.numerator,
                self.dim.denominator, self.target, self.heads]


@dataclasses.dataclass(frozen=True)
class Subprogram:
    instructions: tuple[Instruction, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "instructions", tuple(self.instructions))

    def __len__(self) -> int:
        return len(self.instructions)


@dataclasses.dataclass(frozen=True)
class DNA:
    """A bank of subprograms; ``subprograms[0]`` is MAIN. Immutable and hashable."""

    subprograms: tuple[Subprogram, ...]

    def __post_init__(self):
        subs = tuple(s if isinstance(s, Subprogram) else Subprogram(tuple(s))
                     for s in self.subprograms)
        object.__setattr__(self, "subprograms", subs)
        check_structure(self)

    @staticmethod
    def of(*subprograms: Iterable[Instruction]) -> DNA:
        """``DNA.of([main instructions], [sub 1 instructions], ...)``."""
        return DNA(tuple(Subprogram(tuple(s)) for s in subprograms))

    @property
    def main(self) -> Subprogram:
        return self.subprograms[0]

    def num_instructions(self) -> int:
        return sum(len(s) for s in self.subprograms)

    # ---- serialisation ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """msgpack: ``{format, version, subprograms: [[instruction as list, ...], ...]}``.

        An instruction is ``[op, in1, in2, const, dim_num, dim_den, target, heads]``.
        """
        payload = {"format": FORMAT, "version": FORMAT_VERSION,
                   "subprograms": [[ins.to_list() for ins in s.instructions]
                                   for s in self.subprograms]}
        return msgpack.packb(payload, use_bin_type=True)

    @staticmethod
    def from_bytes(data: bytes) -> DNA:
        """Parse :meth:`to_bytes` output. Anything malformed raises :class:`DNAError`."""
        if not isinstance(data, (bytes, bytearray)):
            raise DNAError(f"DNA bytes expected, got {type(data).__name__}")
        try:
            payload = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
        except Exception as e:  # msgpack raises several exception types
            raise DNAError(f"not a msgpack DNA file ({type(e).__name__}: {e})") from None
        if not isinstance(payload, dict):
            raise DNAError(f"DNA file must hold a map, found {type(payload).__name__}")
        if payload.get("format") != FORMAT:
            raise DNAError(f"format field is {payload.get('format')!r}, expected {FORMAT!r}")
        version = payload.get("version")
        if version != FORMAT_VERSION:
            raise DNAError(f"DNA format version {version!r} is not supported "
                           f"(this version of primer-search reads version {FORMAT_VERSION})")
        subs = payload.get("subprograms")
        if not isinstance(subs, list) or not subs:
            raise DNAError("'subprograms' must be a non-empty list")
        parsed = []
        for s, sub in enumerate(subs):
            if not isinstance(sub, list):
                raise DNAError(f"subprogram {s} must be a list of instructions")
            parsed.append(Subprogram(tuple(_parse_instruction(s, i, row)
                                           for i, row in enumerate(sub))))
        return DNA(tuple(parsed))

    @staticmethod
    def from_text(text: str) -> DNA:
        """Parse the program as code, as ``str(dna)`` prints it (see
        :mod:`primer_search.program.text`): ``DNA.from_text(str(dna)) == dna``."""
        from primer_search.program.text import parse  # builds on this module

        return parse(text)

    # ---- reading ---------------------------------------------------------------------

    def __str__(self) -> str:
        """The program as readable code; each op shows only the fields it reads."""
        return to_text(self)


def _parse_instruction(s: int, i: int, row) -> Instruction:
    where = f"subprogram {s}, instruction {i}"
    if not isinstance(row, list) or len(row) != 8:
        raise DNAError(f"{where}: expected a list of 8 fields "
                       f"[op, in1, in2, const, dim_num, dim_den, target, heads], got {row!r}")
    op, in1, in2, const, num, den, target, heads = row
    if not isinstance(op, str):
        raise DNAError(f"{where}: op must be a string, got {op!r}")
    for name, v in (("in1", in1), ("in2", in2), ("dim_num", num), ("dim_den", den),
                    ("target", target), ("heads", heads)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise DNAError(f"{where}: {name} must be an integer, got {v!r}")
    if not isinstance(const, (int, float)) or isinstance(const, bool):
        raise DNAError(f"{where}: const must be a number, got {const!r}")
    if den <= 0 or num <= 0:
        raise DNAError(f"{where}: dimension size {num}/{den} must be positive")
    return Instruction(op, in1, in2, float(const), Fraction(num, den), target, heads)


def check_structure(dna: DNA) -> None:
    """Checks that need no op vocabulary: references, calls, field ranges.

    Raises :class:`DNAError` naming the subprogram, the instruction and the problem.
    """
    n = len(dna.subprograms)
    if n == 0:
        raise DNAError("a DNA needs at least one subprogram (MAIN)")
    for s, sub in enumerate(dna.subprograms):
        for i, ins in enumerate(sub.instructions):
            if not isinstance(ins, Instruction):
                raise DNAError(f"subprogram {s}, instruction {i}: not an Instruction")
            where = f"subprogram {s}, instruction {i} ({ins.op})"
            if not isinstance(ins.op, str) or not ins.op:
                raise DNAError(f"{where}: op must be a non-empty string")
            for name in ("in1", "in2"):
                ref = getattr(ins, name)
                if not 0 <= ref <= i + 1:
                    raise DNAError(f"{where}: {name} refers to h{ref}, which is not an "
                                   f"earlier state (h0..h{i + 1})")
            if not math.isfinite(ins.const):
                raise DNAError(f"{where}: constant {ins.const!r} is not finite")
            if not 0 < ins.dim <= MAX_DIM or ins.dim.denominator > MAX_DIM_DENOMINATOR:
                raise DNAError(f"{where}: dimension size {ins.dim} must be a fraction in "
                               f"(0, {MAX_DIM}] with denominator <= {MAX_DIM_DENOMINATOR}")
            if ins.is_call:
                if not s < ins.target < n:
                    raise DNAError(f"{where}: calls subprogram {ins.target}; a subprogram may "
                                   f"only call higher-numbered ones ({s + 1}..{n - 1}), which "
                                   "keeps the call graph free of cycles")
                if ins.heads not in HEADS:
                    raise DNAError(f"{where}: heads={ins.heads}, expected one of {HEADS}")
            elif ins.heads != 1:
                raise DNAError(f"{where}: heads={ins.heads}, but only CALL runs in branches")


# ---- which fields an instruction reads ---------------------------------------------------

# A call reads its two arguments, its target and its head count.
CALL_FIELDS = frozenset({"in1", "in2", "target", "heads"})
# An op the vocabulary does not know is taken to read every operand field.
ALL_OPERANDS = frozenset({"in1", "in2", "const", "dim"})


def fields_read(ins: Instruction) -> frozenset[str]:
    """The fields ``ins`` reads: a call's are :data:`CALL_FIELDS`, a primitive's are what
    its spec says (:meth:`primitives.Primitive.reads`), an unknown op's all operands.

    The one answer to the question, for printing, mutating and canonicalising alike: a
    field an instruction does not read is neither shown, mutated nor kept.
    """
    if ins.is_call:
        return CALL_FIELDS
    import primitives  # the vocabulary imports JAX; DNA as data does not need it

    return primitives.get(ins.op).reads() if primitives.is_primitive(ins.op) else ALL_OPERANDS


# ---- readable text ------------------------------------------------------------------

def _fmt_dim(d: Fraction) -> str:
    return "d" if d == 1 else f"{d}d" if d.denominator == 1 else f"({d})d"


def _fmt_const(c: float) -> str:
    """Six significant digits when they are the exact value (``1e-06``, ``0.5``, ``2``),
    else every digit the float needs (``0.3333333333333333``): the text is exact."""
    short = f"{c:.6g}"
    return short if float(short).hex() == c.hex() else repr(c)


def _unread(ins: Instruction) -> list[str]:
    """The fields ``ins`` carries but does not read, where they differ from their
    defaults, as ``key=value`` (``in2=h3``, ``c=0.5``, ``dim=(1/2)d``, ``target=2``)."""
    reads = fields_read(ins)
    out = []
    if "in2" not in reads and ins.in2 != 0:
        out.append(f"in2=h{ins.in2}")
    if "const" not in reads and (ins.const != 0 or math.copysign(1, ins.const) < 0):
        out.append(f"c={_fmt_const(ins.const)}")
    if "dim" not in reads and ins.dim != 1:
        out.append(f"dim={_fmt_dim(ins.dim)}")
    if "target" not in reads and ins.target != 0:
        out.append(f"target={ins.target}")
    return out


def format_instruction(i: int, ins: Instruction) -> str:
    """``h{i+2} = OP(h.., h.., c=.., dim=..)``, showing only the fields ``ins`` reads."""
    if ins.is_call:
        args = [f"h{ins.in1}"] if ins.in1 == ins.in2 else [f"h{ins.in1}", f"h{ins.in2}"]
        if ins.heads != 1:
            args.append(f"heads={ins.heads}")
        return f"h{i + 2} = sub{ins.target}({', '.join(args)})"
    reads = fields_read(ins)
    args = [f"h{ins.in1}"]
    if "in2" in reads:
        args.append(f"h{ins.in2}")
    if "const" in reads:
        args.append(f"c={_fmt_const(ins.const)}")
    if "dim" in reads:
        args.append(f"dim={_fmt_dim(ins.dim)}")
    return f"h{i + 2} = {ins.op}({', '.join(args)})"


def to_text(dna: DNA) -> str:
    """The program as readable code, one line per instruction, and exact:
    :func:`primer_search.program.text.parse` reads it back to ``dna``. Fields an
    instruction carries but does not read follow it in a ``# unread:`` note (none in a
    canonical program)."""
    lines = []
    for s, sub in enumerate(dna.subprograms):
        name = "main" if s == 0 else f"sub{s}"
        lines.append(f"def {name}(h0, h1):")
        for i, ins in enumerate(sub.instructions):
            unread = _unread(ins)
            note = f"  # unread: {', '.join(unread)}" if unread else ""
            lines.append("    " + format_instruction(i, ins) + note)
        lines.append(f"    return h{len(sub) + 1}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ---- files --------------------------------------------------------------------------

def save_dna(dna: DNA, path: str | os.PathLike) -> None:
    """Write ``dna`` as msgpack (see :meth:`DNA.to_bytes`)."""
    with open(path, "wb") as f:
        f.write(dna.to_bytes())


def read_dna(path: str | os.PathLike, check: Callable[[DNA], object] | None = None) -> DNA:
    """Read and parse a DNA file: msgpack (:func:`save_dna`) or the program as text (what
    ``str(dna)`` prints, see :mod:`primer_search.program.text`), told apart by content.
    The structure is checked; ``check`` (such as
    :func:`primer_search.program.validate.validate`, as
    :func:`~primer_search.program.validate.load_dna` does) runs on the DNA, and in a text
    file its errors name the line.

    Every problem with the file's contents raises :class:`DNAError` naming the file.
    """
    from primer_search.program import text  # builds on this module

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DNAError(f"DNA file {os.fspath(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DNAError(f"DNA path {os.fspath(path)!r} is a directory, expected a file") from None
    try:
        if text.is_text(data):
            return text.parse(data.decode("utf-8-sig"), check)
        dna = DNA.from_bytes(data)
        if check is not None:
            check(dna)
        return dna
    except DNAError as e:
        raise DNAError(f"{os.fspath(path)}: {e}") from None
