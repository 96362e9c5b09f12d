"""The search controller: the only module that knows Ray.

It keeps ``workers`` candidates in flight on Ray actors, writes every result to the store
*before* it acts on it, and can be killed at any moment and resumed:

* a proposal is written to the store (status ``pending``) before it is submitted;
* a result is written (``Store.finish``) before the population, the hurdles or the
  progress display hear of it;
* ``--resume`` rebuilds the population from the store's finished rows in finishing
  order, and queues the pending rows (those in flight at the crash) again. A finished
  evaluation is never lost and never repeated.

Failures: a worker that dies (process killed, node removed) is replaced, and its
candidate is retried up to ``max_retries`` times, then recorded as ``error``; a candidate
past ``candidate_timeout_s`` has its worker killed and is recorded as ``timeout``. None
of them stops the search. The search ends at ``max_candidates``, at ``max_hours``, or on
Ctrl-C (in-flight candidates stay pending for a resume).

Functional dedup: a proposal whose fingerprint matches a finished candidate reuses that
fitness (status ``duplicate``) without training; one that matches a candidate still in
flight waits for it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from pathlib import Path

from primer_search.config import (
    SearchConfig,
    config_from_dict,
    config_to_dict,
    resume_overrides,
    seed_dnas,
)
from primer_search.dna import DNA
from primer_search.evaluate import EvalResult, Status
from primer_search.evolution import Member, RegularizedEvolution
from primer_search.fingerprint import fingerprint
from primer_search.hurdles import HurdleTracker
from primer_search.store import Candidate, Store
from primer_search.validate import dna_hash

__all__ = ["SearchSummary", "resume_search", "run_search"]

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class _Worker:
    """A Ray actor that loads the data once and evaluates candidates one at a time."""

    def __init__(self, config: dict, name: str):
        cfg = config_from_dict(config)
        self.name = name
        if cfg.evaluator == "toy":
            from primer_search.toy import ToyEvaluator

            self.evaluator = ToyEvaluator(cfg.toy_sleep_s)
        else:
            from primer_search.evaluate import Evaluator

            self.evaluator = Evaluator(cfg.fitness)

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, cid: int, dna_bytes: bytes, hurdles: list, want_weights: bool) -> tuple:
        result = self.evaluator.evaluate(DNA.from_bytes(dna_bytes), hurdles)
        weights = None
        params = getattr(self.evaluator, "last_params", None)
        if want_weights and params is not None and not result.failed:
            import flax.serialization
            import jax
            import numpy as np

            host = jax.tree_util.tree_map(np.asarray, params)
            weights = flax.serialization.to_bytes({"params": host})
        return (cid, result.to_dict(), f"{self.name}/pid{os.getpid()}", socket.gethostname(),
                weights)


@dataclasses.dataclass
class _Slot:
    actor: object = None
    ref: object = None
    cid: int | None = None
    started: float = 0.0
    fingerprint: str | None = None


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
    # Controller time spent on proposals (mutation, validation, fingerprint) and store
    # writes, summed over the run; and the workers' evaluation time, summed.
    controller_s: float = 0.0
    evaluation_s: float = 0.0


class _Controller:
    def __init__(self, config: SearchConfig, store: Store, progress: bool):
        import ray

        self.ray = ray
        self.cfg = config
        self.store = store
        self.show_progress = progress
        self.evolution = RegularizedEvolution(config.evolution, seed_dnas(config),
                                              seed=config.seed)
        budget = config.fitness.budget
        self.hurdles = HurdleTracker(budget.stages, budget.pass_rate, config.hurdle_min_history,
                                     config.hurdle_window_size)
        self.queue: list[Candidate] = []
        self.waiting: dict[str, list[int]] = {}  # fingerprint -> pending duplicates
        self.tries: dict[int, int] = {}
        self.start = time.time()
        self.stopped_by = ""
        self.controller_s = 0.0
        self.evaluation_s = 0.0
        self._recover()

    # ---- state from the store -------------------------------------------------------

    def _recover(self) -> None:
        finished = self.store.finished()
        members = [_member(c) for c in finished]
        self.evolution.recover(members, num_proposed=self.store.count(kind="search"))
        for c in finished:
            if c.status != "duplicate" and c.result is not None:
                self.hurdles.record(c.result.stage_fitness)
        self.queue = self.store.pending()

    # ---- Ray ------------------------------------------------------------------------

    def _new_actor(self, index: int):
        cfg = self.cfg
        env = {"RAY_USAGE_STATS_ENABLED": "0"}
        if cfg.threads_per_worker > 0 and cfg.gpus_per_worker == 0:
            env["PJRT_NPROC"] = str(cfg.threads_per_worker)
        if cfg.gpus_per_worker == 0:
            env["JAX_PLATFORMS"] = "cpu"
        actor_cls = self.ray.remote(_Worker)
        return actor_cls.options(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker,
                                 max_restarts=0, runtime_env={"env_vars": env}).remote(
            config_to_dict(cfg), f"worker{index}")

    # ---- the loop -------------------------------------------------------------------

    def _limits_reached(self) -> bool:
        """True when no new work may start (queued candidates from a resume always may)."""
        cfg = self.cfg
        if cfg.max_hours is not None and time.time() - self.start > cfg.max_hours * 3600:
            self.stopped_by = self.stopped_by or "time limit"
            return True
        if cfg.max_candidates is not None and not self.queue:
            # Every candidate in the store is finished, waiting, running or queued.
            if self.store.count(kind="search") >= cfg.max_candidates:
                self.stopped_by = self.stopped_by or "candidate limit"
                return True
        return False

    def _next_candidate(self) -> Candidate | None:
        """A queued (resumed) candidate, or a new proposal; None when a proposal turned
        out to be a duplicate and needs no worker."""
        if self.queue:
            return self.queue.pop(0)
        prop = self.evolution.propose()
        fp = _safe_fingerprint(prop.dna, self.cfg.fitness.model.d_model) if self.cfg.dedup \
            else None
        cid = self.store.add(dna=prop.dna, parent_id=prop.parent_id, mutation=prop.mutation,
                             dna_hash=dna_hash(prop.dna), fingerprint=fp,
                             seed=self.cfg.fitness.seed)
        return self.store.get(cid)

    def _dedup(self, cand: Candidate) -> bool:
        """Handle ``cand`` as a duplicate if it is one; True if it needs no worker."""
        fp = cand.fingerprint
        if not self.cfg.dedup or fp is None:
            return False
        # The earliest result that would come out the same again (not a time-out, an
        # out-of-memory or a dead worker, which depend on the moment).
        earlier = self.store.by_fingerprint(fp, exclude=Status.TRANSIENT)
        if earlier is not None and earlier.result is not None:
            self._finish_duplicate(cand.id, earlier)
            return True
        if fp in self.waiting or any(s.fingerprint == fp for s in self.slots):
            self.waiting.setdefault(fp, []).append(cand.id)
            return True
        return False

    def _finish_duplicate(self, cid: int, earlier: Candidate) -> None:
        self.store.mark_duplicate(cid, earlier.id, earlier.result)
        self.evolution.feedback(_member(self.store.get(cid)))

    def _fill(self) -> None:
        for slot in self.slots:
            while slot.cid is None and not self._limits_reached():
                t = time.perf_counter()
                cand = self._next_candidate()
                duplicate = cand is None or self._dedup(cand)
                self.controller_s += time.perf_counter() - t
                if duplicate:
                    continue
                hurdles = self.hurdles.thresholds()
                slot.ref = slot.actor.evaluate.remote(cand.id, cand.dna.to_bytes(), hurdles,
                                                      self.cfg.keep_weights > 0)
                slot.cid, slot.started, slot.fingerprint = cand.id, time.time(), cand.fingerprint

    def _collect(self, slot: _Slot, index: int) -> None:
        ray = self.ray
        cid = slot.cid
        weights = None  # only a finished evaluation returns weights
        try:
            _, result_dict, worker, node, weights = ray.get(slot.ref)
            result = EvalResult.from_dict(result_dict)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            slot.actor = self._new_actor(index)
            self.tries[cid] = self.tries.get(cid, 0) + 1
            if self.tries[cid] <= self.cfg.max_retries:
                self.queue.insert(0, self.store.get(cid))
                slot.cid = slot.ref = slot.fingerprint = None
                return
            result = EvalResult(fitness=math.inf, status=Status.ERROR,
                                reason=f"worker died {self.tries[cid]} times: "
                                       f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            worker, node = None, None
        except ray.exceptions.RayTaskError as e:  # an exception escaped the evaluator
            result = EvalResult(fitness=math.inf, status=Status.ERROR,
                                reason=str(e).strip().splitlines()[-1][:500])
            worker, node = None, None
        self._record(slot, cid, result, worker, node)
        if weights is not None:
            self._keep_weights(cid, weights)

    def _keep_weights(self, cid: int, weights: bytes) -> None:
        """Write ``cid``'s weights if it is among the best ``keep_weights``; delete the
        files of candidates that dropped out. Written after the result is stored."""
        folder = weights_folder(self.store.path)
        best = {c.id for c in self.store.top(self.cfg.keep_weights)}
        if cid in best:
            folder.mkdir(exist_ok=True)
            tmp = folder / f"{cid}.msgpack.tmp"
            tmp.write_bytes(weights)
            tmp.replace(folder / f"{cid}.msgpack")
        for path in folder.glob("*.msgpack") if folder.exists() else []:
            if int(path.stem) not in best:
                path.unlink()

    def _record(self, slot: _Slot, cid: int, result: EvalResult, worker, node) -> None:
        t = time.perf_counter()
        self.evaluation_s += time.time() - slot.started
        self.store.finish(cid, result, worker=worker, node=node)  # first: never lost
        cand = self.store.get(cid)
        self.evolution.feedback(_member(cand))
        self.hurdles.record(result.stage_fitness)
        fp = slot.fingerprint
        slot.cid = slot.ref = slot.fingerprint = None
        for waiting in self.waiting.pop(fp, []) if fp else []:
            if result.status in Status.TRANSIENT:  # not reusable
                self.queue.append(self.store.get(waiting))
            else:
                self._finish_duplicate(waiting, cand)
        self.controller_s += time.perf_counter() - t

    def _check_timeouts(self) -> None:
        limit = self.cfg.candidate_timeout_s
        if limit is None:
            return
        for index, slot in enumerate(self.slots):
            if slot.cid is not None and time.time() - slot.started > limit:
                self.ray.kill(slot.actor, no_restart=True)
                result = EvalResult(fitness=math.inf, status=Status.TIMEOUT,
                                    reason=f"passed the candidate time limit of {limit:g} s; "
                                           "its worker was killed")
                slot.actor = self._new_actor(index)
                self._record(slot, slot.cid, result, None, None)

    def run(self) -> SearchSummary:
        ray = self.ray
        self.slots = [_Slot(actor=self._new_actor(i)) for i in range(self.cfg.workers)]
        display = _Progress(self) if self.show_progress else None
        try:
            while True:
                self._fill()
                busy = [s for s in self.slots if s.cid is not None]
                if not busy:
                    break
                ready, _ = ray.wait([s.ref for s in busy], num_returns=1, timeout=0.5)
                for index, slot in enumerate(self.slots):
                    if slot.ref is not None and slot.ref in ready:
                        self._collect(slot, index)
                self._check_timeouts()
                if display:
                    display.update()
        except KeyboardInterrupt:
            self.stopped_by = "interrupted (Ctrl-C); in-flight candidates stay pending"
        finally:
            if display:
                display.close()
            for slot in self.slots:
                try:
                    ray.kill(slot.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
        return self.summary()

    def summary(self) -> SearchSummary:
        # Counts, not rows: the progress display calls this on every loop turn.
        count = self.store.count
        top = self.store.top(1)
        finished = count() - count("pending")
        duplicates = count("duplicate")
        return SearchSummary(
            store=str(self.store.path), finished=finished, trained=finished - duplicates,
            duplicates=duplicates, failed=sum(count(s) for s in Status.FAILED),
            best_id=top[0].id if top else None,
            best_fitness=top[0].fitness if top else None,
            seconds=time.time() - self.start, stopped_by=self.stopped_by or "done",
            controller_s=self.controller_s, evaluation_s=self.evaluation_s)


def weights_folder(store_path) -> Path:
    """Where a search keeps the trained weights of its best candidates: ``STORE.weights/``,
    one ``ID.msgpack`` each (flax.serialization bytes of ``{"params": lm_params}``)."""
    return Path(f"{store_path}.weights")


def _member(c: Candidate) -> Member:
    """A finished candidate as evolution sees it: its fitness and how many hurdle stages
    it completed (see :func:`primer_search.hurdles.rank_key`)."""
    fitness = c.fitness if c.fitness is not None else math.inf
    return Member(c.id, c.dna, fitness, c.result.stages_completed if c.result else 0)


def _safe_fingerprint(dna: DNA, d_model: int) -> str | None:
    try:
        return fingerprint(dna, d_model)
    except Exception:  # noqa: BLE001 - a program the probe cannot run is simply not deduped
        return None


class _Progress:
    """Live progress (rich): candidates done, best fitness, rate, failures."""

    def __init__(self, controller: _Controller):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.c = controller
        self.progress = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
        total = controller.cfg.max_candidates
        self.task = self.progress.add_task("search", total=total, info="")
        self.progress.start()
        self.update()

    def update(self) -> None:
        s = self.c.summary()
        hours = max(s.seconds, 1e-9) / 3600
        best = f"{s.best_fitness:.4g} (#{s.best_id})" if s.best_fitness is not None else "-"
        info = (f"best {best}  trained {s.trained}  dup {s.duplicates}  failed {s.failed}  "
                f"{s.finished / hours:.0f}/h")
        self.progress.update(self.task, completed=s.finished, info=info)

    def close(self) -> None:
        self.update()
        self.progress.stop()


def _init_ray(config: SearchConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    if config.address:
        ray.init(address=config.address, logging_level="WARNING", log_to_driver=False)
    else:
        ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False,
                 num_cpus=max(os.cpu_count() or 1, math.ceil(config.workers * config.cpus_per_worker)))


def run_search(config: SearchConfig, store_path: str | os.PathLike,
               progress: bool = True) -> SearchSummary:
    """Start a new search writing to ``store_path`` (which must not exist)."""
    if Path(store_path).exists():
        raise FileExistsError(f"store {os.fspath(store_path)!r} exists; resume it with "
                              "--resume, or choose another path")
    with Store(store_path, config_to_dict(config)) as store:
        _init_ray(config)
        return _Controller(config, store, progress).run()


def resume_search(store_path: str | os.PathLike, overrides: dict | None = None,
                  progress: bool = True) -> SearchSummary:
    """Continue the search in ``store_path`` with its stored config. ``overrides`` (a
    nested dict) are merged key by key and may change only limits, workers, resources
    and the address (:data:`primer_search.config.RESUMABLE_KEYS`); anything else is
    refused with a :class:`~primer_search.config.ConfigError`. Each resume and its
    overrides are recorded in the store."""
    with Store(store_path) as store:
        data = resume_overrides(store.config, overrides or {}, str(store_path))
        config = config_from_dict(data, source=f"{store_path} (stored config)")
        store.record_resume(overrides or {})
        _init_ray(config)
        return _Controller(config, store, progress).run()
