"""Write DNA by hand, with names instead of state indices.

    p = ProgramBuilder()
    main, norm = p.subprograms(2)
    y = norm("RED_MEAN", norm.h0)
    norm("DIFFERENCE", norm.h0, y)          # the last instruction is the return value
    n = main.call(norm, main.h0)
    main("ADD", main.h0, n)
    dna = p.build()

Every instruction returns the index of the state it writes. Subprograms are numbered in
the order they are created; MAIN is the first, and calls must go to later ones.
"""

from __future__ import annotations

from fractions import Fraction

from primer_search.program.dna import CALL, DNA, Instruction, Subprogram

__all__ = ["ProgramBuilder", "SubBuilder"]


class SubBuilder:
    h0 = 0
    h1 = 1

    def __init__(self, index: int):
        self.index = index
        self.instructions: list[Instruction] = []

    def _add(self, ins: Instruction) -> int:
        self.instructions.append(ins)
        return len(self.instructions) + 1

    def __call__(self, op: str, in1: int, in2: int = 0, *, c: float = 0.0,
                 dim: Fraction | int | str = 1) -> int:
        """Append ``op(in1, in2, const=c, dim=dim)``; return its state index."""
        return self._add(Instruction(op, in1, in2, c, Fraction(dim)))

    def call(self, sub: SubBuilder, in1: int, in2: int | None = None, *, heads: int = 1) -> int:
        """Append a call of ``sub`` (``in2`` defaults to ``in1``); return its state index."""
        return self._add(Instruction(CALL, in1, in1 if in2 is None else in2,
                                     target=sub.index, heads=heads))


class ProgramBuilder:
    def __init__(self):
        self._subs: list[SubBuilder] = []

    def subprogram(self) -> SubBuilder:
        sub = SubBuilder(len(self._subs))
        self._subs.append(sub)
        return sub

    def subprograms(self, n: int) -> list[SubBuilder]:
        return [self.subprogram() for _ in range(n)]

    def build(self) -> DNA:
        return DNA(tuple(Subprogram(tuple(s.instructions)) for s in self._subs))
