"""Compiled seed DNAs equal hand-written references with the same weights."""

import jax
import numpy as np
import pytest
from reference_blocks import REFERENCES

from primer_search.fitness.config import ModelConfig
from primer_search.fitness.model import build_lm
from primer_search.fitness.train import OptimConfig, make_optimizer
from primer_search.program import seeds
from primer_search.program.compiler import compile_block
from primer_search.program.validate import canonical, validate


def perturbed_params(block, x, seed=0):
    """Initial parameters plus noise, so that e.g. LayerNorm gains are not all 1. The
    noise is 10% of a leaf's spread (or 0.1 for a constant leaf), so that weights keep
    the scale of a trained model at every width."""
    params = block.init(seed, x)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    noisy = [leaf + 0.1 * (float(np.std(leaf)) or 1.0) * jax.random.normal(k, leaf.shape)
             for leaf, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, noisy)


def relative_error(y, ref):
    return float(np.linalg.norm(np.asarray(y) - np.asarray(ref)) / np.linalg.norm(np.asarray(ref)))


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("d_model", [64, 128, 512])
def test_seed_matches_reference(name, d_model):
    block = compile_block(seeds.get(name), d_model)
    x = jax.random.normal(jax.random.key(7), (2, 16, d_model))
    params = perturbed_params(block, x)
    y = jax.jit(block.apply)(params, x)
    ref = jax.jit(REFERENCES[name])(params, x)
    # Compare the residual branches (y - x), which is stricter than comparing y.
    assert relative_error(y - x, ref - x) < 1e-5


@pytest.mark.parametrize("name", seeds.names())
def test_seeds_are_valid_and_canonical(name):
    dna = validate(seeds.get(name))
    assert canonical(dna) == dna, "seeds are written without dead code"


def test_unknown_seed_names_the_known_ones():
    with pytest.raises(KeyError, match="transformer"):
        seeds.get("gpt7")


@pytest.mark.parametrize("name", seeds.names())
def test_every_seed_learns(name, memorise):
    """A small LM with the seed block memorises one batch: gradients reach every part."""
    lm = build_lm(seeds.get(name), ModelConfig(d_model=32, num_layers=1), 64)
    losses = memorise(lm, make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=5)))
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_primer_ez_ablations_make_one_of_its_two_changes_each():
    """primer_ez(squared_relu=False) and primer_ez(mdha=False), the benchmark's ablations,
    differ from the Transformer by MDHA's three convolutions or by the square alone."""
    def ops(dna):
        return [ins.op for sub in dna.subprograms for ins in sub.instructions]

    base = ops(seeds.get("transformer"))
    mdha = ops(seeds.primer_ez(squared_relu=False))
    square = ops(seeds.primer_ez(mdha=False))
    assert ops(seeds.primer_ez(squared_relu=False, mdha=False)) == base
    assert sorted(mdha) == sorted(base + ["DCONV_3X1"] * 3)
    assert sorted(square) == sorted(base + ["SQUARE"])
    assert sorted(ops(seeds.get("primer_ez"))) == sorted(base + ["DCONV_3X1"] * 3 + ["SQUARE"])
