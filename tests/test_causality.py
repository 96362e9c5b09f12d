"""No compiled block lets position t see a position after t.

A leak would give a candidate a wonderful perplexity by reading the answer, and poison
every search. This test may not be weakened: it runs 500 random programs (in chunks, so
a failure names its program), and counts their sequence-mixing ops so that it cannot pass
vacuously.
"""

import random

import jax
import numpy as np
import pytest

import primitives
from primer_search.program import seeds
from primer_search.program.compiler import compile_block
from primer_search.program.random_programs import RandomSpec, random_dna

NUM_PROGRAMS = 500
CHUNKS = 10
D_MODEL, SEQ = 16, 8
CUTS = (0, 3, 6)
SPEC = RandomSpec(num_instructions=(3, 12))


def mixing_ops(dna):
    return [ins.op for sub in dna.subprograms for ins in sub.instructions
            if not ins.is_call and primitives.get(ins.op).mixes_sequence]


def assert_causal(block, seed: int):
    """Run the block on x and on copies of x changed after each cut t.

    Each copy runs alone, with the same compiled function and parameters as x: XLA's CPU
    kernels may round an element differently by where it falls in a batch (a vector
    loop's tail), so only the same position of an input of the same shape is bitwise
    comparable."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, SEQ, D_MODEL)).astype(np.float32)
    variants = [x]
    for t in CUTS:
        changed = x.copy()
        changed[:, t + 1:] = rng.normal(size=changed[:, t + 1:].shape) * 3
        variants.append(changed)

    apply = jax.jit(block.apply)
    params = block.init(seed, x)
    y = [np.asarray(apply(params, v))[0] for v in variants]
    for row, t in enumerate(CUTS, start=1):
        np.testing.assert_array_equal(
            y[0][: t + 1], y[row][: t + 1],
            err_msg=f"position <= {t} changed when only later positions changed:\n{block.dna}")


def programs(chunk: int):
    rng = random.Random(1000 + chunk)
    return [random_dna(rng, SPEC) for _ in range(NUM_PROGRAMS // CHUNKS)]


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_programs_are_causal(chunk):
    mixing = 0
    for i, dna in enumerate(programs(chunk)):
        block = compile_block(dna, D_MODEL)
        mixing += bool(mixing_ops(block.dna))
        assert_causal(block, seed=chunk * 1000 + i)
    # Most pruned programs must mix positions, or the check above proves little.
    assert mixing >= len(programs(chunk)) // 3, f"only {mixing} programs mix positions"


def test_random_programs_cover_every_sequence_op_and_heads():
    seen, heads = set(), set()
    for chunk in range(CHUNKS):
        for dna in programs(chunk):
            canon = compile_block(dna, D_MODEL).dna
            seen.update(mixing_ops(canon))
            heads.update(ins.heads for sub in canon.subprograms for ins in sub.instructions)
    assert seen == {n for n in primitives.names() if primitives.get(n).mixes_sequence}
    assert heads >= {1, 2, 4, 8, 16}


@pytest.mark.parametrize("name", seeds.names())
def test_seeds_are_causal(name):
    assert_causal(compile_block(seeds.get(name), D_MODEL), seed=3)
