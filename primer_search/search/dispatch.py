"""Jobs on a worker pool: when a job starts, and what a lost, late or hung one means.

The search loop (:mod:`primer_search.search.loop`) and retraining
(:mod:`primer_search.retrain`: ``retrain``, the ladder's rungs) both hand evaluations to a
:class:`~primer_search.search.pool.WorkerPool`, and both follow one policy, which lives
here in a :class:`Dispatcher`:

* what waits for a worker waits in ``ready``, in order; :meth:`Dispatcher.start` gives
  it to the free slots whose worker is available, building each job at that moment;
* a job whose worker died (:class:`~primer_search.search.pool.Lost` with
  ``worker_died``) goes back to the front of ``ready``, up to ``max_retries`` times; the
  next death ends it as ``error`` ("worker died N times: ...");
* a job that an exception escaped (a :class:`~primer_search.search.pool.Lost` that is
  not a death) ends as ``error`` with its reason at once: a bug is not retried;
* a job running longer than ``timeout_s`` has its worker replaced and ends as
  ``timeout``;
* an answer for a job already given up (a time-out) is dropped.

The caller decides what runs (the loop's proposals, dedup, evolution; retraining's list
of runs) and what an ending means for it (a store row, a population update). The
dispatcher knows nothing of those, as PyGlove's evolution algorithms know nothing of
scheduling, and it imports neither JAX nor Ray. :func:`run_jobs` runs a fixed list of
jobs to their end with it (retraining, the benchmarks).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from primer_search.fitness.results import EvalResult, Status
from primer_search.search.pool import Done, Fingerprinted, Job, Lost, WorkerPool

__all__ = ["Dispatcher", "Ended", "run_jobs"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Ended(Generic[T]):
    """A job that will not run again: the caller's ``item`` it was built from, the
    worker's :class:`~primer_search.search.pool.Done` (or the ``error`` or ``timeout``
    the dispatcher recorded, with no worker), and the seconds since it was last
    submitted, by the dispatcher's clock."""

    item: T
    done: Done
    seconds: float


@dataclasses.dataclass(frozen=True)
class _Running(Generic[T]):
    item: T
    job: Job
    started: float


class Dispatcher(Generic[T]):
    """Items of the caller's (``T``) run as jobs on ``pool``'s slots, one per slot.

    ``job_for(item)`` builds an item's job when it is given a slot (the loop sends the
    hurdles of that moment), each try anew. ``clock`` (seconds) measures the time-out
    and :attr:`Ended.seconds`; it is injectable so that tests pass time-outs without
    waiting. ``what`` names the time limit in a time-out's reason ("candidate",
    "retraining")."""

    def __init__(self, pool: WorkerPool, job_for: Callable[[T], Job], *,
                 max_retries: int = 1, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, what: str = "candidate"):
        self.pool = pool
        self.job_for = job_for
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.clock = clock
        self.what = what
        # Waiting for a slot, first first; the caller appends, a retry goes in front.
        self.ready: list[T] = []
        self._slots: list[_Running[T] | None] = [None] * pool.size
        self._deaths: dict[int, int] = {}  # job cid -> times its worker died

    def free(self) -> int:
        """Slots with no job whose worker may be given one now."""
        return sum(r is None and self.pool.available(i) for i, r in enumerate(self._slots))

    def running(self) -> list[T]:
        """The items whose jobs are on a slot now."""
        return [r.item for r in self._slots if r is not None]

    def busy(self) -> bool:
        """Whether anything is ready or running."""
        return bool(self.ready) or any(r is not None for r in self._slots)

    def start(self) -> None:
        """Give ``ready`` items, in order, to the free slots whose worker is available."""
        for slot, running in enumerate(self._slots):
            if running is None and self.ready and self.pool.available(slot):
                item = self.ready.pop(0)
                job = self.job_for(item)
                self.pool.submit(slot, job)
                self._slots[slot] = _Running(item, job, self.clock())

    def poll(self, wait_s: float) -> Iterator[Ended[T] | Fingerprinted]:
        """Wait up to ``wait_s`` for the pool, then yield what ended, in the order the
        pool answered (fingerprints pass through as they are), then the time-outs.

        Lazily: each is yielded as soon as it is known, and the next is collected only
        when the caller asks for it, so that the caller has acted on one answer (stored
        it, say) before it handles the next (a fingerprint that may duplicate it)."""
        for slot, outcome in self.pool.wait(wait_s):
            if isinstance(outcome, Fingerprinted):
                yield outcome
                continue
            ended = self._collect(slot, outcome)
            if ended is not None:
                yield ended
        limit = self.timeout_s
        if limit is None:
            return
        for slot, running in enumerate(self._slots):
            if running is not None and self.clock() - running.started > limit:
                self.pool.replace(slot)
                yield self._end(slot, Done(running.job.cid, EvalResult.failure(
                    Status.TIMEOUT, f"passed the {self.what} time limit of {limit:g} s; its "
                                    "worker was killed")))

    def _collect(self, slot: int, outcome: Done | Lost) -> Ended[T] | None:
        """What ``outcome`` means: an ending, or None (sent again, or a late answer)."""
        running = self._slots[slot]
        if running is None or running.job.cid != outcome.cid:
            return None  # a late answer for a job given up (a time-out)
        cid = outcome.cid
        if isinstance(outcome, Done):
            return self._end(slot, outcome)
        if outcome.worker_died:
            deaths = self._deaths[cid] = self._deaths.get(cid, 0) + 1
            if deaths <= self.max_retries:
                self._slots[slot] = None
                self.ready.insert(0, running.item)
                return None
            reason = f"worker died {deaths} times: {outcome.reason}"
        else:
            reason = outcome.reason
        return self._end(slot, Done(cid, EvalResult.failure(Status.ERROR, reason)))

    def _end(self, slot: int, done: Done) -> Ended[T]:
        running = self._slots[slot]
        self._slots[slot] = None
        return Ended(running.item, done, self.clock() - running.started)


def run_jobs(pool: WorkerPool, jobs: list[Job],
             on_done: Callable[[Job, Done], None] | None = None,
             max_retries: int = 1, timeout_s: float | None = None,
             clock: Callable[[], float] = time.monotonic,
             what: str = "retraining") -> dict[int, Done]:
    """Evaluate ``jobs`` on ``pool`` with a :class:`Dispatcher` (every slot kept busy,
    dead workers retried, time-outs ended) until every one has ended. Returns each
    job's :class:`~primer_search.search.pool.Done` by its ``cid`` (which must be
    unique); ``on_done(job, done)`` hears of each as it ends, so that a caller can save
    it at once. The pool is left open: its owner closes it."""
    dispatcher: Dispatcher[Job] = Dispatcher(pool, lambda job: job, max_retries=max_retries,
                                             timeout_s=timeout_s, clock=clock, what=what)
    dispatcher.ready.extend(jobs)
    out: dict[int, Done] = {}
    while dispatcher.busy():
        dispatcher.start()
        for event in dispatcher.poll(1.0):
            if isinstance(event, Ended):  # run_jobs asks for no fingerprints
                out[event.item.cid] = event.done
                if on_done:
                    on_done(event.item, event.done)
    return out
