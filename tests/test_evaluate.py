"""Fitness: a model learns, runs are reproducible, and failures are contained."""

import math
import os
import time

import pytest
from lm1b_layout import make_lm1b_tree

from primer_search.fitness import evaluate
from primer_search.fitness.config import BudgetConfig, FitnessConfig, ModelConfig
from primer_search.fitness.data import DataConfig, Prefetcher
from primer_search.fitness.evaluate import Evaluator, unigram_perplexity
from primer_search.fitness.hurdles import HurdleTracker
from primer_search.fitness.results import EvalResult, Status
from primer_search.program import seeds
from primer_search.program.dna import DNA, Instruction

I = Instruction
TINY = FitnessConfig(data=DataConfig(seq_len=32, batch_size=8, eval_tokens=2048),
                     model=ModelConfig(d_model=32, num_layers=1),
                     budget=BudgetConfig(steps=20, stages=2))

# exp(1000 x) squared overflows to Inf, and Inf - Inf is NaN.
NAN_PROGRAM = DNA.of([I("C_MUL", 0, const=1000.0), I("EXP", 2), I("SQUARE", 3),
                      I("DIFFERENCE", 4, 4), I("ADD", 0, 5)])


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(TINY)


def test_transformer_learns_far_below_the_unigram_baseline():
    cfg = FitnessConfig(data=DataConfig(seq_len=64, batch_size=16),
                        model=ModelConfig(d_model=64, num_layers=2),
                        budget=BudgetConfig(steps=300))
    ev = Evaluator(cfg)
    unigram = unigram_perplexity(ev.dataset)
    result, _ = ev.evaluate(seeds.get("transformer"))
    assert result.status == Status.OK, result.reason
    assert 600 < unigram < 800  # PTB's unigram perplexity is about 700
    assert result.fitness < unigram / 1.7, (result.fitness, unigram)
    assert result.word_perplexity == pytest.approx(result.fitness)  # word-level tokens
    assert 0 < result.bits_per_byte < 3


def test_same_seed_same_validation_loss(evaluator):
    a, _ = evaluator.evaluate(seeds.get("primer_ez"))
    b, _ = Evaluator(TINY).evaluate(seeds.get("primer_ez"))
    assert a.status == b.status == Status.OK
    assert abs(a.valid_loss - b.valid_loss) < 1e-6
    assert a.steps == b.steps == 20
    assert len(a.stage_fitness) == 2 and a.stage_fitness[-1] == a.fitness


def test_nan_program_fails_with_reason_and_the_next_evaluation_works(evaluator):
    bad, _ = evaluator.evaluate(NAN_PROGRAM)
    assert bad.status == Status.NAN and bad.failed
    assert "loss is nan" in bad.reason
    assert bad.fitness == math.inf
    assert bad.steps <= TINY.budget.steps
    good, _ = evaluator.evaluate(seeds.get("transformer"))
    assert good.status == Status.OK and math.isfinite(good.fitness)


def test_invalid_program_is_recorded_not_raised(evaluator):
    result, _ = evaluator.evaluate(DNA.of([I("RED_MEAN", 0)]))
    assert result.status == Status.INVALID
    assert "returns width 1" in result.reason and result.fitness == math.inf


def test_hurdle_stops_a_candidate_and_keeps_its_partial_fitness(evaluator):
    result, _ = evaluator.evaluate(seeds.get("transformer"), hurdles=[1.0])
    assert result.status == Status.HURDLE and not result.failed
    # Two stages at pass rate 0.5 split 20 steps 1:2 (equal expected compute).
    assert result.steps == 7 and len(result.stage_fitness) == 1
    assert result.fitness == result.stage_fitness[0] > 1.0
    assert "worse than the hurdle 1" in result.reason


def test_time_limit_and_wall_clock_budget():
    timed_out = Evaluator(FitnessConfig(data=TINY.data, model=TINY.model,
                                        budget=BudgetConfig(steps=10_000, timeout_s=0.5)))
    result, _ = timed_out.evaluate(seeds.get("transformer"))
    assert result.status == Status.TIMEOUT and "time limit of 0.5 s" in result.reason
    by_time = Evaluator(FitnessConfig(data=TINY.data, model=TINY.model,
                                      budget=BudgetConfig(steps=None, seconds=1.0)))
    result, _ = by_time.evaluate(seeds.get("transformer"))
    assert result.status == Status.OK and result.steps > 5
    assert 1.0 <= result.train_s < 2.0


def test_the_lm1b_path_with_subwords_trains_a_model(tmp_path):
    """An LM1B release tree, a subword vocabulary trained on it, shards tokenised into the
    cache, a model trained and scored with exact per-word and per-byte metrics."""
    _, root, _, _ = make_lm1b_tree(tmp_path, sentences_per_shard=400, marked=False)
    cfg = FitnessConfig(data=DataConfig(corpus="lm1b", path=str(root), seq_len=32, batch_size=8,
                                        eval_tokens=512, vocab_size=400,
                                        cache_dir=str(tmp_path / "cache")),
                        model=ModelConfig(d_model=32, num_layers=1),
                        budget=BudgetConfig(steps=60, stages=1))
    ev = Evaluator(cfg)
    assert ev.dataset.tokenizer.name == "subword"
    result, _ = ev.evaluate(seeds.get("transformer"))
    assert result.status == Status.OK, result.reason
    # The generated words are drawn independently: a model that learned them reaches the
    # unigram perplexity, far below a uniform guess over the vocabulary.
    assert result.fitness < min(1.1 * unigram_perplexity(ev.dataset), ev.dataset.vocab_size / 10)
    info = ev.dataset.eval_info
    assert result.word_perplexity == pytest.approx(
        math.exp(result.valid_loss * info.tokens / info.words), rel=1e-5)
    assert result.bits_per_byte == pytest.approx(
        result.valid_loss * info.tokens / info.bytes / math.log(2), rel=1e-5)
    assert list((tmp_path / "cache").glob("lm1b-shard-*/tokens.npy"))


def test_waiting_for_data_is_kept_out_of_a_budget_in_seconds(monkeypatch):
    """Data slower than training: the trainer's clock stops while it waits for a batch, so
    the budget buys the same training time, and the wait is reported on its own."""

    class SlowData(Prefetcher):  # every batch arrives 0.1 s after it is asked for
        def __next__(self):
            batch = super().__next__()
            time.sleep(0.1)
            self.waited_s += 0.1
            return batch

    monkeypatch.setattr(evaluate, "Prefetcher", SlowData)
    ev = Evaluator(FitnessConfig(data=TINY.data, model=TINY.model,
                                 budget=BudgetConfig(steps=None, seconds=0.5)))
    result, _ = ev.evaluate(seeds.get("transformer"))
    assert result.status == Status.OK, result.reason
    assert 0.5 <= result.train_s < 1.0
    # One wait per step (the batch before the first step comes before the clock starts).
    assert result.data_wait_s == pytest.approx(0.1 * result.steps)


def test_result_round_trips_through_a_dict(evaluator):
    result, _ = evaluator.evaluate(seeds.get("transformer"))
    assert EvalResult.from_dict(result.to_dict()) == result


def test_bad_budget_is_refused_with_the_value():
    with pytest.raises(ValueError, match="budget.steps must be >= 1 or None, got 0"):
        BudgetConfig(steps=0)
    with pytest.raises(ValueError, match="set steps, seconds or both"):
        BudgetConfig(steps=None, seconds=None)


def test_hurdle_tracker_passes_the_better_half():
    tracker = HurdleTracker(stages=3, quantile=0.5, min_history=4)
    assert tracker.thresholds() == [None, None]
    for f in ([10, 5, 1], [20, 6, 2], [30, 7, 3], [40, 8, 4]):
        tracker.record(f)
    assert tracker.thresholds() == [25.0, 6.5]
    tracker.record([float("inf")])  # a failed candidate does not move the hurdles
    assert tracker.thresholds() == [25.0, 6.5]


def test_evaluate_returns_its_parameters_and_takes_seed_and_budget_per_call(evaluator):
    short = BudgetConfig(steps=4)
    result, params = evaluator.evaluate(seeds.get("transformer"), seed=3, budget=short)
    assert result.status == Status.OK and result.steps == 4
    assert params["embed"].shape == (evaluator.dataset.vocab_size, TINY.model.d_model)
    again, _ = evaluator.evaluate(seeds.get("transformer"), seed=3, budget=short)
    other, _ = evaluator.evaluate(seeds.get("transformer"), seed=4, budget=short)
    assert again.valid_loss == result.valid_loss != other.valid_loss
    assert evaluator.config == TINY           # a call's seed and budget change nothing after it
    failed, none = evaluator.evaluate(NAN_PROGRAM)
    assert failed.failed and none is None


def test_the_persistent_compilation_cache_is_written_once_and_read_by_a_new_process(tmp_path):
    """With the cache on, the first process writes the compiled train and eval steps to
    <cache root>/xla; a second process compiling the same program finds them (writes
    nothing new) and trains to the same numbers."""
    import json
    import subprocess
    import sys

    script = f"""
import json, os, sys
import jax
from primer_search.fitness.config import BudgetConfig, FitnessConfig, ModelConfig
from primer_search.fitness.data import DataConfig
from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds
cfg = FitnessConfig(data=DataConfig(seq_len=16, batch_size=4, eval_tokens=64,
                                    cache_dir={str(tmp_path)!r}),
                    model=ModelConfig(d_model=16, num_layers=1), budget=BudgetConfig(steps=3))
ev = Evaluator(cfg)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # tiny programs too
r, _ = ev.evaluate(seeds.get("primer_ez"))
files = sorted(os.listdir(ev.compilation_cache)) if ev.compilation_cache else None
print(json.dumps({{"cache": ev.compilation_cache, "files": files, "fitness": r.fitness}}))
"""
    env = {**os.environ, "PRIMER_SEARCH_COMPILATION_CACHE": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["cache"] == str(tmp_path / "xla")
    assert any("train_step" in f for f in first["files"]), first["files"]
    assert second["files"] == first["files"]          # found, not compiled and written again
    assert second["fitness"] == first["fitness"]
    off = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**env, "PRIMER_SEARCH_COMPILATION_CACHE": "0"}, timeout=600)
    assert off.returncode == 0, off.stderr[-3000:]
    assert json.loads(off.stdout.strip().splitlines()[-1])["cache"] is None


def test_two_candidates_share_a_worker_taking_turns_to_train(evaluator):
    """With a gate, two evaluations run in threads of one worker: each compiles on its own
    and trains only while it holds the gate, and both score exactly as they do alone."""
    import threading

    class Gate:  # a lock that records who held it when
        def __init__(self):
            self.lock, self.held = threading.Lock(), []

        def acquire(self):
            self.lock.acquire()
            self.held.append([time.perf_counter(), None])

        def release(self):
            self.held[-1][1] = time.perf_counter()
            self.lock.release()

    alone = {name: evaluator.evaluate(seeds.get(name))[0] for name in ("transformer", "primer_ez")}
    gate, out = Gate(), {}

    def run(name):
        out[name] = evaluator.evaluate(seeds.get(name), gate=gate)[0]

    threads = [threading.Thread(target=run, args=(n,)) for n in alone]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gate.held) == 2
    (a0, a1), (b0, b1) = sorted(gate.held)
    assert a1 <= b0  # never two at once
    for name, result in out.items():
        assert result.status == Status.OK
        assert result.valid_loss == alone[name].valid_loss


def test_a_short_last_evaluation_batch_counts_only_its_rows():
    """The evaluation set's short last batch is padded so one compiled step serves every
    batch; the padding counts for nothing: the loss is that of the real rows."""
    import numpy as np

    from primer_search.fitness.model import build_lm
    from primer_search.fitness.train import token_loss

    cfg = FitnessConfig(data=DataConfig(seq_len=32, batch_size=8, eval_tokens=2048 + 96),
                        model=TINY.model, budget=BudgetConfig(steps=3, stages=1))
    ev = Evaluator(cfg)
    batches = ev.dataset.eval_batches()
    assert [len(b) for b in batches] == [8] * 8 + [3]
    result, params = ev.evaluate(seeds.get("transformer"))
    lm = build_lm(seeds.get("transformer"), cfg.model, ev.dataset.vocab_size)
    total = sum(float(np.asarray(token_loss(lm, params, b), np.float64).sum()) for b in batches)
    assert result.valid_loss == pytest.approx(total / ev.dataset.eval_info.tokens, rel=1e-6)


def test_cpu_compiler_options_are_those_xla_accepts_and_train_as_the_defaults(monkeypatch):
    """The trainer's CPU compile options: an option this XLA does not know is left out
    (instead of failing every compile), one that XLA_FLAGS sets is left to the user, and a
    train step compiled with them gives the losses of one compiled with XLA's defaults."""
    import jax.numpy as jnp
    import numpy as np

    from primer_search.fitness import train
    from primer_search.fitness.config import OptimConfig
    from primer_search.fitness.model import build_lm

    monkeypatch.setitem(train.CPU_COMPILER_OPTIONS, "xla_cpu_option_that_never_was", True)
    # XLA 0.10 takes both of the trainer's options; jax 0.12's XLA dropped its elemental
    # emitters, and with them xla_cpu_use_fusion_emitters.
    known = {"xla_backend_optimization_level": 1}
    if train._accepted("xla_cpu_use_fusion_emitters", False):
        known["xla_cpu_use_fusion_emitters"] = False
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=2")
    assert train.compiler_options() == {k: v for k, v in known.items()
                                        if k != "xla_backend_optimization_level"}
    monkeypatch.delenv("XLA_FLAGS")
    options = train.compiler_options()
    assert options == known

    model = build_lm(seeds.get("primer_ez"), ModelConfig(d_model=32, num_layers=2), 64)
    init_state, train_step, _ = train.make_steps(
        model, train.make_optimizer(OptimConfig(), 10, 32))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 64, (4, 17)), jnp.int32)
    losses = []
    for opts in ({}, options):
        step = train_step.lower(init_state(0, batch), batch).compile(opts)
        state, run = init_state(0, batch), []
        for _ in range(6):
            state, metrics = step(state, batch)
            run.append(float(metrics["loss"]))
        losses.append(run)
    assert losses[1][-1] < losses[1][0]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
