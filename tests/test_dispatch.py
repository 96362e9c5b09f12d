"""The dispatcher: one policy for retries, bugs, time-outs and late answers, whoever
dispatches (the search loop, retraining).

The scripted pool of test_loop.py stands in for workers; a fake clock passes time-outs
without waiting.
"""

import subprocess
import sys

import pytest
from test_loop import Clock, ScriptedPool, toy_config

from primer_search.program import seeds
from primer_search.search.dispatch import Dispatcher, Ended, run_jobs
from primer_search.search.loop import SearchLoop
from primer_search.search.pool import Done, Job, Lost
from primer_search.search.store import Store

SCRIPT = {1: ["hang"], 2: ["die"], 3: ["die", "die"], 4: ["raise"]}


def test_importing_the_dispatcher_loads_neither_jax_nor_ray():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, primer_search.search.dispatch; "
         "print(sorted(m for m in ('jax', 'ray') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_retry_goes_first_and_its_job_is_built_anew():
    clock = Clock()
    pool = ScriptedPool(1, clock, script={1: ["die"]})
    built = []

    def job_for(cid):
        built.append(cid)
        return Job(cid, seeds.get("transformer"))

    dispatcher = Dispatcher(pool, job_for, max_retries=1, clock=clock)
    dispatcher.ready.extend([1, 2])
    ended = []
    while dispatcher.busy():
        dispatcher.start()
        ended += [e.item for e in dispatcher.poll(1.0) if isinstance(e, Ended)]
    assert built == [1, 1, 2] and pool.submitted == [1, 1, 2]
    assert ended == [1, 2]


def test_a_late_answer_is_dropped_and_the_slot_goes_on():
    clock = Clock()
    pool = ScriptedPool(1, clock, script={1: ["hang"]})
    dispatcher = Dispatcher(pool, lambda cid: Job(cid, seeds.get("transformer")),
                            timeout_s=10.0, clock=clock)
    dispatcher.ready.append(1)
    dispatcher.start()
    ended = []
    while not ended:
        ended = [e for e in dispatcher.poll(1.0) if isinstance(e, Ended)]
    assert ended[0].done.result.status == "timeout" and ended[0].seconds > 10.0
    assert pool.replaced == [0] and dispatcher.running() == []
    dispatcher.ready.append(2)
    dispatcher.start()
    late = pool.evaluator.evaluate(seeds.get("transformer"))[0]
    pool.wait = lambda timeout_s: [(0, Done(1, late)), (0, Lost(1, "gone", True))]
    assert list(dispatcher.poll(1.0)) == [] and dispatcher.running() == [2]


def _loop_endings(tmp_path):
    clock = Clock()
    pool = ScriptedPool(2, clock, script=SCRIPT)
    config = toy_config("limits.max_candidates=6", "limits.candidate_timeout_s=30",
                        "limits.max_retries=1", "dedup=false")
    with Store(tmp_path / "s.sqlite", {}) as store:
        SearchLoop(config, store, pool, clock=clock).run()
        rows = {c.id: c.result for c in store.finished() if c.id in SCRIPT}
    return rows, pool


def _run_jobs_endings(tmp_path):
    clock = Clock()
    pool = ScriptedPool(2, clock, script=SCRIPT)
    dna = seeds.get("transformer")
    out = run_jobs(pool, [Job(cid, dna) for cid in range(1, 7)], max_retries=1,
                   timeout_s=30.0, clock=clock, what="candidate")
    return {cid: done.result for cid, done in out.items() if cid in SCRIPT}, pool


@pytest.mark.parametrize("dispatch", [_loop_endings, _run_jobs_endings],
                         ids=["search loop", "run_jobs"])
def test_the_search_and_retraining_end_a_job_alike(tmp_path, dispatch):
    results, pool = dispatch(tmp_path)
    assert {cid: (r.status, r.reason) for cid, r in results.items()} == {
        1: ("timeout", "passed the candidate time limit of 30 s; its worker was killed"),
        2: ("ok", ""),
        3: ("error", "worker died 2 times: ActorDiedError: the worker was killed"),
        4: ("error", "ZeroDivisionError: division by zero")}
    assert [pool.submitted.count(cid) for cid in SCRIPT] == [1, 2, 2, 1]
    assert len(pool.replaced) == 1
