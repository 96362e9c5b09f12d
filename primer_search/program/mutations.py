"""Mutations: how a child DNA is made from its parent (Primer, So et al. 2021, Sec. 2).

One child gets one mutation, picked by weight from :data:`MUTATIONS`:

* ``delete``: remove an instruction; its readers read its input 1 instead (the op is
  bypassed), and references to later states shift down by one;
* ``insert``: insert a random instruction (:func:`random_instruction`) at a random place;
  references to later states shift up by one, so it is read only if it is the new last
  instruction or once a later mutation rewires an input to it;
* ``delete_insert``: both, possibly in different subprograms;
* ``change``: redraw one field of one instruction: the op, input 1, input 2, the constant
  or the dimension, only among the fields the op reads;
* ``swap``: exchange two instructions of a subprogram; references to the two states are
  exchanged, and one that would then point forward is redirected to a random earlier state;
* ``perturb``: a constant ``c`` becomes ``c * 10**X + Y`` with ``X, Y ~ N(0, 1)``, or a
  dimension moves to a neighbouring size of :data:`DIM_BANK`.

Every mutation is a pure function ``(rng, dna, spec) -> (child, description) | None``: it
never modifies its input and takes all randomness from ``rng``. ``None`` means it does not
apply (nothing to delete, swap or perturb). A child is always *structurally* valid
(references, calls and field ranges; building it runs ``check_structure``) and differs
from its parent, but it may break a shape rule: :func:`mutate` validates it and draws
again. A child equal to its parent up to dead code and unread fields (the same
:func:`~primer_search.program.validate.canonical` form) is mutated again, as in the paper.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable
from fractions import Fraction

from primer_search.program.dna import (
    CALL,
    DNA,
    HEADS,
    DNAError,
    Instruction,
    Subprogram,
    fields_read,
    format_instruction,
)
from primer_search.program.generation import MUTATION_NAMES, MutationConfig, RandomSpec
from primer_search.program.random_programs import DIM_BANK, random_const, random_instruction
from primer_search.program.validate import canonical, dna_hash

__all__ = ["MUTATIONS", "Mutation", "MutationConfig", "MutationError", "change", "delete",
           "delete_insert", "delete_instruction", "insert", "insert_instruction", "mutate",
           "perturb", "perturb_const", "perturb_dim", "swap", "swap_instructions"]

# (rng, parent, spec) -> (child, description), or None where the mutation does not apply.
Mutation = Callable[[random.Random, DNA, RandomSpec], tuple[DNA, str] | None]


class MutationError(ValueError):
    """:func:`mutate` found no valid, non-equivalent child within ``max_tries`` draws."""


# ---- small helpers ------------------------------------------------------------------

def _where(sub: int, index: int) -> str:
    return f"sub{sub}[{index}]"


def _op_text(ins: Instruction) -> str:
    if not ins.is_call:
        return ins.op
    return f"CALL sub{ins.target}" + (f" heads={ins.heads}" if ins.heads != 1 else "")


def _dim_text(d: Fraction) -> str:
    return "d" if d == 1 else f"{d}d" if d.denominator == 1 else f"({d})d"


def _remap(ins: Instruction, fix: Callable[[int], int]) -> Instruction:
    return ins.replace(in1=fix(ins.in1), in2=fix(ins.in2))


def _with_sub(dna: DNA, sub: int, instructions) -> DNA:
    subs = list(dna.subprograms)
    subs[sub] = Subprogram(tuple(instructions))
    return DNA(tuple(subs))


def _sites(dna: DNA, min_len: int = 1) -> list[tuple[int, int]]:
    """Every ``(subprogram, index)`` of an instruction, in subprograms of >= min_len."""
    return [(s, i) for s, sub in enumerate(dna.subprograms) if len(sub) >= min_len
            for i in range(len(sub))]


# ---- reference-fixing edits (deterministic building blocks) ---------------------------

def delete_instruction(dna: DNA, sub: int, index: int) -> DNA:
    """``dna`` without instruction ``index`` of subprogram ``sub``.

    Its readers read its input 1 instead; references to later states shift down by one.
    """
    old = dna.subprograms[sub].instructions
    gone, bypass = index + 2, old[index].in1

    def fix(r: int) -> int:
        return bypass if r == gone else r - 1 if r > gone else r

    return _with_sub(dna, sub, old[:index] + tuple(_remap(x, fix) for x in old[index + 1:]))


def insert_instruction(dna: DNA, sub: int, index: int, ins: Instruction) -> DNA:
    """``dna`` with ``ins`` as instruction ``index`` of subprogram ``sub`` (writing
    ``h{index+2}``), spliced into the dataflow: later readers of its input 1 read the new
    state instead (the inverse of :func:`delete_instruction`'s bypass), and references to
    later states shift up by one.

    Without the splice the new state would be read by nobody unless it were the last
    instruction: on the seeds about 79% of inserts were dead code, and evolution could
    not grow live programs.
    """
    old = dna.subprograms[sub].instructions
    if not 0 <= index <= len(old):
        raise IndexError(f"insert position {index} outside 0..{len(old)} of subprogram {sub}")
    new_state = index + 2

    def fix(r: int) -> int:
        if r == ins.in1:
            return new_state
        return r + 1 if r >= new_state else r

    return _with_sub(dna, sub, old[:index] + (ins,)
                     + tuple(_remap(x, fix) for x in old[index:]))


def swap_instructions(dna: DNA, sub: int, a: int, b: int,
                      rng: random.Random) -> tuple[DNA, int]:
    """Swap instructions ``a`` and ``b`` of subprogram ``sub``; return the DNA and how
    many references were redirected.

    References to the two swapped states are exchanged (a reader after both still reads
    the same computation); a reference that would then point at the instruction's own or
    a later state is redirected to a uniformly random earlier state.
    """
    a, b = sorted((a, b))
    old = list(dna.subprograms[sub].instructions)
    if a == b or not 0 <= a < b < len(old):
        raise IndexError(f"cannot swap positions {a} and {b} of subprogram {sub} "
                         f"({len(old)} instructions)")
    sa, sb = a + 2, b + 2
    old[a], old[b] = old[b], old[a]
    out, redirected = [], 0
    for j, ins in enumerate(old):
        refs = []
        for r in (ins.in1, ins.in2):
            r = sb if r == sa else sa if r == sb else r
            if r > j + 1:
                r = rng.randrange(j + 2)
                redirected += 1
            refs.append(r)
        out.append(ins.replace(in1=refs[0], in2=refs[1]))
    return _with_sub(dna, sub, out), redirected


# ---- the mutations ------------------------------------------------------------------

def delete(rng: random.Random, dna: DNA, spec: RandomSpec) -> tuple[DNA, str] | None:
    """Remove one instruction, chosen uniformly among all instructions of all
    subprograms (see :func:`delete_instruction`)."""
    sites = _sites(dna)
    if not sites:
        return None
    s, i = rng.choice(sites)
    ins = dna.subprograms[s].instructions[i]
    return delete_instruction(dna, s, i), f"delete {_where(s, i)} ({_op_text(ins)})"


def insert(rng: random.Random, dna: DNA, spec: RandomSpec) -> tuple[DNA, str] | None:
    """Insert a random instruction at a position chosen uniformly among all insert
    positions of all subprograms (see :func:`insert_instruction`)."""
    positions = [(s, i) for s, sub in enumerate(dna.subprograms) for i in range(len(sub) + 1)]
    s, i = rng.choice(positions)
    ins = random_instruction(rng, i, s, len(dna.subprograms), spec)
    return insert_instruction(dna, s, i, ins), f"insert {_where(s, i)}: {format_instruction(i, ins)}"


def delete_insert(rng: random.Random, dna: DNA, spec: RandomSpec) -> tuple[DNA, str] | None:
    """:func:`delete` one instruction, then :func:`insert` one (anywhere, possibly in
    another subprogram)."""
    deleted = delete(rng, dna, spec)
    if deleted is None:
        return None
    inserted = insert(rng, deleted[0], spec)
    assert inserted is not None  # insert always applies
    return inserted[0], f"{deleted[1]} + {inserted[1]}"


def _other_ops(ins: Instruction, sub: int, num_subs: int,
               spec: RandomSpec) -> tuple[list[str], list[tuple[int, int]]]:
    """Primitives and ``(target, heads)`` calls that ``ins`` could change its op to."""
    prims = [op for op in spec.op_names() if op != ins.op and spec.weight_of(op) > 0]
    calls = [(t, h) for t in range(sub + 1, num_subs) for h in HEADS
             if not (ins.is_call and (t, h) == (ins.target, ins.heads))]
    return prims, calls


def _new_op(rng: random.Random, ins: Instruction, position: int, prims: list[str],
            calls: list[tuple[int, int]], spec: RandomSpec) -> Instruction:
    """``ins`` with another op: a call (with probability ``spec.call_prob``, as in
    :func:`random_instruction`) or a primitive. Fields the new op reads but the old one
    did not carry no information, so they are drawn fresh."""
    if calls and (not prims or rng.random() < spec.call_prob):
        target, heads = rng.choice(calls)
        return ins.replace(op=CALL, target=target, heads=heads)
    new = ins.replace(op=spec.draw_op(rng, prims), target=0, heads=1)
    fresh = fields_read(new) - fields_read(ins)
    if "in2" in fresh:
        new = new.replace(in2=rng.randrange(position + 2))
    if "const" in fresh:
        new = new.replace(const=random_const(rng))
    if "dim" in fresh:
        new = new.replace(dim=rng.choice(DIM_BANK))
    return new


def change(rng: random.Random, dna: DNA, spec: RandomSpec) -> tuple[DNA, str] | None:
    """Redraw one field of one instruction: its op (see :func:`_new_op`), an input (another
    earlier state), its constant (:func:`random_const`) or its dimension (another
    :data:`DIM_BANK` size). The field is chosen uniformly among the op and the fields the
    op reads; a change to an unread field would not change the program."""
    sites = _sites(dna)
    if not sites:
        return None
    s, i = rng.choice(sites)
    ins = dna.subprograms[s].instructions[i]
    prims, calls = _other_ops(ins, s, len(dna.subprograms), spec)
    fields = (["op"] if prims or calls else []) + [
        f for f in ("in1", "in2", "const", "dim") if f in fields_read(ins)]
    field = rng.choice(fields)  # never empty: every op reads in1, and in1 has 2+ choices
    where = _where(s, i)
    if field == "op":
        new = _new_op(rng, ins, i, prims, calls, spec)
        text = f"change {where} op {_op_text(ins)} -> {_op_text(new)}: {format_instruction(i, new)}"
    elif field in ("in1", "in2"):
        old = getattr(ins, field)
        ref = rng.choice([r for r in range(i + 2) if r != old])
        new = ins.replace(**{field: ref})
        text = f"change {where} {field} h{old} -> h{ref}"
    elif field == "const":
        for _ in range(10):
            value = random_const(rng)
            if value != ins.const:
                break
        else:
            return None
        new = ins.replace(const=value)
        text = f"change {where} const {ins.const:.4g} -> {value:.4g}"
    else:
        value = rng.choice([d for d in DIM_BANK if d != ins.dim])
        new = ins.replace(dim=value)
        text = f"change {where} dim {_dim_text(ins.dim)} -> {_dim_text(value)}"
    old_list = dna.subprograms[s].instructions
    return _with_sub(dna, s, old_list[:i] + (new,) + old_list[i + 1:]), text


def swap(rng: random.Random, dna: DNA, spec: RandomSpec) -> tuple[DNA, str] | None:
    """Swap two instructions of one subprogram (see :func:`swap_instructions`): the first
    uniformly among instructions of subprograms with two or more, the second uniformly
    among the others of its subprogram."""
    sites = _sites(dna, min_len=2)
    if not sites:
        return None
    s, a = rng.choice(sites)
    b = rng.choice([j for j in range(len(dna.subprograms[s])) if j != a])
    a, b = sorted((a, b))
    child, redirected = swap_instructions(dna, s, a, b, rng)
    if child == dna:  # two identical instructions that nobody reads
        return None
    text = f"swap {_where(s, a)} <-> {_where(s, b)}"
    if redirected:
        text += f" ({redirected} input{'s' if redirected > 1 else ''} redirected)"
    return child, text


def perturb_const(rng: random.Random, c: float) -> float | None:
    """``c * 10**X + Y`` with ``X, Y ~ N(0, 1)``; None if that overflows (10 draws)."""
    for _ in range(10):
        try:
            value = c * 10 ** rng.gauss(0, 1) + rng.gauss(0, 1)
        except OverflowError:
            continue
        if math.isfinite(value) and value != c:
            return float(value)
    return None


def perturb_dim(rng: random.Random, d: Fraction) -> Fraction:
    """A neighbouring size of ``d`` in :data:`DIM_BANK`; a size not in the bank moves to
    the nearest bank size (on a log scale, as the bank is roughly geometric)."""
    if d in DIM_BANK:
        k = DIM_BANK.index(d)
        return rng.choice([DIM_BANK[j] for j in (k - 1, k + 1) if 0 <= j < len(DIM_BANK)])
    gaps = [abs(math.log(b / d)) for b in DIM_BANK]
    best = min(gaps)
    return rng.choice([b for b, g in zip(DIM_BANK, gaps) if g - best < 1e-12])


def perturb(rng: random.Random, dna: DNA, spec: RandomSpec) -> tuple[DNA, str] | None:
    """Perturb a value an op reads, chosen uniformly among all constants read (C_MUL,
    C_ADD) and all dimensions read (convolutions): see :func:`perturb_const` and
    :func:`perturb_dim`."""
    sites = [(s, i, f) for s, i in _sites(dna)
             for f in ("const", "dim") if f in fields_read(dna.subprograms[s].instructions[i])]
    if not sites:
        return None
    s, i, field = rng.choice(sites)
    ins = dna.subprograms[s].instructions[i]
    if field == "const":
        value = perturb_const(rng, ins.const)
        if value is None:
            return None
        new = ins.replace(const=value)
        text = f"perturb {_where(s, i)} const {ins.const:.4g} -> {value:.4g}"
    else:
        value = perturb_dim(rng, ins.dim)
        new = ins.replace(dim=value)
        text = f"perturb {_where(s, i)} dim {_dim_text(ins.dim)} -> {_dim_text(value)}"
    old = dna.subprograms[s].instructions
    return _with_sub(dna, s, old[:i] + (new,) + old[i + 1:]), text


MUTATIONS: dict[str, Mutation] = {
    "delete": delete,
    "insert": insert,
    "delete_insert": delete_insert,
    "change": change,
    "swap": swap,
    "perturb": perturb,
}
# MutationConfig (plain data, no JAX) checks its weights against this table's names.
assert tuple(MUTATIONS) == MUTATION_NAMES, "generation.MUTATION_NAMES must list MUTATIONS"


# ---- the driver ---------------------------------------------------------------------

def _grows_past(child: DNA, current: DNA, limit: int) -> bool:
    return any(len(new) > limit and len(new) > len(old)
               for new, old in zip(child.subprograms, current.subprograms))


def mutate(dna: DNA, rng: random.Random,
           cfg: MutationConfig = MutationConfig()) -> tuple[DNA, str]:
    """One child of ``dna``: pick a mutation by weight and apply it.

    A proposal that does not apply, is invalid (:class:`DNAError` from validation) or
    grows a subprogram past ``cfg.max_instructions`` is drawn again from the same DNA.
    A valid child with the parent's canonical form (an edit of dead code, say) is
    mutated again, and the descriptions are joined with ``'; '``. ``dna`` must be valid.

    Raises :class:`MutationError` (a ValueError naming the parent's hash and what was
    tried) after ``cfg.max_tries`` proposals.
    """
    parent_form = canonical(dna)  # validates the parent
    names = [n for n, w in cfg.weights if w > 0]
    weights = [w for _, w in cfg.weights if w > 0]
    current, steps = dna, []
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    for _ in range(cfg.max_tries):
        name = rng.choices(names, weights)[0]
        result = MUTATIONS[name](rng, current, cfg.spec)
        if result is None:
            outcomes[name, "inapplicable"] += 1
            continue
        child, text = result
        if _grows_past(child, current, cfg.max_instructions):
            outcomes[name, f"past {cfg.max_instructions} instructions"] += 1
            continue
        try:
            form = canonical(child)
        except DNAError:
            outcomes[name, "invalid"] += 1
            continue
        steps.append(text)
        current = child
        if form != parent_form:
            return child, "; ".join(steps)
        outcomes[name, "equivalent to the parent"] += 1
    tried = ", ".join(f"{name} {why} x{count}" for (name, why), count in outcomes.items())
    raise MutationError(f"no valid child of parent {dna_hash(dna)[:16]} that differs from it "
                        f"after {cfg.max_tries} tries (weights {dict(cfg.weights)}): {tried}")
