"""Functional fingerprints: programs that train differently never match; one program
written two ways always does (see primer_search/search/fingerprint.py)."""

import random
from fractions import Fraction

import pytest

from primer_search.program import seeds
from primer_search.program.builder import ProgramBuilder
from primer_search.program.dna import DNA, Subprogram
from primer_search.program.mutations import swap_instructions
from primer_search.program.patterns import write_layer_norm, write_relu, write_softmax
from primer_search.search.fingerprint import fingerprint

WIDTH = 64


def block(extra=None, *, ffn_first_gate=True, residual_order=("x", "f"), qk_dim=1,
          heads=4, dead=False):
    """A small pre-norm block with attention and a gated FFN; the keywords write the
    same or a changed program in other ways."""
    p = ProgramBuilder()
    main, norm, head, softmax, act = p.subprograms(5)
    write_layer_norm(norm)
    write_softmax(softmax)
    write_relu(act)
    q, k = (head("CONV_1X1", head.h0, dim=qk_dim) for _ in range(2))
    v = head("CONV_1X1", head.h0, dim=1)
    probs = head.call(softmax, head("T_MAT_MUL", q, k))
    head("MAT_MUL", probs, v)
    attn = main.call(head, main.call(norm, main.h0), heads=heads)
    x = main("ADD", main.h0, main("CONV_1X1", attn, dim=1))
    n = main.call(norm, x)
    if dead:
        main("SIN", n)  # read by nothing
    if ffn_first_gate:
        gate = main("CONV_1X1", n, dim=2)
        up = main("CONV_1X1", n, dim=2)
    else:  # the same two projections in the other order
        up = main("CONV_1X1", n, dim=2)
        gate = main("CONV_1X1", n, dim=2)
    hidden = main("MULTIPLY", main.call(act, gate), up)
    f = main("CONV_1X1", hidden, dim=1)
    if extra is not None:
        f = extra(main, f)
    a, b = (x, f) if residual_order == ("x", "f") else (f, x)
    main("ADD", a, b)
    return p.build()


@pytest.fixture(scope="module")
def base():
    return fingerprint(block(), WIDTH)


# ---- programs that train differently get different fingerprints -----------------------

@pytest.mark.parametrize("name, extra", [
    ("SCALE inserted (1 at init)", lambda m, f: m("SCALE", f)),
    ("SHIFT inserted (0 at init)", lambda m, f: m("SHIFT", f)),
    ("a branch that is zero at init", lambda m, f: m("ADD", f, m("SHIFT", m("C_MUL", f, c=0.0)))),
    ("DCONV inserted", lambda m, f: m("DCONV_3X1", f)),
])
def test_changes_invisible_at_init_are_seen(base, name, extra):
    assert fingerprint(block(extra), WIDTH) != base, name


def test_dimension_sizes_that_round_alike_at_a_small_width_differ_at_the_real_one():
    # Query and key widths: in a 4-head call, dim 1/16 and 1/8 are both one channel per head at width 32
    # (unit 8: 0.5 and 1), the width the first fingerprint probed at, but 32 and 64
    # channels at width 512.
    small, large = block(qk_dim=Fraction(1, 16)), block(qk_dim=Fraction(1, 8))
    assert fingerprint(small, 512) != fingerprint(large, 512)
    assert fingerprint(small, WIDTH) != fingerprint(large, WIDTH)


def test_parameter_shapes_count_even_when_outputs_agree():
    # Q = K = the same projection vs two projections: different parameter counts.
    def shared():
        p = ProgramBuilder()
        main, = p.subprograms(1)
        q = main("CONV_1X1", main.h0, dim=1)
        main("ADD", main.h0, main("MAT_MUL", main("T_MAT_MUL", q, q), q))
        return p.build()
    assert fingerprint(shared(), WIDTH) != fingerprint(block(), WIDTH)


def test_which_of_two_identical_projections_is_read_matters():
    # ADD(a, b) with b also read elsewhere vs ADD(a, a): same ops, same parameter
    # shapes, different training. Identical instructions must not share parameters.
    def program(twice: bool) -> DNA:
        p = ProgramBuilder()
        main, = p.subprograms(1)
        a = main("CONV_1X1", main.h0, dim=1)
        b = main("CONV_1X1", main.h0, dim=1)
        s = main("ADD", a, a if twice else b)
        main("ADD", main("MULTIPLY", s, b), main.h0)
        return p.build()
    assert fingerprint(program(True), WIDTH) != fingerprint(program(False), WIDTH)


def test_heads_differ():
    assert fingerprint(block(heads=4), WIDTH) != fingerprint(block(heads=8), WIDTH)


# ---- one program written two ways gets one fingerprint --------------------------------

def test_dead_code_does_not_count(base):
    assert fingerprint(block(dead=True), WIDTH) == base


def test_commuted_arguments_of_a_commutative_op(base):
    assert fingerprint(block(residual_order=("f", "x")), WIDTH) == base


def test_independent_instructions_in_another_order(base):
    assert fingerprint(block(ffn_first_gate=False), WIDTH) == base


def test_reading_either_argument_when_both_are_the_same_state():
    # LayerNorm is called as sub1(h, h): its first RED_MEAN reading h1 instead of h0
    # computes the same (a search met this: two candidates, the same fitness 472.5).
    dna = seeds.get("transformer")
    norm = dna.subprograms[1].instructions
    assert norm[0].op == "RED_MEAN" and norm[0].in1 == 0
    other = DNA(dna.subprograms[:1] + (Subprogram((norm[0].replace(in1=1),) + norm[1:]),)
                + dna.subprograms[2:])
    assert other != dna
    assert fingerprint(other, WIDTH) == fingerprint(dna, WIDTH)


def test_swapped_attention_projections_are_the_same_program():
    # Exchanging the Q and V projection instructions (references follow) reorders
    # nothing but the text.
    dna = seeds.get("transformer")
    head = 2   # subprogram 2 is the attention head; instructions 0-2 are Q, K, V
    assert [i.op for i in dna.subprograms[head].instructions[:3]] == ["CONV_1X1"] * 3
    swapped, redirected = swap_instructions(dna, head, 0, 2, random.Random(0))
    assert redirected == 0 and swapped != dna
    assert fingerprint(swapped, WIDTH) == fingerprint(dna, WIDTH)


def test_ignored_fields_do_not_count():
    dna = seeds.get("primer_ez")
    main = dna.subprograms[0].instructions
    # The first LayerNorm call reads no const: set one anyway.
    changed = DNA((Subprogram(tuple(
        ins.replace(const=7.5) if ins.is_call else ins for ins in main)),)
        + dna.subprograms[1:])
    assert fingerprint(changed, WIDTH) == fingerprint(dna, WIDTH)


def test_every_seed_has_its_own_fingerprint():
    prints = {name: fingerprint(seeds.get(name), WIDTH) for name in seeds.names()}
    assert len(set(prints.values())) == len(prints)


def test_stable_across_calls():
    dna = seeds.get("primer_ez")
    assert fingerprint(dna, WIDTH) == fingerprint(dna, WIDTH)

