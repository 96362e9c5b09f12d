"""Ray workers for the search loop: the only module that imports Ray.

:class:`RayPool` keeps one Ray actor per slot. Each actor loads the data once and
evaluates one :class:`~primer_search.search.pool.Job` at a time through
:func:`~primer_search.search.pool.answer`, so it answers with the same typed
:class:`~primer_search.search.pool.Done` (or ``Lost``, for an exception that escaped the
evaluator) as an in-process evaluation. An actor that dies is
replaced at once and reported as :class:`~primer_search.search.pool.Lost` with
``worker_died=True``; the loop decides whether to retry.

The pool follows the cluster: a slot is given work only once its actor has started
(``available``), which a small probe call tells. A replacement for an actor lost with its
node waits, unplaced, until some node has room for it (an autoscaler sees it as demand
and adds one); meanwhile its job goes to a live worker and the search goes on with fewer
workers, and the slot comes back when the actor starts. An actor that fails to start
:data:`START_ATTEMPTS` times in a row (say, its node cannot read the corpus) stops the
search with the reason.

Fingerprints run as Ray tasks on the CPU (``JAX_PLATFORMS=cpu``), reserving no CPU: the
loop keeps at most a few in flight (one per worker it prepares ahead), each about half
a second of one core, so they take a small share of the machine and never wait for a
worker to be free. The loop's own process does no JAX work.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time

from primer_search.fitness.config import FitnessConfig
from primer_search.program.dna import DNA
from primer_search.search.config import SearchConfig
from primer_search.search.pool import (
    Done,
    Fingerprinted,
    Job,
    Lost,
    Outcome,
    WorkerStartError,
    answer,
    compute_fingerprint,
    make_evaluator,
)

__all__ = ["ClusterError", "RayPool", "WorkerStartError", "actor_options", "init_ray",
           "worker_env"]

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
log = logging.getLogger(__name__)

# Times in a row a slot's actor may fail to start before the search stops.
START_ATTEMPTS = 3
# Seconds after which a worker that has not started is reported (once) in the log.
PLACEMENT_WARNING_S = 120.0


class _Worker:
    """A Ray actor: one evaluator, its data loaded once. With ``gated``, several jobs run
    in threads of the actor and take turns to train (see ``Evaluator.evaluate``'s gate)."""

    def __init__(self, fitness: FitnessConfig, kind: str, toy_sleep_s: float, name: str,
                 gated: bool = False):
        self.name = name
        self.evaluator = make_evaluator(fitness, kind, toy_sleep_s)
        self.gate = threading.Lock() if gated else None

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, job: Job) -> Done:
        return answer(self.evaluator, job, self.name, gate=self.gate)


def worker_env(cfg: SearchConfig) -> dict[str, str]:
    """Environment variables of a worker process: CPU workers run JAX on the CPU with
    ``threads_per_worker`` threads; workers that share a GPU each pre-allocate only their
    share of its memory (JAX's default is 75% of it in every process)."""
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    if cfg.pool.gpus_per_worker == 0:
        env["JAX_PLATFORMS"] = "cpu"
        if cfg.pool.threads_per_worker > 0:
            env["PJRT_NPROC"] = str(cfg.pool.threads_per_worker)
    elif cfg.pool.gpus_per_worker < 1:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * cfg.pool.gpus_per_worker:.3f}"
    return env


def actor_options(cfg: SearchConfig) -> dict:
    """The Ray options of a worker actor: the resources it reserves, where it may run,
    its environment; never restarted by Ray (the pool replaces it)."""
    options = {"num_cpus": cfg.pool.cpus_per_worker, "num_gpus": cfg.pool.gpus_per_worker,
               "max_restarts": 0, "runtime_env": {"env_vars": worker_env(cfg)}}
    if cfg.pool.candidates_per_worker > 1:  # its jobs and its probe each run in a thread
        options["max_concurrency"] = cfg.pool.candidates_per_worker + 1
    if cfg.pool.accelerator_type:
        options["accelerator_type"] = cfg.pool.accelerator_type
    if cfg.pool.worker_resources:
        options["resources"] = {k: float(v) for k, v in cfg.pool.worker_resources.items()}
    return options


class RayPool:
    """``config.pool.workers`` Ray actors with the resources the config asks, each holding
    ``candidates_per_worker`` slots (slot ``s`` is on actor ``s // candidates_per_worker``)."""

    def __init__(self, config: SearchConfig):
        import ray

        self.ray = ray
        self.cfg = config
        self.per_worker = config.pool.candidates_per_worker
        self.size = config.pool.workers * self.per_worker
        n = config.pool.workers
        self.probes: dict = {}  # ref of a started-yet? call -> (worker, actor)
        self.started = [False] * n
        self.created = [0.0] * n
        self.failed_starts = [0] * n
        self.warned: set[int] = set()
        self.actors = [self._new_actor(w) for w in range(n)]
        self.refs: list = [None] * self.size
        self.jobs: list[Job | None] = [None] * self.size
        self.ran_on: list = [None] * self.size  # the actor each slot's job was sent to
        self.fingerprints: dict = {}  # ref -> cid
        self._fingerprint_task = ray.remote(compute_fingerprint).options(
            num_cpus=0, max_retries=1,
            runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "JAX_PLATFORMS": "cpu",
                                      "PJRT_NPROC": "1"}})

    def _new_actor(self, w: int):
        """Start worker ``w``'s actor; its slots are available once its probe answers."""
        cfg = self.cfg
        actor = self.ray.remote(_Worker).options(**actor_options(cfg)).remote(
            cfg.fitness, cfg.evaluator, cfg.pool.toy_sleep_s, f"worker{w}", self.per_worker > 1)
        self.probes[actor.pid.remote()] = (w, actor)
        self.started[w] = False
        self.created[w] = time.monotonic()
        return actor

    def available(self, slot: int) -> bool:
        return self.started[slot // self.per_worker]

    def _probed(self, ref) -> None:
        """A probe answered: its actor started, or failed to (then it is started again)."""
        w, actor = self.probes.pop(ref)
        if actor is not self.actors[w]:
            return  # an actor since replaced
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            self.failed_starts[w] += 1
            reason = str(e).strip().splitlines()[-1][:500]
            if self.failed_starts[w] >= START_ATTEMPTS:
                raise WorkerStartError(f"worker{w} failed to start {START_ATTEMPTS} times "
                                       f"in a row; the last time: {reason}") from None
            log.warning("worker%d failed to start (%s); starting it again", w, reason)
            self.actors[w] = self._new_actor(w)
            return
        self.started[w] = True
        self.failed_starts[w] = 0
        if w in self.warned:
            log.warning("worker%d started after %.0f s", w, time.monotonic() - self.created[w])
            self.warned.discard(w)

    def _warn_unplaced(self) -> None:
        now = time.monotonic()
        for w in range(len(self.actors)):
            if (not self.started[w] and w not in self.warned
                    and now - self.created[w] > PLACEMENT_WARNING_S):
                self.warned.add(w)
                log.warning("worker%d has not started after %.0f s: no node has room for "
                            "it (%s); the search goes on with the other workers", w,
                            now - self.created[w], {
                                k: v for k, v in actor_options(self.cfg).items()
                                if k in ("num_cpus", "num_gpus", "accelerator_type",
                                         "resources")})

    def submit(self, slot: int, job: Job) -> None:
        actor = self.actors[slot // self.per_worker]
        self.jobs[slot], self.ran_on[slot] = job, actor
        self.refs[slot] = actor.evaluate.remote(job)

    def fingerprint(self, cid: int, dna: DNA, d_model: int) -> None:
        self.fingerprints[self._fingerprint_task.remote(cid, dna, d_model)] = cid

    def wait(self, timeout_s: float) -> list[tuple[int | None, Outcome]]:
        ray = self.ray
        busy = [r for r in self.refs if r is not None] + list(self.fingerprints) + \
            list(self.probes)
        if not busy:
            return []
        ready, _ = ray.wait(busy, num_returns=1, timeout=timeout_s)
        out: list[tuple[int | None, Outcome]] = []
        for ref in ready:
            if ref in self.probes:
                self._probed(ref)
            elif ref in self.fingerprints:
                cid = self.fingerprints.pop(ref)
                try:
                    out.append((None, ray.get(ref)))
                except ray.exceptions.RayError:  # the task's process died twice
                    out.append((None, Fingerprinted(cid, None)))
        for slot, ref in enumerate(self.refs):
            if ref is None or ref not in ready:
                continue
            job, actor = self.jobs[slot], self.ran_on[slot]
            self.refs[slot] = self.jobs[slot] = self.ran_on[slot] = None
            try:
                out.append((slot, ray.get(ref)))
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                w = slot // self.per_worker
                if actor is self.actors[w]:  # not yet replaced (by its other slots' loss)
                    self.actors[w] = self._new_actor(w)
                out.append((slot, Lost(job.cid, f"{type(e).__name__}: "
                                                f"{str(e).splitlines()[0][:300]}", True)))
            except ray.exceptions.RayTaskError as e:  # an exception escaped answer() itself
                out.append((slot, Lost(job.cid, str(e).strip().splitlines()[-1][:500], False)))
        self._warn_unplaced()
        return out

    def replace(self, slot: int) -> None:
        """Kill ``slot``'s worker and start another (its other slots' jobs come back as
        lost with it, and are retried)."""
        w = slot // self.per_worker
        self.ray.kill(self.actors[w], no_restart=True)
        self.refs[slot] = self.jobs[slot] = self.ran_on[slot] = None
        self.actors[w] = self._new_actor(w)

    def close(self) -> None:
        self.probes = {}
        for ref in self.fingerprints:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass
        self.fingerprints = {}
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass


class ClusterError(ConnectionError):
    """The Ray cluster named by the config or by ``RAY_ADDRESS`` cannot be reached."""


def init_ray(config: SearchConfig) -> None:
    """Connect to a cluster or start Ray embedded, sized for the workers.

    The cluster is ``config.pool.address`` if set, else ``RAY_ADDRESS`` (which ``ray job
    submit`` sets for the job's driver). Connecting to a cluster passes no resources:
    the cluster has its own, and Ray refuses ``num_cpus`` for an existing cluster. With
    neither, a new Ray instance starts in this process, even where the machine runs a
    cluster already (``--address auto`` joins that one)."""
    import ray

    if ray.is_initialized():
        return
    # At debug level (primer-search --log-level debug), the workers' own output (their
    # prints, JAX's warnings, tracebacks) streams to the driver's standard error.
    to_driver = logging.getLogger("primer_search").isEnabledFor(logging.DEBUG)
    address = config.pool.address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=to_driver)
        except ConnectionError as e:
            where = "address" if config.pool.address else "RAY_ADDRESS"
            raise ClusterError(
                f"cannot reach the Ray cluster at {where} {address!r} ({str(e).splitlines()[0]}"
                "); check that `ray status` works on this machine, use the address that "
                "`ray start --head` printed (it listens on the node's IP, not 127.0.0.1), "
                "or `--address auto` on a node of the cluster; a head started by `ray "
                "start` turns token authentication on, so set RAY_AUTH_MODE=token") from None
    else:
        # "local": a new embedded instance, always. Without it Ray joins any cluster this
        # machine already runs (a `ray start`, another search's instance) and then
        # refuses the num_cpus given here.
        ray.init(address="local", include_dashboard=False, logging_level="WARNING",
                 log_to_driver=to_driver,
                 num_cpus=max(os.cpu_count() or 1,
                              math.ceil(config.pool.workers * config.pool.cpus_per_worker)))
