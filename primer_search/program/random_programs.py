"""Draw random valid programs from the vocabulary.

Used by the causality and fuzz tests, and by the search (insert mutations, optional random
initial populations). All randomness comes from the ``random.Random`` passed in.

Programs are drawn instruction by instruction with a width check at each step, so every
draw is valid by construction; subprograms are drawn from the last to MAIN so that a call
always knows what its callee returns. If MAIN does not end at the model width, one
closing instruction brings it there (a dense projection, a product with ``h0``, or a
residual add).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction

import primitives
from primer_search.program.dna import CALL, DNA, HEADS, DNAError, Instruction, Subprogram
from primer_search.program.generation import RandomSpec
from primer_search.program.validate import MAIN_WIDTH, output_width, validate
from primitives.spec import SEQ, ShapeError, Width

__all__ = ["DIM_BANK", "RandomSpec", "random_const", "random_dna", "random_instruction"]

# Relative dimension sizes: the paper's bank (1, 2, 4, 8, 12, 16, 24, 32, 48, 64) in units
# of 16, so that 16 -> the model width.
DIM_BANK = tuple(Fraction(v, 16) for v in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64))
CONST_BANK = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def random_const(rng: random.Random) -> float:
    """A bank value, or ``10**X + Y`` style noise around it half of the time."""
    c = rng.choice(CONST_BANK)
    if rng.random() < 0.5:
        c = c * 10 ** rng.gauss(0, 1) + rng.gauss(0, 1)
    return float(c)


def random_instruction(rng: random.Random, position: int, sub: int, num_subs: int,
                       spec: RandomSpec) -> Instruction:
    """Any instruction for ``position`` in subprogram ``sub`` (not yet width-checked)."""
    # Input 1 reads the previous state half of the time, so that programs form chains
    # instead of mostly dead code.
    in1 = position + 1 if rng.random() < 0.5 else rng.randrange(position + 2)
    in2 = rng.randrange(position + 2)
    if sub + 1 < num_subs and rng.random() < spec.call_prob:
        return Instruction(CALL, in1, in2, target=rng.randrange(sub + 1, num_subs),
                           heads=rng.choice(HEADS))
    return Instruction(spec.draw_op(rng, spec.op_names()), in1, in2, random_const(rng),
                       rng.choice(DIM_BANK))


def _width_of(dna: DNA, ins: Instruction, widths: Sequence[Width], sub: int) -> Width:
    a, b = widths[ins.in1], widths[ins.in2]
    if ins.is_call:
        out = output_width(dna, ins.target, a, b)
        if ins.heads > 1 and out.kind != "rel":
            raise ShapeError("multi-head call must return a relative width")
        return out
    return primitives.get(ins.op).shape(a, b, ins.dim)


def _draw_subprogram(rng, dna_tail: list[Subprogram], sub: int, num_subs: int,
                     length: int, spec: RandomSpec) -> tuple[list[Instruction], list[Width]]:
    # A partial DNA whose subprograms below `sub` are empty placeholders.
    partial = DNA(tuple([Subprogram(())] * (sub + 1) + dna_tail))
    widths = [MAIN_WIDTH, MAIN_WIDTH]
    instructions: list[Instruction] = []
    while len(instructions) < length:
        for _ in range(100):
            ins = random_instruction(rng, len(instructions), sub, num_subs, spec)
            try:
                w = _width_of(partial, ins, widths, sub)
            except (ShapeError, DNAError):
                continue
            break
        else:
            break  # nothing fits here (a tiny op list); stop this subprogram early
        instructions.append(ins)
        widths.append(w)
    return instructions, widths


def random_dna(rng: random.Random, spec: RandomSpec = RandomSpec()) -> DNA:
    """A random valid DNA (see module doc)."""
    num_subs = rng.randint(*spec.num_subprograms)
    tail: list[Subprogram] = []
    for sub in range(num_subs - 1, -1, -1):
        length = rng.randint(*spec.num_instructions)
        instructions, widths = _draw_subprogram(rng, tail, sub, num_subs, length, spec)
        if sub == 0 and widths[-1] != MAIN_WIDTH:
            instructions.append(_closing_instruction(rng, len(instructions), widths[-1]))
        tail.insert(0, Subprogram(tuple(instructions)))
    return validate(DNA(tuple(tail)))


def _closing_instruction(rng: random.Random, position: int, width: Width) -> Instruction:
    last = position + 1
    options = [Instruction("ADD", 0, last)]
    if width.kind == SEQ:
        options.append(Instruction("MAT_MUL", last, 0))
    else:
        options.append(Instruction("CONV_1X1", last, 0, dim=Fraction(1)))
    return rng.choice(options)
