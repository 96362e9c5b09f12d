"""Naming what a found program changed, against the seed it started from."""

from __future__ import annotations

import pytest

from primer_search.program import seeds
from primer_search.program.describe import diff, modifications, op_counts
from primer_search.program.dna import DNA, Instruction, Subprogram


@pytest.fixture(scope="module")
def transformer():
    return seeds.get("transformer")


def _append_to_main(dna: DNA, *instructions: Instruction) -> DNA:
    main = dna.subprograms[0]
    return DNA((Subprogram(main.instructions + instructions),) + dna.subprograms[1:])


def test_primer_ez_is_named_by_its_two_changes(transformer):
    assert modifications(seeds.get("primer_ez"), transformer) == [
        "squared activation (+1 SQUARE)",
        "depthwise convolution on the attention inputs (+3)"]


def test_the_seed_against_itself_has_no_modifications(transformer):
    assert modifications(transformer, transformer) == []
    assert diff(transformer, transformer) == ""


def test_dead_code_is_not_a_modification(transformer):
    # An instruction whose output nobody reads, followed by an identity of the old output:
    # the canonical program is the seed's, so nothing is named.
    n = len(transformer.subprograms[0].instructions)
    last = n + 1  # MAIN's output state
    dead = _append_to_main(transformer, Instruction("SIN", in1=0),
                           Instruction("ADD", in1=last, in2=last))
    assert op_counts(dead)["SIN"] == 0
    assert "SIN" not in " ".join(modifications(dead, transformer))


def test_gating_and_a_new_norm_are_named(transformer):
    n = len(transformer.subprograms[0].instructions)
    out = n + 1
    gated = _append_to_main(transformer, Instruction("CALL", in1=out, target=1),
                            Instruction("MULTIPLY", in1=out, in2=out + 1))
    names = modifications(gated, transformer)
    assert "gating (+1 MULTIPLY)" in names
    assert any(m.startswith("changed normalisation") for m in names), names


def test_diff_shows_the_inserted_square(transformer):
    text = diff(seeds.get("primer_ez"), transformer, "transformer", "primer_ez")
    assert text.startswith("--- transformer\n+++ primer_ez")
    assert "+    h9 = SQUARE(h8)" in text.splitlines()


def test_attention_replaced_by_a_convolution_is_named_once(transformer):
    # The head subprogram (sub2) becomes a projection and a width-3 convolution: the
    # softmax and value product that went with the attention are not listed separately.
    from fractions import Fraction

    head = Subprogram((Instruction("CONV_1X1", in1=0, dim=Fraction(1)),
                       Instruction("CONV_3X1", in1=2, dim=Fraction(1))))
    subs = list(transformer.subprograms)
    subs[2] = head
    names = modifications(DNA(tuple(subs)), transformer)
    assert names == ["attention removed (no query-key product left)",
                     "convolution (+1 CONV_3X1)", "dropped dense projection (-2 CONV_1X1)"]


def test_a_norm_that_drops_its_centering_is_not_a_squared_activation(transformer):
    # The LayerNorm subprogram (sub1) becomes x / (mean(x^2) + eps): it loses its mean
    # subtraction and its root, keeping the SQUARE it averages. Found by a search of the
    # CPU profile, whose winner was first misnamed "squared activation".
    norm = Subprogram((Instruction("SQUARE", in1=0), Instruction("RED_MEAN", in1=2),
                       Instruction("C_ADD", in1=3, const=1e-6),
                       Instruction("DIVIDE", in1=0, in2=4),
                       Instruction("SCALE", in1=5), Instruction("SHIFT", in1=6)))
    subs = list(transformer.subprograms)
    subs[1] = norm
    names = modifications(DNA(tuple(subs)), transformer)
    assert not any("SQUARE" in m for m in names), names
    assert "changed normalisation (-2 ABS_ROOT, -2 RED_MEAN)" in names
