"""The search loop without Ray: dedup, waiting duplicates, retries, time-outs, resume.

A scripted pool stands in for the workers: it computes the fingerprints it is asked for
(before anything else), evaluates with the toy fitness, finishes jobs in the order they
were submitted, and can make a chosen candidate's worker die, its evaluator raise, or its
job hang. A fake clock lets time-outs pass without waiting.
"""

import math

import pytest
from toys import TOY_LOOP

from primer_search.fitness.results import Status
from primer_search.fitness.toy import ToyEvaluator
from primer_search.search.config import load_config
from primer_search.search.loop import SearchLoop
from primer_search.search.pool import InProcessPool, Job, Lost, answer, compute_fingerprint
from primer_search.search.store import Store

TOY = TOY_LOOP


def toy_config(*overrides):
    return load_config("tiny_cpu", TOY + list(overrides))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedPool:
    """``size`` slots. ``script[cid]`` lists what happens to each try of candidate
    ``cid``: "ok" (evaluate), "die" (the worker dies), "raise" (an exception escapes the
    evaluator) or "hang" (never answers). Unscripted tries evaluate."""

    def __init__(self, size: int, clock: Clock, script: dict | None = None):
        self.size, self.clock = size, clock
        self.script = {cid: list(actions) for cid, actions in (script or {}).items()}
        self.evaluator = ToyEvaluator()
        self.running: dict[int, tuple[Job, str]] = {}   # slot -> (job, action)
        self.order: list[int] = []                       # slots, by submission
        self.submitted: list[int] = []                   # cids, every try
        self.replaced: list[int] = []
        self.probes: list[int] = []                      # cids fingerprinted
        self.closed = False
        self._probes: list = []

    def fingerprint(self, cid, dna, d_model):
        self.probes.append(cid)
        self._probes.append((cid, dna, d_model))

    def available(self, slot):
        return True

    def submit(self, slot, job):
        assert slot not in self.running, "a busy slot was given a second job"
        actions = self.script.get(job.cid)
        action = actions.pop(0) if actions else "ok"
        self.running[slot] = (job, action)
        self.order.append(slot)
        self.submitted.append(job.cid)

    def wait(self, timeout_s):
        if self._probes:
            asked, self._probes = self._probes, []
            return [(None, compute_fingerprint(*a)) for a in asked]
        for slot in list(self.order):
            job, action = self.running[slot]
            if action == "hang":
                continue
            self.order.remove(slot)
            del self.running[slot]
            if action == "die":
                return [(slot, Lost(job.cid, "ActorDiedError: the worker was killed", True))]
            if action == "raise":
                return [(slot, Lost(job.cid, "ZeroDivisionError: division by zero", False))]
            return [(slot, answer(self.evaluator, job, f"fake{slot}"))]
        self.clock.now += timeout_s   # nothing answered: time passes
        return []

    def replace(self, slot):
        self.replaced.append(slot)
        self.running.pop(slot, None)
        if slot in self.order:
            self.order.remove(slot)

    def close(self):
        self.closed = True


def run_loop(store, config, pool, clock):
    return SearchLoop(config, store, pool, clock=clock).run()


def test_initial_copies_of_the_seeds_reuse_the_first_results(tmp_path):
    clock = Clock()
    pool = ScriptedPool(1, clock)
    with Store(tmp_path / "s.sqlite", {}) as store:
        summary = run_loop(store, toy_config("limits.max_candidates=12"), pool, clock)
        rows = store.finished()
    assert summary.finished == 12 and summary.stopped_by == "candidate limit"
    assert pool.closed
    # tiny_cpu's seeds are the Transformer and Primer-EZ: the 8 initial members are 4
    # copies of each, and only the first of each is trained.
    by_id = {r.id: r for r in rows}
    initial = [by_id[c] for c in range(1, 9)]
    trained = [r for r in initial if r.status == Status.OK]
    assert [r.id for r in trained] == [1, 2]
    for r in initial[2:]:
        assert r.status == Status.DUPLICATE and r.duplicate_of == (1 if r.id % 2 else 2)
        assert r.fitness == by_id[r.duplicate_of].fitness
    assert set(pool.submitted).isdisjoint(r.id for r in initial[2:])
    # A duplicate joins the population like any member: the proposals after the initial
    # population have parents.
    assert all(by_id[c].parent_id is not None for c in range(9, 13))


def test_duplicates_of_a_candidate_in_flight_wait_for_its_result(tmp_path):
    clock = Clock()
    pool = ScriptedPool(3, clock)
    with Store(tmp_path / "s.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=10"), pool, clock)
        rows = {r.id: r for r in store.finished()}
    # Slots 1 and 2 take the two seeds; the six other initial copies find them in flight
    # and wait instead of training; they finish as duplicates of the first two.
    assert pool.submitted[:2] == [1, 2]
    assert not set(pool.submitted) & set(range(3, 9))
    assert all(rows[c].status == Status.DUPLICATE for c in range(3, 9))
    assert {rows[c].duplicate_of for c in range(3, 9)} == {1, 2}


def test_waiting_duplicates_train_when_the_original_failed_for_a_moment(tmp_path):
    # Candidate 1's worker answers with an escaped exception (an error of the moment): its
    # waiting copies may not inherit that; the first of them trains instead.
    clock = Clock()
    pool = ScriptedPool(3, clock, script={1: ["raise"]})
    with Store(tmp_path / "s.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=10"), pool, clock)
        rows = {r.id: r for r in store.finished()}
    assert rows[1].status == Status.ERROR and "ZeroDivisionError" in rows[1].result.reason
    assert rows[1].fitness == math.inf
    assert 3 in pool.submitted                 # the first waiting copy of the Transformer
    assert rows[3].status == Status.OK
    assert all(rows[c].duplicate_of == 3 for c in (5, 7))


def test_a_dead_worker_is_retried_then_recorded(tmp_path):
    clock = Clock()
    pool = ScriptedPool(1, clock, script={1: ["die"], 2: ["die", "die"]})
    with Store(tmp_path / "s.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=4", "limits.max_retries=1"), pool, clock)
        rows = {r.id: r for r in store.finished()}
    assert pool.submitted[:4] == [1, 1, 2, 2]     # retried at once, before new proposals
    assert rows[1].status == Status.OK
    assert rows[2].status == Status.ERROR
    assert rows[2].result.reason.startswith("worker died 2 times: ActorDiedError")


def test_a_candidate_past_its_time_limit_is_recorded_and_its_worker_replaced(tmp_path):
    clock = Clock()
    pool = ScriptedPool(2, clock, script={1: ["hang"]})
    with Store(tmp_path / "s.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=6", "limits.candidate_timeout_s=30"), pool, clock)
        rows = {r.id: r for r in store.finished()}
    assert rows[1].status == Status.TIMEOUT
    assert "candidate time limit of 30 s" in rows[1].result.reason
    assert pool.replaced == [0]
    assert len(rows) == 6 and all(rows[c].status != Status.TIMEOUT for c in range(2, 7))


class Interrupt(ScriptedPool):
    """Ctrl-C after ``after`` answers."""

    def __init__(self, *args, after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.after = after

    def wait(self, timeout_s):
        if self.after == 0:
            raise KeyboardInterrupt
        self.after -= 1
        return super().wait(timeout_s)


def test_resume_finishes_what_was_in_flight_and_repeats_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    clock = Clock()
    first = Interrupt(3, clock, after=12)
    with Store(path, {}) as store:
        summary = run_loop(store, toy_config("limits.max_candidates=30"), first, clock)
        assert summary.stopped_by.startswith("interrupted")
        done_before = {r.id for r in store.finished()}
        pending = [r.id for r in store.pending()]
    assert pending and first.closed
    second = ScriptedPool(3, clock)
    with Store(path) as store:
        summary = run_loop(store, toy_config("limits.max_candidates=30"), second, clock)
        rows = store.finished()
    assert summary.finished == 30 and not summary.stopped_by.startswith("interrupted")
    # The candidates pending at Ctrl-C go first (those that turn out to be duplicates of a
    # finished candidate need no worker); nothing finished is repeated.
    retrained = [c for c in pending if c in second.submitted]
    assert retrained and second.submitted[:len(retrained)] == retrained
    assert done_before.isdisjoint(second.submitted)
    assert sorted(r.id for r in rows) == list(range(1, 31))


def test_resume_rebuilds_the_population_and_the_proposal_count(tmp_path):
    # Proposing only when a worker is free, a search stopped and resumed proposes exactly
    # what an uninterrupted one proposes.
    clock = Clock()
    exact = "pool.prepare_ahead=0"
    with Store(tmp_path / "once.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=24", exact), ScriptedPool(1, clock), clock)
        once = [r.dna_hash for r in store.finished()]
    with Store(tmp_path / "twice.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=14", exact), ScriptedPool(1, clock), clock)
    with Store(tmp_path / "twice.sqlite") as store:
        run_loop(store, toy_config("limits.max_candidates=24", exact), ScriptedPool(1, clock), clock)
        twice = [r.dna_hash for r in store.finished()]
    assert twice == once


def test_the_next_candidate_is_prepared_while_a_worker_trains(tmp_path):
    clock = Clock()

    class Watch(ScriptedPool):
        def submit(self, slot, job):
            # When candidate 2 starts, candidate 3 must already be proposed and probed.
            if job.cid == 2:
                self.seen_at_2 = (store.count(kind="search"), list(self.probes))
            super().submit(slot, job)

    pool = Watch(1, clock)
    with Store(tmp_path / "s.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=12"), pool, clock)
    proposed, probes = pool.seen_at_2
    assert proposed >= 3
    # The initial population repeats the two seeds: each is probed once.
    assert probes[:2] == [1, 2] and all(p > 8 for p in probes[2:])


def test_fingerprints_are_computed_by_the_pool_once_per_program(tmp_path):
    clock = Clock()
    pool = ScriptedPool(2, clock)
    with Store(tmp_path / "s.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=16"), pool, clock)
        rows = store.finished()
    hashes = {r.id: r.dna_hash for r in rows}
    assert len(pool.probes) == len({hashes[c] for c in pool.probes}) == len(set(hashes.values()))
    assert all(r.fingerprint for r in rows)


class LateAnswers(ScriptedPool):
    """A replaced worker's job answers anyway, at the next wait: a result, and then a
    death (a Ray actor's replies already on their way when it was killed)."""

    late: list = []

    def replace(self, slot):
        job, _ = self.running[slot]
        super().replace(slot)
        self.late = [(slot, answer(self.evaluator, job, "late")),
                     (slot, Lost(job.cid, "ActorDiedError: killed", True))]

    def wait(self, timeout_s):
        if self.late:
            out, self.late = self.late, []
            return out
        return super().wait(timeout_s)


def test_a_late_answer_for_a_timed_out_job_is_ignored(tmp_path):
    clock = Clock()
    pool = LateAnswers(1, clock, script={1: ["hang"]})
    with Store(tmp_path / "s.sqlite", {}) as store:
        run_loop(store, toy_config("limits.max_candidates=6", "limits.candidate_timeout_s=30",
                                   "dedup=false"), pool, clock)
        rows = {r.id: r for r in store.finished()}
        assert store.count() == 6 and not store.pending()
    assert rows[1].status == Status.TIMEOUT and rows[1].worker is None
    assert pool.submitted.count(1) == 1            # the late death is no cause to retry
    assert all(rows[c].status == Status.OK for c in range(2, 7))


def test_in_process_pool_runs_a_search_without_ray(tmp_path):
    config = toy_config("limits.max_candidates=10")
    with Store(tmp_path / "s.sqlite", {}) as store:
        summary = SearchLoop(config, store, InProcessPool(ToyEvaluator())).run()
        rows = store.finished()
    assert summary.finished == 10 and not store_has_pending(tmp_path / "s.sqlite")
    assert all(r.worker and r.worker.startswith("inprocess/pid") for r in rows
               if r.status != Status.DUPLICATE)
    assert summary.best_fitness == min(r.fitness for r in rows)


def store_has_pending(path) -> bool:
    with Store(path, readonly=True) as store:
        return bool(store.pending())


@pytest.mark.parametrize("status", list(Status))
def test_status_predicates_are_consistent(status):
    assert status.is_finished() == (status != Status.PENDING)
    if status.is_transient():
        assert status.is_failed() and not status.is_reusable()
    if status.is_reusable():
        assert status.is_evaluation()
