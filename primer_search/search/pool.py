"""Workers: what the search loop asks of them and what they send back.

The search loop (:mod:`primer_search.search.loop`) knows nothing of Ray. It talks to a
:class:`WorkerPool`, a fixed number of slots, each holding one worker that evaluates one
:class:`Job` at a time:

* ``submit(slot, job)`` starts a job on the slot's worker;
* ``fingerprint(cid, dna, d_model)`` starts computing a proposal's functional
  fingerprint (a JAX compile and a probe run: about half a second of one CPU core) off
  the loop's process, on no slot;
* ``wait(timeout_s)`` returns what ended since, as ``(slot, outcome)`` pairs, where the
  outcome is :class:`Done` (an evaluation, successful or failed, with its weights when
  asked), :class:`Lost` (the worker died, or an exception escaped the evaluator) or
  :class:`Fingerprinted` (slot ``None``);
* ``replace(slot)`` kills the slot's worker and starts a fresh one (a time-out);
* ``close()`` stops them all.

Three pools implement it: :class:`InProcessPool` here (one slot, evaluated in the calling
process: no Ray, for tests, debugging and profiling), :class:`ProcessPool` here (one
slot, evaluated in a child process: no Ray, and a job that hangs can be ended) and
:class:`primer_search.search.ray_pool.RayPool` (Ray actors on one machine or a cluster).
All evaluate through :func:`run_job`, so a worker's answer has one form wherever it ran.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import time
from typing import Protocol

from primer_search.fitness.config import BudgetConfig, FitnessConfig
from primer_search.fitness.results import EvalResult
from primer_search.program.dna import DNA

__all__ = ["Done", "Fingerprinted", "InProcessPool", "Job", "Lost", "ProcessPool", "WorkerPool",
           "answer", "compute_fingerprint", "make_evaluator", "run_job"]


@dataclasses.dataclass(frozen=True)
class Job:
    """One evaluation: a candidate, the hurdles it must pass, and whether to send back
    its trained weights. ``seed`` and ``budget`` replace the fitness config's for this
    job (a retrain trains longer, with several seeds); None keeps the config's."""

    cid: int
    dna: DNA
    hurdles: tuple[float | None, ...] = ()
    want_weights: bool = False
    seed: int | None = None
    budget: BudgetConfig | None = None


@dataclasses.dataclass(frozen=True)
class Done:
    """An evaluation that ran to its end (its result may still be a failure)."""

    cid: int
    result: EvalResult
    # flax.serialization bytes of {"params": lm_params}; None unless asked and trained.
    weights: bytes | None = None
    worker: str | None = None
    node: str | None = None


@dataclasses.dataclass(frozen=True)
class Lost:
    """A job that did not come back with a result.

    ``worker_died``: the worker process is gone (killed, out of host memory, its node
    removed); the pool has already started a replacement and the loop may retry the
    job. Otherwise an exception escaped the evaluator, which is a bug, not a moment:
    the loop records it as an error."""

    cid: int
    reason: str
    worker_died: bool


@dataclasses.dataclass(frozen=True)
class Fingerprinted:
    """A proposal's functional fingerprint (None: the probe could not run the program,
    so it is not deduplicated), and the seconds it took."""

    cid: int
    fingerprint: str | None
    seconds: float = 0.0


Outcome = Done | Lost | Fingerprinted


class WorkerStartError(RuntimeError):
    """A worker failed to start again and again (its node cannot load the data, say);
    the message has its last error. It stops the search."""


class WorkerPool(Protocol):
    """A fixed number of slots, one worker and at most one job each.

    ``available(slot)``: whether the slot's worker is running and may be given a job; a
    worker that is still starting, or a replacement that no node has room for yet, is
    not (a job given to it would wait for as long as the cluster lacks the room).

    The contract the dispatcher counts on, which every implementation passes
    (``tests/test_pools.py``; a new pool joins its list there):

    * every slot becomes available while the caller waits;
    * a job submitted on an available slot is answered by ``wait``, once, as ``(slot,
      Done)`` with the job's ``cid``; an exception escaping the evaluator is ``(slot,
      Lost)`` with ``worker_died`` false and the exception named (:func:`answer`); a
      worker that dies is ``Lost`` with ``worker_died`` true;
    * ``fingerprint(cid, ...)`` is answered as ``(None, Fingerprinted)`` with that
      ``cid``, and one program's fingerprint is the same each time;
    * after ``replace(slot)`` the slot becomes available again and answers the next
      job with that job's ``cid`` (an answer for the replaced job may still come: the
      dispatcher drops it by its ``cid``);
    * ``wait`` with nothing to answer returns an empty list within about its time-out.
    """

    size: int

    def available(self, slot: int) -> bool: ...

    def submit(self, slot: int, job: Job) -> None: ...

    def fingerprint(self, cid: int, dna: DNA, d_model: int) -> None: ...

    def wait(self, timeout_s: float) -> list[tuple[int | None, Outcome]]: ...

    def replace(self, slot: int) -> None: ...

    def close(self) -> None: ...


def make_evaluator(fitness: FitnessConfig, kind: str = "train", toy_sleep_s: float = 0.0):
    """The evaluator a worker runs: real training (``"train"``) or the toy fitness."""
    if kind == "toy":
        from primer_search.fitness.toy import ToyEvaluator

        return ToyEvaluator(toy_sleep_s)
    from primer_search.fitness.evaluate import Evaluator

    return Evaluator(fitness)


def compute_fingerprint(cid: int, dna: DNA, d_model: int) -> Fingerprinted:
    """The fingerprint of ``dna`` at width ``d_model``; None if the probe cannot run it."""
    from primer_search.search.fingerprint import fingerprint

    start = time.perf_counter()
    try:
        fp = fingerprint(dna, d_model)
    except Exception:  # noqa: BLE001 - a program the probe cannot run is simply not deduped
        fp = None
    return Fingerprinted(cid, fp, time.perf_counter() - start)


def run_job(evaluator, job: Job, worker: str, gate=None) -> Done:
    """Evaluate ``job``; serialise the trained weights when asked and it trained.
    ``gate``: the training lock of a worker that holds several jobs at once."""
    result, params = evaluator.evaluate(job.dna, job.hurdles, seed=job.seed, budget=job.budget,
                                        gate=gate)
    weights = None
    if job.want_weights and params is not None and not result.failed:
        from primer_search.fitness.model import params_to_bytes

        weights = params_to_bytes(params)
    return Done(cid=job.cid, result=result, weights=weights,
                worker=f"{worker}/pid{os.getpid()}", node=socket.gethostname())


def answer(evaluator, job: Job, worker: str, gate=None) -> Done | Lost:
    """What a worker sends back for ``job``: :func:`run_job`'s :class:`Done`, or, when an
    exception escapes the evaluator (a bug, or a job that is not a program), a
    :class:`Lost` job whose worker did not die, naming the exception, so that the
    dispatcher records it and does not retry it."""
    try:
        return run_job(evaluator, job, worker, gate)
    except Exception as e:  # noqa: BLE001 - a bug in the evaluator: the loop records it
        return Lost(job.cid, f"{type(e).__name__}: {e}", worker_died=False)


class _LocalFingerprints:
    """Fingerprints computed in the calling process: asked for by ``fingerprint`` and
    answered by the next ``wait`` (the pools below that have no remote workers for it)."""

    _fingerprints: list[tuple[int, DNA, int]]

    def fingerprint(self, cid: int, dna: DNA, d_model: int) -> None:
        self._fingerprints.append((cid, dna, d_model))

    def _answer_fingerprints(self) -> list[tuple[None, Outcome]]:
        asked, self._fingerprints = self._fingerprints, []
        return [(None, compute_fingerprint(*a)) for a in asked]


class InProcessPool(_LocalFingerprints):
    """One slot, evaluated in this process when the loop waits: a search without Ray.

    A job runs to its end inside ``wait``, so a candidate time-out cannot interrupt it
    (the evaluator's own ``budget.timeout_s`` still applies). Fingerprints asked for are
    computed first, in the order asked."""

    size = 1

    def __init__(self, evaluator, name: str = "inprocess"):
        self.evaluator = evaluator
        self.name = name
        self._job: Job | None = None
        self._fingerprints: list[tuple[int, DNA, int]] = []

    def available(self, slot: int) -> bool:
        return slot == 0

    def submit(self, slot: int, job: Job) -> None:
        if slot != 0 or self._job is not None:
            raise RuntimeError(f"in-process pool: slot {slot} is busy or does not exist")
        self._job = job

    def wait(self, timeout_s: float) -> list[tuple[int | None, Outcome]]:
        if self._fingerprints:
            return self._answer_fingerprints()
        if self._job is None:
            return []
        job, self._job = self._job, None
        return [(0, answer(self.evaluator, job, self.name))]

    def replace(self, slot: int) -> None:
        self._job = None

    def close(self) -> None:
        self._job = None
        self._fingerprints = []


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (a driver killed with SIGKILL
    leaves no worker training on); elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _process_worker(conn, factory, args: tuple, name: str) -> None:
    """A :class:`ProcessPool`'s child: build the evaluator, then answer jobs until the
    pipe closes."""
    _die_with_parent()
    evaluator = factory(*args)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(answer(evaluator, job, name))


class ProcessPool(_LocalFingerprints):
    """One slot, evaluated in a child process (``spawn``): no Ray, yet a job past its
    time-out is ended by :meth:`replace` (the child is killed and a new one started),
    and a child that dies (killed, out of memory) is a :class:`Lost` job with
    ``worker_died``, and is replaced. The slot is available once its child has built
    its evaluator, so that a job's time counts from when it can start. The child builds its evaluator with
    ``factory(*args)`` (default: :func:`make_evaluator`); both must pickle. Fingerprints
    asked for are computed in this process, as :class:`InProcessPool` does."""

    size = 1

    def __init__(self, args: tuple, name: str = "process", factory=None):
        self.args = args
        self.name = name
        self.factory = factory or make_evaluator
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None
        self._job: Job | None = None
        self._fingerprints: list[tuple[int, DNA, int]] = []
        self._ready = False
        self._failed_starts = 0
        self._start()

    def _start(self) -> None:
        self._ready = False
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_process_worker, daemon=True,
                                       args=(child, self.factory, self.args, self.name))
        self._proc.start()
        child.close()
        self._conn = parent

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(10)
            self._conn.close()
            self._proc = self._conn = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None once closed)."""
        return self._proc.pid if self._proc is not None else None

    def _check_ready(self, timeout_s: float) -> bool:
        """Whether the child has built its evaluator (waiting up to ``timeout_s``); a
        child that died while starting is started again, up to three times."""
        if self._ready or self._proc is None:
            return self._ready
        try:
            if self._conn.poll(timeout_s):
                self._ready = self._conn.recv() == "ready"
                self._failed_starts = 0
                return self._ready
        except (EOFError, OSError):
            pass
        if not self._proc.is_alive():
            self._failed_starts += 1
            if self._failed_starts >= 3:
                raise WorkerStartError(f"the {self.name} worker process failed to start "
                                       f"{self._failed_starts} times (exit status "
                                       f"{self._proc.exitcode}); see its output above")
            self._stop()
            self._start()
        return False

    def available(self, slot: int) -> bool:
        return slot == 0 and self._check_ready(0)

    def submit(self, slot: int, job: Job) -> None:
        if slot != 0 or self._job is not None or not self._ready:
            raise RuntimeError(f"process pool: slot {slot} is busy or does not exist")
        self._job = job
        self._conn.send(job)

    def wait(self, timeout_s: float) -> list[tuple[int | None, Outcome]]:
        if self._fingerprints:
            return self._answer_fingerprints()
        if self._job is None:
            self._check_ready(timeout_s)
            return []
        try:
            if self._conn.poll(timeout_s):
                answer = self._conn.recv()
                self._job = None
                return [(0, answer)]
        except (EOFError, OSError):
            pass  # the child is gone: below
        if self._proc.is_alive():
            return []
        job, self._job = self._job, None
        code = self._proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else \
            f"exited with status {code}"
        self._stop()
        self._start()
        return [(0, Lost(job.cid, f"the worker process {how}", worker_died=True))]

    def replace(self, slot: int) -> None:
        self._job = None
        self._stop()
        self._start()

    def close(self) -> None:
        self._job = None
        self._fingerprints = []
        self._stop()
