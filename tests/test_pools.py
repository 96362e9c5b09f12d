"""The worker-pool contract: what the dispatcher counts on from any ``WorkerPool``.

One suite, run by every implementation (as Optuna runs one sampler suite over all its
samplers): the engine's pools (in this process, in a child process, on Ray) and the
stand-ins that tests and benchmarks drive the loop with. A new pool is added to
``POOLS`` and must pass. The contract itself is written in ``WorkerPool``'s docstring
(primer_search/search/pool.py).
"""

from __future__ import annotations

import os
import sys
import time

import pytest
from test_loop import Clock, ScriptedPool
from test_reproducible import ShufflingPool

from primer_search.fitness.config import FitnessConfig
from primer_search.fitness.toy import ToyEvaluator, toy_fitness
from primer_search.program import seeds
from primer_search.program.dna import DNA
from primer_search.search.pool import Done, Fingerprinted, InProcessPool, Job, Lost, ProcessPool

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
from search_throughput import InstantPool  # noqa: E402 - a benchmark's stand-in, by path

LIMIT_S = 120.0   # how long a pool may take to start a worker or answer a job
PROGRAM = seeds.get("transformer")


def _broken_program() -> DNA:
    """A DNA whose subprograms are not a list: the toy evaluator raises a TypeError on
    it, as a bug in an evaluator would (a program it can refuse is an ``invalid``
    result, not an exception)."""
    broken = object.__new__(DNA)
    object.__setattr__(broken, "subprograms", 3)
    return broken


def _ray_pool():
    from test_search import toy_config

    from primer_search.search.ray_pool import RayPool

    return RayPool(toy_config("pool.workers=2"))


POOLS = {
    "in-process": lambda: InProcessPool(ToyEvaluator()),
    "process": lambda: ProcessPool((FitnessConfig(), "toy", 0.0)),
    "ray": _ray_pool,
    "scripted (tests)": lambda: ScriptedPool(2, Clock()),
    "shuffling (tests)": lambda: ShufflingPool(3, Clock(), seed=0),
    "instant (benchmarks)": lambda: InstantPool(2),
}


@pytest.fixture(params=list(POOLS))
def pool(request):
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    made = POOLS[request.param]()
    yield made
    made.close()


def _all_available(pool) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not all(pool.available(slot) for slot in range(pool.size)):
        assert time.monotonic() < deadline, f"a slot was not available after {LIMIT_S:g} s"
        pool.wait(0.2)


def _answers_until(pool, enough) -> list:
    """``wait``'s answers, gathered until ``enough(answers)``."""
    answers: list = []
    deadline = time.monotonic() + LIMIT_S
    while not enough(answers):
        assert time.monotonic() < deadline, f"no answer after {LIMIT_S:g} s; had {answers}"
        answers += pool.wait(0.2)
    return answers


def _done(answers) -> list:
    return [(slot, a) for slot, a in answers if isinstance(a, Done)]


def test_every_slot_answers_its_own_job_once(pool):
    _all_available(pool)
    for slot in range(pool.size):
        pool.submit(slot, Job(100 + slot, PROGRAM))
    answers = _answers_until(pool, lambda got: len(_done(got)) == pool.size)
    assert sorted((slot, a.cid) for slot, a in answers) == [
        (slot, 100 + slot) for slot in range(pool.size)]
    for _, done in answers:
        assert done.result.status == "ok" and done.result.fitness == toy_fitness(PROGRAM)
    for _ in range(3):
        assert pool.wait(0.1) == []   # answered once


def test_a_fingerprint_is_answered_without_a_slot_and_is_the_same_each_time(pool):
    _all_available(pool)
    pool.fingerprint(7, PROGRAM, 16)
    pool.fingerprint(8, PROGRAM, 16)
    answers = _answers_until(pool, lambda got: len(got) == 2)
    assert all(slot is None and isinstance(a, Fingerprinted) for slot, a in answers)
    assert sorted(a.cid for _, a in answers) == [7, 8]
    first, second = (a.fingerprint for _, a in answers)
    assert isinstance(first, str) and first == second


def test_an_exception_in_the_evaluator_is_lost_without_a_death_and_the_slot_goes_on(pool):
    _all_available(pool)
    pool.submit(0, Job(5, _broken_program()))
    (slot, lost), = _answers_until(pool, lambda got: len(got) == 1)
    assert slot == 0 and isinstance(lost, Lost) and lost.cid == 5
    assert not lost.worker_died and "TypeError" in lost.reason
    _all_available(pool)
    pool.submit(0, Job(6, PROGRAM))
    (slot, done), = _answers_until(pool, lambda got: len(got) == 1)
    assert (slot, done.cid, done.result.status) == (0, 6, "ok")


def test_a_replaced_slot_answers_its_next_job_by_that_jobs_id(pool):
    _all_available(pool)
    pool.submit(0, Job(1, PROGRAM))
    pool.replace(0)
    _all_available(pool)
    pool.submit(0, Job(2, PROGRAM))
    answers = _answers_until(pool, lambda got: any(a.cid == 2 for _, a in _done(got)))
    assert all(slot == 0 and a.cid in (1, 2) for slot, a in answers)
    assert not any(isinstance(a, Lost) and a.cid == 2 for _, a in answers)


def test_an_idle_wait_returns_nothing_within_its_time(pool):
    _all_available(pool)
    start = time.monotonic()
    assert pool.wait(0.2) == []
    assert time.monotonic() - start < 5.0
