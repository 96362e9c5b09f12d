"""The default trainer: a learning rate that scales with width, schedules that reach
their end, weight decay where it belongs, optimiser state made without a compile, the
paper's Adafactor, and the train command's view of them."""

import jax
import jax.numpy as jnp
import pytest

from primer_search.fitness.config import ModelConfig, OptimConfig
from primer_search.fitness.train import learning_rate_schedule
from primer_search.program import seeds

# ---- the default trainer --------------------------------------------------------------

def test_default_rate_scales_with_width_and_warmup_fits_the_budget():
    from primer_search.fitness.config import LR_TIMES_WIDTH

    cfg = OptimConfig()
    assert cfg.learning_rate is None
    assert cfg.peak_rate(64) == pytest.approx(LR_TIMES_WIDTH / 64)
    assert cfg.peak_rate(128) == pytest.approx(cfg.peak_rate(64) / 2)
    assert OptimConfig(learning_rate=1e-3).peak_rate(512) == 1e-3
    with pytest.raises(ValueError, match="needs the model width"):
        cfg.peak_rate(None)
    assert (cfg.warmup(100), cfg.warmup(1000), cfg.warmup(None)) == (30, 100, 100)


def test_schedules_reach_their_end():
    total = 100
    for kind in ("linear", "cosine", "wsd"):
        lr = learning_rate_schedule(OptimConfig(learning_rate=1.0, warmup_steps=10,
                                                schedule=kind), total)
        assert float(lr(9)) == pytest.approx(1.0)            # peak at the end of warm-up
        # Half way: "linear" and "cosine" are falling, "wsd" holds until its cooldown.
        assert (float(lr(total // 2)) == 1.0) == (kind == "wsd")
        assert float(lr(total - 1)) == pytest.approx(0.0, abs=1e-6)
    const = learning_rate_schedule(OptimConfig(learning_rate=1.0, warmup_steps=10,
                                               schedule="linear"), None)
    assert float(const(5000)) == 1.0                         # no known end: holds the peak
    rsqrt = learning_rate_schedule(OptimConfig(learning_rate=1.0, warmup_steps=25,
                                               schedule="rsqrt"), total)
    assert float(rsqrt(99)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="optim.schedule must be one of"):
        OptimConfig(schedule="step")


def test_weight_decay_skips_norms_biases_and_taps():
    from primer_search.fitness.model import build_lm
    from primer_search.fitness.train import decay_mask

    lm = build_lm(seeds.get("primer_ez"), ModelConfig(d_model=16, num_layers=1), 50)
    params = lm.init(0, jnp.zeros((1, 4), jnp.int32))
    flat = jax.tree_util.tree_flatten_with_path(decay_mask(params))[0]
    decayed = {jax.tree_util.keystr(path) for path, on in flat if on}
    kept = {jax.tree_util.keystr(path) for path, on in flat if not on}
    assert "['embed']" in decayed
    assert all(p.endswith("['kernel']") or p == "['embed']" for p in decayed)
    assert any(p.endswith("['scale']") for p in kept) and any(p.endswith("['shift']") for p in kept)
    assert any(p.endswith("['taps']") for p in kept)


@pytest.mark.parametrize("optim", [
    OptimConfig(),
    OptimConfig(decay="all", weight_decay=0.0),
    OptimConfig(optimizer="adafactor"),
    OptimConfig(optimizer="adafactor", weight_decay=0.0, clip_norm=0.0),
], ids=["adamw", "adamw-no-decay", "adafactor", "adafactor-bare"])
def test_optimiser_state_from_shapes_is_the_optimisers_own_init(optim, monkeypatch):
    """make_optimizer's optimisers make their fresh state from shapes, without a compile
    (train.zero_start): for every seed block's parameters it equals what the optimiser's
    own init returns, leaf by leaf (structure, shape, dtype and value)."""
    import numpy as np

    from primer_search.fitness import train
    from primer_search.fitness.model import build_lm

    fast = train.make_optimizer(optim, 100, 32)
    monkeypatch.setattr(train, "zero_start", lambda tx: tx)
    own = train.make_optimizer(optim, 100, 32)
    for name in seeds.names():
        params = build_lm(seeds.get(name), ModelConfig(d_model=32, num_layers=2), 50).init(
            0, jnp.zeros((1, 8), jnp.int32))
        got, want = fast.init(params), jax.jit(own.init)(params)
        assert jax.tree.structure(got) == jax.tree.structure(want), name
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert isinstance(g, jax.Array) and (g.shape, g.dtype) == (w.shape, w.dtype), name
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=name)


def test_train_command_exposes_the_schedule(capsys):
    from primer_search.cli import _fitness_config, build_parser, main

    args = build_parser().parse_args(["train", "--warmup", "40", "--schedule", "rsqrt",
                                      "--eval-tokens", "4096", "--lr", "0.002"])
    cfg = _fitness_config(args)
    assert (cfg.optim.warmup_steps, cfg.optim.schedule, cfg.optim.learning_rate) == \
        (40, "rsqrt", 0.002)
    assert cfg.data.eval_tokens == 4096
    defaults = _fitness_config(build_parser().parse_args(["train"]))
    assert defaults.optim == OptimConfig() and defaults.data.eval_tokens == 16_384
    assert main(["train", "--schedule", "step"]) == 2
    assert "optim.schedule must be one of constant, linear, cosine, wsd, rsqrt; got 'step'" \
        in capsys.readouterr().err


def test_adafactor_is_the_papers_optimiser_and_trains(memorise):
    """optim.optimizer = "adafactor": second moments of a matrix are factored into a row
    and a column vector (Adafactor, not Adam under another name), no momentum is kept,
    and a small model learns with it; the primer_lm1b config uses it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from primer_search.fitness.config import ModelConfig
    from primer_search.fitness.model import build_lm
    from primer_search.fitness.train import make_optimizer
    from primer_search.program import seeds
    from primer_search.search.config import load_config

    with pytest.raises(ValueError, match="optim.optimizer must be one of adamw, adafactor"):
        OptimConfig(optimizer="sgd")
    cfg = OptimConfig(optimizer="adafactor", learning_rate=1e-2, warmup_steps=5,
                      schedule="rsqrt", weight_decay=0.0)
    opt = make_optimizer(cfg, 40)
    matrix = {"w": jnp.zeros((256, 128))}
    leaves = jax.tree_util.tree_leaves(opt.init(matrix))
    sizes = sorted(int(np.size(x)) for x in leaves if np.ndim(x) >= 1)
    assert 256 * 128 not in sizes and 256 in sizes and 128 in sizes, sizes
    lm = build_lm(seeds.get("transformer"), ModelConfig(d_model=32, num_layers=1), 64)
    losses = memorise(lm, opt)
    assert losses[-1] < 0.5 * losses[0], losses
    paper = load_config("primer_lm1b").fitness.optim
    assert (paper.optimizer, paper.learning_rate, paper.warmup_steps, paper.schedule,
            paper.weight_decay) == ("adafactor", 0.01, 10000, "rsqrt", 0.0)
