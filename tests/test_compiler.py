"""The compiler: any valid DNA runs at any width, under jit, with readable parameters."""

import dataclasses
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from primer_search.fitness.config import ModelConfig, OptimConfig
from primer_search.fitness.model import build_lm, count_params, layer_unroll
from primer_search.fitness.train import make_optimizer, make_steps
from primer_search.program import seeds
from primer_search.program.builder import ProgramBuilder
from primer_search.program.compiler import CompileError, compile_block
from primer_search.program.dna import CALL, DNA, Instruction
from primer_search.program.random_programs import random_dna

I = Instruction


@pytest.mark.parametrize("d_model", [64, 128, 512])
def test_same_dna_runs_at_several_widths(d_model):
    for dna in [seeds.get("primer_ez")] + [random_dna(random.Random(s)) for s in range(5)]:
        block = compile_block(dna, d_model)
        x = jnp.ones((2, 8, d_model))
        params = block.init(0, x)
        y = jax.jit(block.apply)(params, x)
        assert y.shape == x.shape and y.dtype == x.dtype


def test_parameter_sizes_scale_with_width():
    def n(d):
        block = compile_block(seeds.get("transformer"), d)
        return count_params(block.init(0, jnp.ones((1, 4, d))))
    # 12 d^2 projection weights + 4 d LayerNorm parameters.
    assert n(64) == 12 * 64 ** 2 + 4 * 64
    assert n(512) == 12 * 512 ** 2 + 4 * 512


def test_parameters_follow_the_readable_program():
    block = compile_block(seeds.get("transformer", heads=4), 64)
    params = block.init(0, jnp.ones((1, 4, 64)))
    assert params["h3_sub2"]["h2_CONV_1X1"]["kernel"].shape == (4, 64, 16)  # per-head Q
    assert params["h7_CONV_1X1"]["kernel"].shape == (64, 256)  # FFN in, 4d
    assert set(params["h2_sub1"]) == {"h9_SCALE", "h10_SHIFT"}


def test_heads_that_do_not_divide_the_width_still_compile():
    dna = DNA.of([I(CALL, 0, 0, target=1, heads=16), I("ADD", 0, 2)],
                 [I(CALL, 0, 0, target=2, heads=16)], [I("CONV_1X1", 0, dim=1)])
    block = compile_block(dna, 24)  # branch units 1.5 and 0.09375 channels
    x = jnp.ones((1, 4, 24))
    assert block.apply(block.init(0, x), x).shape == x.shape


def test_init_is_fixed_by_the_seed():
    block = compile_block(seeds.get("primer_ez"), 32)
    x = jnp.ones((1, 4, 32))
    a, b, c = block.init(3, x), block.init(3, x), block.init(4, x)
    leaves = jax.tree_util.tree_leaves
    assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
    assert not all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(c)))


def test_branches_have_separate_parameters():
    dna = DNA.of([I(CALL, 0, 0, target=1, heads=4)], [I("CONV_1X1", 0, dim=1)])
    block = compile_block(dna, 32)
    x = jax.random.normal(jax.random.key(1), (1, 3, 32))
    params = block.init(0, x)
    kernel = params["h2_sub1"]["h2_CONV_1X1"]["kernel"]  # (4, 32, 8)
    y = block.apply(params, x)
    expected = jnp.concatenate([x @ kernel[h] for h in range(4)], axis=-1)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(kernel[0], kernel[1])


def test_bad_width_and_input_shape_are_refused():
    with pytest.raises(CompileError, match="d_model must be a positive integer, got 0"):
        compile_block(seeds.get("transformer"), 0)
    block = compile_block(seeds.get("transformer"), 64)
    with pytest.raises(CompileError, match=r"\[batch, seq, 64\], got \(2, 5, 32\)"):
        block.init(0, jnp.ones((2, 5, 32)))


def test_language_model_shapes_and_parameter_count():
    lm = build_lm(seeds.get("primer_ez"), ModelConfig(d_model=32, num_layers=3), 100)
    tokens = jnp.zeros((2, 7), jnp.int32)
    params = lm.init(0, tokens)
    logits = jax.jit(lm.apply)(params, tokens)
    assert logits.shape == (2, 7, 100)
    block = count_params(params["blocks"]) // 3
    assert count_params(params) == 100 * 32 + 3 * block + 2 * 32


def _conv_block():
    b = ProgramBuilder()
    main = b.subprogram()
    main("ADD", main.h0, main("CONV_7X1", main.h1, dim=1))
    return b.build()


@pytest.mark.parametrize("name", ["conv", "primer"])
def test_unrolled_layers_compute_what_the_layer_loop_computes(name):
    """The shell runs its blocks as a loop (``unroll=1``) or unrolled: the same loss and
    the same gradients."""
    dna = _conv_block() if name == "conv" else seeds.get(name)
    lm = build_lm(dna, ModelConfig(d_model=32, num_layers=3), 50)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 13)), jnp.int32)
    params = lm.init(0, tokens)

    def loss(model, p):
        return jnp.mean(jnp.square(model.apply(p, tokens)))

    results = {}
    for unroll in (1, 3):
        model = dataclasses.replace(lm, unroll=unroll)
        results[unroll] = jax.jit(jax.value_and_grad(lambda p, m=model: loss(m, p)))(params)
    np.testing.assert_allclose(results[1][0], results[3][0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(results[1][1]), jax.tree.leaves(results[3][1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="only the CPU unrolls the layers; other backends keep the loop "
                           "(layer_unroll is 1 there)")
def test_on_the_cpu_a_train_step_has_no_layer_loop():
    """XLA's CPU backend runs a block's gradient convolutions through generic loops when
    they sit inside a loop (10-20x slower steps, benchmarks/layer_loop.py), so on the CPU
    the shell's layers are unrolled: the compiled train step has no while loop."""
    lm = build_lm(_conv_block(), ModelConfig(d_model=32, num_layers=3), 50)
    assert layer_unroll(3) == 3
    opt = make_optimizer(OptimConfig(learning_rate=1e-3))
    init_state, train_step, _ = make_steps(lm, opt)
    batch = jnp.zeros((2, 9), jnp.int32)
    hlo = train_step.lower(init_state(0, batch), batch).compile().as_text()
    assert hlo.count("convolution(") == 9  # 3 layers x (forward + 2 gradients)
    assert " while(" not in hlo
    looped = dataclasses.replace(lm, unroll=1)
    _, loop_step, _ = make_steps(looped, opt)
    assert " while(" in loop_step.lower(init_state(0, batch), batch).compile().as_text()


@pytest.mark.parametrize("name", seeds.names())
def test_fused_softmax_and_relu_equal_the_interpreter(name):
    """Fusion (fusions.py) changes speed, not values or gradients."""
    x = jax.random.normal(jax.random.key(2), (2, 12, 64)) * 2
    fused, plain = compile_block(seeds.get(name), 64), compile_block(seeds.get(name), 64, fuse=False)
    params = fused.init(0, x)

    def loss(block):
        return lambda p: jnp.sum(jnp.sin(block.apply(p, x)))

    np.testing.assert_allclose(fused.apply(params, x), plain.apply(params, x), rtol=1e-5, atol=1e-5)
    g_fused, g_plain = jax.grad(loss(fused))(params), jax.grad(loss(plain))(params)
    for a, b in zip(jax.tree_util.tree_leaves(g_fused), jax.tree_util.tree_leaves(g_plain)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fusion_only_applies_to_exact_patterns():
    from primer_search.program.fusions import fused

    softmax = seeds.get("transformer").subprograms[3]
    assert fused(softmax)[0] == "softmax"
    edited = DNA.of(softmax.instructions[:-1] + (I("MULTIPLY", 5, 6),)).subprograms[0]
    assert fused(edited) is None
