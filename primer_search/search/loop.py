"""The search loop: propose, deduplicate, dispatch, record, feed back, set hurdles.

It knows nothing of Ray: candidates are evaluated by a :class:`~primer_search.search.pool.WorkerPool`
(Ray actors in a real search, the calling process in tests). It writes every result to
the store *before* it acts on it, and can be killed at any moment and resumed:

* a proposal is written to the store (status ``pending``) before it is dispatched;
* a result is written (``Store.finish``) before the population, the hurdles or the
  progress display hear of it;
* a resume rebuilds the population from the store's finished rows in finishing order,
  and queues the pending rows (those in flight at the crash) again. A finished
  evaluation is never lost and never repeated.

Failures: a worker that dies is replaced by its pool, and its candidate is retried up
to ``limits.max_retries`` times, then recorded as ``error``; a candidate past
``limits.candidate_timeout_s`` has its worker replaced and is recorded as ``timeout``. None of
them stops the search. That policy, and when a ready candidate gets a worker, is the
:class:`~primer_search.search.dispatch.Dispatcher`'s, which retraining shares; the loop
keeps what to propose and what a result means. The search ends at
``limits.max_candidates``, at ``limits.max_hours``, or on Ctrl-C (in-flight candidates
stay pending for a resume).

Preparing ahead: while the workers train, the loop proposes the next candidates and has
the pool compute their fingerprints (a JAX compile each, which the loop's own process
never does), so that a worker that finishes finds its next candidate ready
(``pool.prepare_ahead`` per worker).

Functional dedup: a proposal whose fingerprint matches a finished candidate with a
reusable result (:meth:`~primer_search.fitness.results.Status.is_reusable`) takes that result
(status ``duplicate``) without training; one that matches a candidate still in flight
waits for it, and is queued for training if that one fails for a reason of the moment.
A candidate counts as in flight from the moment it is ready for a worker.

Reproducible mode (``reproducible_lag = k``): results still arrive in any order and are
stored at once, but evolution and the hurdles hear of them in proposal order, k behind:
proposal n is made only once candidates 1 .. n-k have finished, from a population and
hurdles built from exactly those, and fingerprinted candidates go through dedup in
proposal order. What a run proposes then depends on the seed and the results, never on
which worker was faster, and a resume continues the same stream.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from primer_search.fitness.hurdles import HurdleTracker
from primer_search.fitness.results import WORST_FITNESS, EvalResult, Status
from primer_search.program.dna import DNA
from primer_search.program.validate import dna_hash
from primer_search.search.config import SearchConfig, seed_dnas
from primer_search.search.dispatch import Dispatcher, Ended
from primer_search.search.evolution import Member, RegularizedEvolution
from primer_search.search.pool import Fingerprinted, Job, WorkerPool
from primer_search.search.store import Store, StoreError

__all__ = ["SearchLoop", "SearchSummary", "weights_folder"]


@dataclasses.dataclass(frozen=True)
class SearchSummary:
    store: str
    finished: int
    trained: int
    duplicates: int
    failed: int
    best_id: int | None
    best_fitness: float | None
    seconds: float
    stopped_by: str
    # Loop time spent on proposals (mutation, validation), dedup and store writes, summed
    # over the run; the workers' evaluation time, summed; and the fingerprints' compute
    # time, summed (spent off the loop, by the pool).
    loop_s: float = 0.0
    evaluation_s: float = 0.0
    fingerprint_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Pending:
    """A candidate written to the store and not finished yet, as the loop keeps it."""

    id: int
    dna: DNA
    dna_hash: str
    fingerprint: str | None
    parent_id: int | None = None
    mutation: str = ""
    # Reproducible mode: the hurdles set when it was proposed (None: the hurdles of the
    # moment it is dispatched).
    thresholds: tuple[float | None, ...] | None = None


def weights_folder(store_path) -> Path:
    """Where a search keeps the trained weights of its best candidates: ``STORE.weights/``,
    one ``ID.msgpack`` each (flax.serialization bytes of ``{"params": lm_params}``)."""
    return Path(f"{store_path}.weights")


def save_weights(folder: Path, cid: int, weights: bytes) -> None:
    """Write ``folder/CID.msgpack`` so that a reader sees the whole file or none. A
    failed write (a full disk) leaves no partial file and is a :class:`StoreError`: the
    search stops, with the candidate's result already in the store."""
    tmp = folder / f"{cid}.msgpack.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(weights)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(folder / f"{cid}.msgpack")
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"the weights of candidate {cid} could not be written to {folder} "
                         f"({e.strerror or e}); its result is in the store: free disk space "
                         "and resume") from None


def _member(cid: int, dna: DNA, result: EvalResult | None) -> Member:
    """A finished candidate as evolution sees it: its fitness and how many hurdle stages
    it completed (see :func:`primer_search.fitness.hurdles.rank_key`)."""
    if result is None:
        return Member(cid, dna, WORST_FITNESS, 0)
    return Member(cid, dna, result.fitness, result.stages_completed)


class SearchLoop:
    """Regularized evolution over a store, with candidates evaluated by ``pool``.

    ``clock`` (seconds, wall time) is injectable so that tests can pass time-outs and
    time limits without waiting. ``on_turn`` is called once per loop turn (the progress
    display); ``on_finish(cand, status, result)`` once per finished candidate, after the
    store has it (a log line)."""

    def __init__(self, config: SearchConfig, store: Store, pool: WorkerPool,
                 clock: Callable[[], float] = time.time,
                 on_finish: Callable[[_Pending, Status, EvalResult], None] | None = None):
        self.cfg = config
        self.on_finish = on_finish
        self.store = store
        self.pool = pool
        self.clock = clock
        self.evolution = RegularizedEvolution(config.evolution, seed_dnas(config),
                                              seed=config.seed)
        self.hurdles = self._new_hurdles()
        # Reproducible mode: the search's candidate ids in proposal order, the finished
        # ones as evolution and the hurdles will hear of them, how many of the proposal
        # order have been fed to them, and fingerprinted candidates held back until every
        # earlier one has been through dedup.
        self.lag = config.reproducible_lag
        self.order: list[int] = []
        self.outcomes: dict[int, tuple[Member, tuple[float, ...] | None]] = {}
        self.fed = 0
        self.held: list[_Pending] = []
        # A candidate on its way: queued (resumed, or released by a failed original) ->
        # fingerprinting -> deduplicated -> ready -> running in a slot; the last two are
        # the dispatcher's (``dispatch.ready``, ``dispatch.running()``).
        self.queue: list[_Pending] = []
        self.fingerprinting: dict[str, list[_Pending]] = {}  # dna_hash -> its candidates
        self.probes: dict[int, str] = {}  # cid whose probe is running -> its dna_hash
        self.waiting: dict[str, list[_Pending]] = {}  # fingerprint -> duplicates in wait
        self.fingerprints: dict[str, str | None] = {}  # dna_hash -> fingerprint
        self.dispatch: Dispatcher[_Pending] = Dispatcher(
            pool, self._job, max_retries=config.limits.max_retries,
            timeout_s=config.limits.candidate_timeout_s, clock=clock)
        self.start = clock()
        self.stopped_by = ""
        self.loop_s = 0.0
        self.evaluation_s = 0.0
        self.fingerprint_s = 0.0
        self._recover()

    def _new_hurdles(self) -> HurdleTracker:
        budget = self.cfg.fitness.budget
        return HurdleTracker(budget.stages, budget.pass_rate, self.cfg.hurdles.min_history,
                             self.cfg.hurdle_window_size)

    # ---- state from the store -------------------------------------------------------

    def _recover(self) -> None:
        finished = self.store.finished()
        queued = self.store.pending()
        if self.lag is not None:
            # Nothing is fed yet: _gate_open feeds the finished rows in proposal order.
            self.evolution.recover([], num_proposed=self.store.count(kind="search"))
            self.order = self.store.ids()
            for c in finished:
                self._remember(c.id, c.dna, c.status, c.result)
            self.queue = [self._pending(c, self._thresholds_before(c.id)) for c in queued]
            return
        self.evolution.recover([_member(c.id, c.dna, c.result) for c in finished],
                               num_proposed=self.store.count(kind="search"))
        for c in finished:
            if c.status != Status.DUPLICATE and c.result is not None:
                self.hurdles.record(c.result.stage_fitness)
        self.queue = [self._pending(c) for c in queued]

    @staticmethod
    def _pending(c, thresholds=None) -> _Pending:
        return _Pending(c.id, c.dna, c.dna_hash, c.fingerprint, c.parent_id, c.mutation,
                        thresholds)

    # ---- reproducible mode: results fed in proposal order ----------------------------

    def _remember(self, cid: int, dna: DNA, status: Status, result: EvalResult | None) -> None:
        """Keep a finished candidate until its turn in proposal order comes."""
        stages = None if status == Status.DUPLICATE or result is None else result.stage_fitness
        self.outcomes[cid] = (_member(cid, dna, result), stages)

    def _feed(self, tracker: HurdleTracker, cid: int, evolution=True) -> None:
        member, stages = self.outcomes[cid]
        if evolution:
            self.evolution.feedback(member)
        if stages is not None:
            tracker.record(stages)

    def _gate_open(self) -> bool:
        """Whether the next proposal may be made: every candidate at least ``lag`` before
        it in proposal order has finished. Feeds those it may see, in order."""
        if self.lag is None:
            return True
        need = self.evolution.num_proposed - self.lag + 1
        while self.fed < need:
            cid = self.order[self.fed]
            if cid not in self.outcomes:
                return False
            self._feed(self.hurdles, cid)
            self.fed += 1
        return True

    def _thresholds_before(self, cid: int) -> tuple[float | None, ...]:
        """The hurdles of a resumed candidate as they were when it was proposed: from
        the results of the candidates at least ``lag`` before it, in proposal order
        (they finished before it was proposed, so the store has them all)."""
        tracker = self._new_hurdles()
        for earlier in self.order[: max(0, self.order.index(cid) - self.lag + 1)]:
            self._feed(tracker, earlier, evolution=False)
        return tuple(tracker.thresholds())

    # ---- the loop -------------------------------------------------------------------

    def run(self, on_turn: Callable[[], None] | None = None) -> SearchSummary:
        """Search until a limit is reached or Ctrl-C; close the pool; return a summary."""
        try:
            while True:
                self._fill()
                if not self._busy():
                    break
                for event in self.dispatch.poll(0.5):
                    if isinstance(event, Fingerprinted):
                        self._fingerprinted(event)
                    else:
                        self._record(event)
                if on_turn:
                    on_turn()
        except KeyboardInterrupt:
            self.stopped_by = "interrupted (Ctrl-C); in-flight candidates stay pending"
        finally:
            self.pool.close()
        return self.summary()

    def _busy(self) -> bool:
        return self.dispatch.busy() or bool(self.fingerprinting) or bool(self.held)

    def _preparing(self) -> int:
        return (len(self.dispatch.ready) + len(self.held)
                + sum(len(c) for c in self.fingerprinting.values()))

    def _limits_reached(self) -> bool:
        """True when no new proposal may be made (queued candidates always may go on)."""
        cfg = self.cfg
        if cfg.limits.max_hours is not None and self.clock() - self.start > cfg.limits.max_hours * 3600:
            self.stopped_by = self.stopped_by or "time limit"
            return True
        if cfg.limits.max_candidates is not None:
            # Every proposal is in the store (finished, waiting, running or on its way);
            # evolution counts them, starting from the store's count on a resume.
            if self.evolution.num_proposed >= cfg.limits.max_candidates:
                self.stopped_by = self.stopped_by or "candidate limit"
                return True
        return False

    # ---- preparing candidates: propose, fingerprint, dedup ----------------------------

    def _fill(self) -> None:
        """Prepare candidates until every worker has one running and ``pool.prepare_ahead``
        more ready or being fingerprinted; start the ready ones on free workers."""
        target = self.dispatch.free() + self.cfg.pool.prepare_ahead * self.pool.size
        while self._preparing() < target:
            t = time.perf_counter()
            if self.queue:
                self._route(self.queue.pop(0))
            elif self._limits_reached() or not self._gate_open():
                self.loop_s += time.perf_counter() - t
                break
            else:
                self._route(self._propose())
            self.loop_s += time.perf_counter() - t
        self.dispatch.start()

    def _job(self, cand: _Pending) -> Job:
        """``cand``'s job as it gets a worker: with the hurdles set when it was proposed
        (reproducible mode), else those of this moment."""
        thresholds = (cand.thresholds if cand.thresholds is not None
                      else tuple(self.hurdles.thresholds()))
        return Job(cand.id, cand.dna, thresholds,
                   want_weights=self.cfg.limits.keep_weights > 0)

    def _propose(self) -> _Pending:
        """A new proposal, written to the store (its fingerprint follows when known)."""
        prop = self.evolution.propose()
        digest = dna_hash(prop.dna)
        fp = self.fingerprints.get(digest)
        cid = self.store.add(dna=prop.dna, parent_id=prop.parent_id, mutation=prop.mutation,
                             dna_hash=digest, fingerprint=fp, seed=self.cfg.fitness.seed)
        thresholds = None
        if self.lag is not None:
            self.order.append(cid)
            thresholds = tuple(self.hurdles.thresholds())
        return _Pending(cid, prop.dna, digest, fp, prop.parent_id, prop.mutation, thresholds)

    def _route(self, cand: _Pending) -> None:
        """Send ``cand`` to be fingerprinted, or, with its fingerprint known, to dedup and
        then to the ready list."""
        if self.cfg.dedup and cand.fingerprint is None:
            if cand.dna_hash not in self.fingerprints:
                # One probe per program: copies proposed meanwhile wait for its answer.
                if cand.dna_hash not in self.fingerprinting:
                    self.probes[cand.id] = cand.dna_hash
                    self.pool.fingerprint(cand.id, cand.dna, self.cfg.fitness.model.d_model)
                self.fingerprinting.setdefault(cand.dna_hash, []).append(cand)
                return
            known = self.fingerprints[cand.dna_hash]
            if known is not None:  # None: the probe could not run this program: no dedup
                self.store.set_fingerprint(cand.id, known)
                cand = dataclasses.replace(cand, fingerprint=known)
        self._place(cand)

    def _place(self, cand: _Pending) -> None:
        """Dedup ``cand`` (its fingerprint is known, or cannot be) and make it ready if it
        needs a worker. In reproducible mode it waits until every earlier candidate still
        being fingerprinted has been placed, so that which of two equal programs trains
        and which copies its result never depends on whose probe came back first."""
        if self.lag is None:
            if not self._dedup(cand):
                self.dispatch.ready.append(cand)
            return
        bisect.insort(self.held, cand, key=lambda c: c.id)
        earliest = min((c.id for cands in self.fingerprinting.values() for c in cands),
                       default=None)
        while self.held and (earliest is None or self.held[0].id < earliest):
            cand = self.held.pop(0)
            if not self._dedup(cand):
                self.dispatch.ready.append(cand)

    def _fingerprinted(self, outcome: Fingerprinted) -> None:
        t = time.perf_counter()
        self.fingerprint_s += outcome.seconds
        digest = self.probes.pop(outcome.cid, None)
        if digest is None:
            return
        # The same program (by canonical hash) always has the same fingerprint: remember
        # it, so copies of the seeds and repeated children cost no second probe.
        self.fingerprints[digest] = fp = outcome.fingerprint
        for cand in self.fingerprinting.pop(digest):
            if fp is not None:
                self.store.set_fingerprint(cand.id, fp)
                cand = dataclasses.replace(cand, fingerprint=fp)
            self._place(cand)
        self.loop_s += time.perf_counter() - t

    def _dedup(self, cand: _Pending) -> bool:
        """Handle ``cand`` as a duplicate if it is one; True if it needs no worker."""
        fp = cand.fingerprint
        if not self.cfg.dedup or fp is None:
            return False
        earlier = self.store.reusable_by_fingerprint(fp)
        if earlier is not None:
            self._finish_duplicate(cand, earlier.id, earlier.result)
            return True
        in_flight = self.dispatch.running() + self.dispatch.ready
        if fp in self.waiting or any(c.fingerprint == fp for c in in_flight):
            self.waiting.setdefault(fp, []).append(cand)
            return True
        return False

    def _finish_duplicate(self, cand: _Pending, of: int, result: EvalResult) -> None:
        self.store.mark_duplicate(cand.id, of, result)
        if self.lag is not None:
            self._remember(cand.id, cand.dna, Status.DUPLICATE, result)
        else:
            self.evolution.feedback(_member(cand.id, cand.dna, result))
        if self.on_finish:
            self.on_finish(cand, Status.DUPLICATE, result)

    # ---- results -----------------------------------------------------------------------

    def _record(self, ended: Ended[_Pending]) -> None:
        """A candidate's job ended (the dispatcher has dealt with retries and time-outs):
        store its result, feed it back, settle the duplicates that waited for it, then
        keep its weights if it sent them."""
        t = time.perf_counter()
        cand, done, result = ended.item, ended.done, ended.done.result
        self.evaluation_s += ended.seconds
        self.store.finish(cand.id, result, worker=done.worker, node=done.node)  # first: never lost
        if self.lag is not None:
            self._remember(cand.id, cand.dna, result.status, result)
        else:
            self.evolution.feedback(_member(cand.id, cand.dna, result))
            self.hurdles.record(result.stage_fitness)
        if self.on_finish:
            self.on_finish(cand, result.status, result)
        for waiting in self.waiting.pop(cand.fingerprint, []) if cand.fingerprint else []:
            if result.status.is_reusable():
                self._finish_duplicate(waiting, cand.id, result)
            else:
                self.queue.append(waiting)
        self.loop_s += time.perf_counter() - t
        if done.weights is not None:
            self._keep_weights(cand.id, done.weights)

    def _keep_weights(self, cid: int, weights: bytes) -> None:
        """Write ``cid``'s weights if it is among the best ``keep_weights``; delete the
        files of candidates that dropped out. Written after the result is stored."""
        folder = weights_folder(self.store.path)
        best = {c.id for c in self.store.top(self.cfg.limits.keep_weights)}
        if cid in best:
            save_weights(folder, cid, weights)
        for path in folder.glob("*.msgpack") if folder.exists() else []:
            if int(path.stem) not in best:
                path.unlink()

    def summary(self) -> SearchSummary:
        # Counts, not rows: the progress display calls this on every loop turn.
        count = self.store.count
        top = self.store.top(1)
        finished = count() - count(Status.PENDING)
        duplicates = count(Status.DUPLICATE)
        return SearchSummary(
            store=str(self.store.path), finished=finished, trained=finished - duplicates,
            duplicates=duplicates, failed=sum(count(s) for s in Status.failed()),
            best_id=top[0].id if top else None,
            best_fitness=top[0].fitness if top else None,
            seconds=self.clock() - self.start, stopped_by=self.stopped_by or "done",
            loop_s=self.loop_s, evaluation_s=self.evaluation_s,
            fingerprint_s=self.fingerprint_s)
