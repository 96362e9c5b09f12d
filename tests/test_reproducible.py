"""Reproducible proposals (``reproducible_lag``): the same candidates and fitnesses
whatever order results come back in.

A shuffling pool stands in for workers of uneven speed: each turn it answers a random
subset of the running jobs and of the fingerprints it was asked for, in a random order
drawn from its own seed. Two runs with different pool seeds are two machines with
different timings; with a lag they must write the same store, timings aside.

Its fingerprint is a coarse summary of the program (live instructions, distinct ops,
subprograms), so that different programs often count as duplicates of each other:
which of them trains and which copies its result is exactly what a race between
fingerprints could change."""

import random

import pytest
from toys import TOY_LOOP

from primer_search.fitness.toy import ToyEvaluator
from primer_search.program.validate import canonical
from primer_search.search.config import ConfigError, load_config
from primer_search.search.loop import SearchLoop
from primer_search.search.pool import Fingerprinted, answer
from primer_search.search.store import Store

# Two stages, so that hurdles are set (after 4 candidates) and sent with every job.
TOY = [*TOY_LOOP, "fitness.budget.stages=2", "hurdles.min_history=4", "pool.prepare_ahead=1"]


def toy_config(*overrides):
    return load_config("tiny_cpu", TOY + list(overrides))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def coarse_fingerprint(dna):
    program = canonical(dna)
    ops = {ins.op for sub in program.subprograms for ins in sub.instructions}
    return f"{program.num_instructions()}/{len(ops)}/{len(program.subprograms)}"


class ShufflingPool:
    """``size`` slots whose jobs and fingerprints come back in an order drawn from
    ``seed``: each ``wait`` answers each running job and each asked fingerprint with
    probability 1/2, shuffled. ``hurdles[cid]`` is what each job was sent."""

    def __init__(self, size, clock, seed, stop_after=None):
        self.size, self.clock = size, clock
        self.rng = random.Random(seed)
        self.evaluator = ToyEvaluator()
        self.running = {}
        self.probes = []
        self.hurdles = {}
        self.stop_after = stop_after
        self.closed = False

    def available(self, slot):
        return True

    def submit(self, slot, job):
        assert slot not in self.running
        self.running[slot] = job
        self.hurdles[job.cid] = job.hurdles

    def fingerprint(self, cid, dna, d_model):
        self.probes.append((cid, dna, d_model))

    def wait(self, timeout_s):
        if self.stop_after is not None:
            if self.stop_after == 0:
                raise KeyboardInterrupt
            self.stop_after -= 1
        self.clock.now += timeout_s
        out = []
        for probe in list(self.probes):
            if self.rng.random() < 0.5:
                self.probes.remove(probe)
                out.append((None, Fingerprinted(probe[0], coarse_fingerprint(probe[1]))))
        for slot, job in list(self.running.items()):
            if self.rng.random() < 0.5:
                del self.running[slot]
                out.append((slot, answer(self.evaluator, job, f"fake{slot}")))
        self.rng.shuffle(out)
        return out

    def replace(self, slot):
        self.running.pop(slot, None)

    def close(self):
        self.closed = True


def contents(store):
    """A store's rows without what depends on timing (finishing order, worker, times)."""
    rows = sorted(store.finished(), key=lambda c: c.id)
    return [(c.id, c.parent_id, c.mutation, c.dna_hash, c.fingerprint, c.status,
             c.fitness, c.duplicate_of, c.result.stage_fitness, c.result.stages_completed)
            for c in rows]


def search(path, config, pool_seed, size=3, stop_after=None):
    clock = Clock()
    pool = ShufflingPool(size, clock, pool_seed, stop_after)
    with Store(path, {}) as store:
        summary = SearchLoop(config, store, pool, clock=clock).run()
        rows = contents(store)
        order = [c.id for c in store.finished()]
    return summary, rows, order, pool.hurdles


def test_two_runs_with_different_timings_write_the_same_store(tmp_path):
    config = toy_config("limits.max_candidates=40", "reproducible_lag=6")
    _, rows_a, order_a, hurdles_a = search(tmp_path / "a.sqlite", config, pool_seed=1)
    _, rows_b, order_b, hurdles_b = search(tmp_path / "b.sqlite", config, pool_seed=2)
    assert len(rows_a) == 40
    assert order_a != order_b, "the two pools should finish candidates in different orders"
    assert rows_a == rows_b
    assert hurdles_a == hurdles_b
    # Hurdles were really set, and evolution really ran (children with parents).
    assert any(h and h[0] is not None for h in hurdles_a.values())
    assert sum(r[1] is not None for r in rows_a) >= 20


def test_without_a_lag_the_timing_changes_what_is_proposed(tmp_path):
    # The control: the same two timings without reproducible_lag give different
    # searches, so the test above can fail.
    config = toy_config("limits.max_candidates=40")
    _, rows_a, *_ = search(tmp_path / "a.sqlite", config, pool_seed=1)
    _, rows_b, *_ = search(tmp_path / "b.sqlite", config, pool_seed=2)
    assert rows_a != rows_b


def test_an_interrupted_reproducible_search_resumes_into_the_same_store(tmp_path):
    config = toy_config("limits.max_candidates=40", "reproducible_lag=6")
    _, whole, *_ = search(tmp_path / "whole.sqlite", config, pool_seed=1)
    path = tmp_path / "cut.sqlite"
    summary, *_ = search(path, config, pool_seed=3, stop_after=15)
    assert summary.stopped_by.startswith("interrupted")
    with Store(path) as store:
        assert store.pending(), "the interruption should leave candidates in flight"
    _, resumed, *_ = search(path, config, pool_seed=4)
    assert resumed == whole


def test_a_lag_of_one_is_one_candidate_at_a_time(tmp_path):
    # Proposal n sees candidates 1..n-1: with a lag of 1 the loop proposes only once
    # everything before has finished, so two slots never hold two jobs.
    config = toy_config("limits.max_candidates=12", "reproducible_lag=1")
    clock = Clock()

    class OneAtATime(ShufflingPool):
        def submit(self, slot, job):
            assert not self.running, "a second job was started before the first finished"
            super().submit(slot, job)

    with Store(tmp_path / "s.sqlite", {}) as store:
        SearchLoop(config, store, OneAtATime(2, clock, seed=0), clock=clock).run()
        assert store.count() == 12 and not store.pending()


def test_a_reproducible_search_refuses_a_budget_in_seconds():
    with pytest.raises(ConfigError, match=r"reproducible_lag = 4 needs a budget in steps: "
                                          r"fitness.budget.seconds = 30"):
        toy_config("reproducible_lag=4", "fitness.budget.seconds=30",
                   "fitness.recall.steps=100")
    with pytest.raises(ConfigError, match="reproducible_lag must be >= 1 or None, got 0"):
        toy_config("reproducible_lag=0")
