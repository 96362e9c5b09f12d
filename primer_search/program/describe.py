"""What a found program changed: named modifications and a diff against a seed.

A search's winner is read against the program it started from. :func:`modifications`
names the changes that the architecture literature has names for (Primer, So et al.
2021, Sec. 4), found by comparing the op counts of the two *canonical* programs (dead
code removed, so an unused instruction never counts) and the subprograms they sit in:

* a squared activation (a SQUARE added that no mean reads, so not a norm's), or another
  changed activation (elementwise non-linearities added or removed);
* depthwise convolutions (DCONV_*), "on the attention inputs" when they sit in a
  subprogram that also takes query-key products (T_MAT_MUL), as Primer's MDHA does;
* gating (an elementwise MULTIPLY of two states added);
* a changed or added normalisation (the mean, root and divide of a norm added or
  removed);
* attention removed or added (query-key products, T_MAT_MUL), and other convolutions
  (CONV_3X1 and wider, which mix neighbouring positions and all channels);
* changed widths (the multiset of dense layers' output widths differs), and dropped or
  added dense projections; a changed constant of a C_MUL (a leaky or mirrored ReLU);
* anything else, as op count differences.

The names are a reader's aid, found by pattern, not a proof of equivalence; the diff
(:func:`diff`) is the exact change.
"""

from __future__ import annotations

import collections
import difflib

from primer_search.program.dna import DNA
from primer_search.program.validate import canonical

__all__ = ["diff", "keeps_attention", "modifications", "op_counts"]

ACTIVATIONS = {"MAX", "MIN", "SIGMOID", "TANH", "SIN", "COS", "EXP", "LOG", "ABS", "SIGN",
               "RECIP", "ABS_ROOT"}
NORM_OPS = {"RED_MEAN", "ABS_ROOT", "DIVIDE"}
DENSE = "CONV_1X1"
ATTENTION = "T_MAT_MUL"
# What comes and goes with one attention: causal softmax and the product with values.
SOFTMAX_OPS = ("MASK", "RED_MAX", "DIFFERENCE", "EXP", "RED_SUM", "DIVIDE", "MAT_MUL")
# Ops explained by a named modification, so not listed again as "other".
_NAMED = {"SQUARE", "MULTIPLY", DENSE, ATTENTION} | ACTIVATIONS | NORM_OPS


def _inlined(dna: DNA) -> list[tuple[str, str, bool]]:
    """Every live instruction of the canonical program with calls inlined (a subprogram
    called twice counts twice; heads do not multiply), as (op, field, in a subprogram that
    takes query-key products). The field is the dim; a C_MUL's constant; for a SQUARE,
    "norm" when a RED_MEAN of the same subprogram reads it (a norm squares its input to
    average it), else "activation"."""
    subs = canonical(dna).subprograms

    def expand(s: int) -> list[tuple[str, str, bool]]:
        instructions = subs[s].instructions
        attn = any(ins.op == "T_MAT_MUL" for ins in instructions)
        averaged = {ins.in1 for ins in instructions if ins.op == "RED_MEAN"}
        out = []
        for i, ins in enumerate(instructions):
            if ins.is_call:
                out.extend(expand(ins.target))
            elif ins.op == "SQUARE":  # instruction i writes h{i+2}
                out.append((ins.op, "norm" if i + 2 in averaged else "activation", attn))
            else:
                out.append((ins.op, str(ins.dim) if ins.op != "C_MUL" else f"{ins.const:g}",
                            attn))
        return out

    return expand(0)


def op_counts(dna: DNA) -> collections.Counter:
    """How many live instructions of each op the canonical program runs, calls inlined."""
    return collections.Counter(op for op, _, _ in _inlined(dna))


def keeps_attention(dna: DNA) -> bool:
    """Whether the canonical program still takes query-key products (T_MAT_MUL): a block
    that computes attention and never uses the result has none once dead code is gone."""
    return op_counts(dna)[ATTENTION] > 0


def _fields(inlined, op_name: str) -> collections.Counter:
    """How often each dim (a C_MUL: each constant) occurs among ``op_name`` instructions."""
    return collections.Counter(field for op, field, _ in inlined if op == op_name)


def _dconv_places(inlined) -> tuple[int, int]:
    """(DCONVs in attention subprograms, DCONVs elsewhere)."""
    places = [attn for op, _, attn in inlined if op.startswith("DCONV")]
    return sum(places), len(places) - sum(places)


def _signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def modifications(dna: DNA, seed: DNA) -> list[str]:
    """Named modifications of ``dna`` relative to ``seed`` (see the module doc); empty
    when the canonical programs have the same ops and widths."""
    ia, ib = _inlined(dna), _inlined(seed)  # canonicalised once each
    a = collections.Counter(op for op, _, _ in ia)
    b = collections.Counter(op for op, _, _ in ib)
    delta = {op: a[op] - b[op] for op in set(a) | set(b) if a[op] != b[op]}
    # A removed (or added) attention takes its softmax and value product with it: those
    # ops are part of "attention removed", not changes of their own.
    heads = delta.get(ATTENTION, 0)
    for op in SOFTMAX_OPS:
        if op in delta and heads and (delta[op] > 0) == (heads > 0):
            delta[op] -= heads if abs(heads) <= abs(delta[op]) else delta[op]
            if delta[op] == 0:
                del delta[op]
    out = []
    # A norm's SQUARE (read by a RED_MEAN) is part of the norm, not an activation.
    extra_square = _fields(ia, "SQUARE")["activation"] - _fields(ib, "SQUARE")["activation"]
    if extra_square > 0:
        out.append(f"squared activation ({_signed(extra_square)} SQUARE)")
    elif extra_square < 0:
        out.append(f"removed squaring ({_signed(extra_square)} SQUARE)")
    acts = {op: d for op, d in delta.items() if op in ACTIVATIONS and op not in NORM_OPS}
    if acts:
        out.append("changed activation (" + ", ".join(
            f"{_signed(d)} {op}" for op, d in sorted(acts.items())) + ")")
    (attn_a, other_a), (attn_b, other_b) = _dconv_places(ia), _dconv_places(ib)
    if attn_a != attn_b:
        out.append(f"depthwise convolution on the attention inputs ({_signed(attn_a - attn_b)})")
    if other_a != other_b:
        out.append(f"depthwise convolution ({_signed(other_a - other_b)})")
    if delta.get("MULTIPLY", 0) > 0:
        out.append(f"gating ({_signed(delta['MULTIPLY'])} MULTIPLY)")
    elif delta.get("MULTIPLY", 0) < 0:
        out.append(f"removed elementwise product ({_signed(delta['MULTIPLY'])} MULTIPLY)")
    norm = {op: delta[op] for op in NORM_OPS if op in delta}
    if norm:
        out.append("changed normalisation (" + ", ".join(
            f"{_signed(d)} {op}" for op, d in sorted(norm.items())) + ")")
    if delta.get(ATTENTION, 0) and a[ATTENTION] == 0:
        out.append("attention removed (no query-key product left)")
    elif delta.get(ATTENTION, 0):
        out.append(f"{'more' if delta[ATTENTION] > 0 else 'fewer'} query-key products "
                   f"({_signed(delta[ATTENTION])} {ATTENTION})")
    convs = {op: d for op, d in delta.items() if op.startswith("CONV_") and op != DENSE}
    if convs:
        out.append("convolution (" + ", ".join(
            f"{_signed(d)} {op}" for op, d in sorted(convs.items())) + ")")
    consts, seed_consts = _fields(ia, "C_MUL"), _fields(ib, "C_MUL")
    if consts != seed_consts and sum(consts.values()) == sum(seed_consts.values()):
        out.append("changed constant (" + ", ".join(
            f"C_MUL {c}" for c in sorted((consts - seed_consts).elements())) + ")")
    if delta.get(DENSE, 0) < 0:
        out.append(f"dropped dense projection ({_signed(delta[DENSE])} {DENSE})")
    elif delta.get(DENSE, 0) > 0:
        out.append(f"added dense projection ({_signed(delta[DENSE])} {DENSE})")
    elif _fields(ia, DENSE) != _fields(ib, DENSE):
        wa, wb = _fields(ia, DENSE), _fields(ib, DENSE)
        out.append("changed widths (" + ", ".join(
            f"{_signed(wa[w] - wb[w])} dense to {w}d" for w in sorted(set(wa) | set(wb))
            if wa[w] != wb[w]) + ")")
    rest = {op: d for op, d in delta.items() if op not in _NAMED and op != "CALL"
            and not op.startswith("DCONV") and not op.startswith("CONV_")}
    if rest:
        out.append("other (" + ", ".join(f"{_signed(d)} {op}" for op, d in sorted(rest.items()))
                   + ")")
    return out


def diff(dna: DNA, seed: DNA, seed_name: str = "seed", name: str = "found") -> str:
    """Unified diff of the canonical programs as code, ``seed`` first."""
    lines = difflib.unified_diff(str(canonical(seed)).splitlines(),
                                 str(canonical(dna)).splitlines(),
                                 fromfile=seed_name, tofile=name, lineterm="")
    return "\n".join(lines)
