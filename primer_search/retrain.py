"""Final selection: retrain the best candidates longer, with several seeds.

A short, noisy search budget flatters lucky candidates, so the Primer paper retrained its
top 100 to pick the winner (So et al. 2021, Sec. 3). ``retrain`` takes the top K of a
store by search fitness, trains each with ``seeds`` training seeds under a new budget,
and records every run in the same store as a ``retrain`` row whose parent is the
candidate. ``primer-search top STORE --retrained`` ranks by the mean over seeds.

Runs on a :class:`~primer_search.search.pool.WorkerPool`: by default one slot in this
process (in a child process when there is a time-out, so that a hung run can be ended),
or the search's Ray workers. Runs are dispatched as the search's candidates are
(:func:`~primer_search.search.dispatch.run_jobs`): every slot is kept busy, a run whose
worker died is sent again up to ``limits.max_retries`` times, and a run past the per-run
time-out has its worker replaced and is recorded as ``timeout``; the others go on.
Already finished (candidate, seed) pairs are skipped, so an interrupted retrain resumes;
a retrain holds the store's writer lease while it runs.

:func:`climb_ladder` is final selection up a ladder of larger settings (the config's
``[ladder]``, :mod:`primer_search.search.ladder`): each rung trains the best of the rung
below (successive halving), every run is a ``retrain`` row named by its rung
(``"rung 2: NAME"``), and :func:`~primer_search.search.ladder.ladder_results` reads them
back by candidate, rung and seed for ``top --ladder`` and ``show``.

The trained weights of the best seed of each candidate under each budget are kept in
``STORE.weights/retrained/ROW.msgpack`` (ROW: the retrain row's id);
:func:`best_retrained_weights` finds them for ``primer-search export --retrained``.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Callable

from primer_search.fitness.config import BudgetConfig
from primer_search.fitness.results import EvalResult, Status
from primer_search.search.config import SearchConfig, config_from_dict, rung_fitness
from primer_search.search.dispatch import run_jobs
from primer_search.search.ladder import LadderConfig, check_rung_settings, promote, rung_label, rung_results
from primer_search.search.loop import save_weights, weights_folder
from primer_search.search.pool import Done, Job, WorkerPool
from primer_search.search.store import Candidate, Store
from primer_search.stats import RetrainSummary, summarise_retrains

__all__ = ["best_retrained_weights", "budget_label", "climb_ladder", "make_pool", "retrain",
           "retrain_timeout", "retrained_weights_folder", "rung_timeout", "train_at_rung"]


def retrained_weights_folder(store_path) -> Path:
    """Where retraining keeps weights: ``STORE.weights/retrained/``, one ``ROW.msgpack``
    for the best seed of each (candidate, budget)."""
    return weights_folder(store_path) / "retrained"


def _keep_best_seed(store: Store, row: Candidate, weights: bytes) -> None:
    """Write ``row``'s weights if it is the best finished seed of its candidate under its
    budget, and delete the files of the seeds it beat. Called after the row is stored."""
    folder = retrained_weights_folder(store.path)
    siblings = [c for c in store.retrain_rows(store.retrain_budget(row.id))
                if c.parent_id == row.parent_id and c.fitness is not None
                and c.status == Status.OK]
    best = min(siblings, key=lambda c: (c.fitness, c.id), default=None)
    if best is None or best.id != row.id:
        return
    save_weights(folder, row.id, weights)
    for other in siblings:
        if other.id != row.id:
            (folder / f"{other.id}.msgpack").unlink(missing_ok=True)


def best_retrained_weights(store_path, candidate_id: int) -> tuple[Candidate, Path] | None:
    """The retrain row of ``candidate_id`` with kept weights and the lowest fitness (in
    practice: the best seed of the longest budget), and its weights file; None if no
    retraining of it kept weights."""
    folder = retrained_weights_folder(store_path)
    with Store(store_path, readonly=True) as store:
        rows = [c for c in store.retrain_rows() if c.parent_id == candidate_id
                and c.fitness is not None and (folder / f"{c.id}.msgpack").exists()]
    if not rows:
        return None
    best = min(rows, key=lambda c: (c.fitness, c.id))
    return best, folder / f"{best.id}.msgpack"


def budget_label(budget: BudgetConfig) -> str:
    """How a retrain's budget is named in the store: "3000 steps", "600 s" or
    "3000 steps or 600 s" (whichever ends first)."""
    parts = []
    if budget.steps is not None:
        parts.append(f"{budget.steps} steps")
    if budget.seconds is not None:
        parts.append(f"{budget.seconds:g} s")
    return " or ".join(parts)


def retrain_timeout(search_timeout_s: float | None, search: BudgetConfig,
                    budget: BudgetConfig) -> float | None:
    """The per-run time-out of a retrain: the search's ``candidate_timeout_s`` scaled by
    how much longer the retraining budget is (steps over steps, or seconds over
    seconds); None when the search had none."""
    if search_timeout_s is None:
        return None
    ratios = [new / old for new, old in ((budget.steps, search.steps),
                                         (budget.seconds, search.seconds))
              if new is not None and old]
    return search_timeout_s * max([1.0, *ratios])


def make_pool(cfg: SearchConfig, workers: int, address: str | None,
               timeout_s: float | None) -> WorkerPool:
    """Where retraining runs: ``workers`` > 0 Ray workers with the search's resources each
    (on the cluster at ``address``, or the search's), else one slot in a child process
    when there is a time-out (so that a hung run can be ended), else in this process."""
    if workers > 0:
        from primer_search.search.ray_pool import RayPool, init_ray

        cfg = dataclasses.replace(cfg, pool=dataclasses.replace(
            cfg.pool, workers=workers, address=address or cfg.pool.address))
        init_ray(cfg)
        return RayPool(cfg)
    if timeout_s is not None:
        from primer_search.search.pool import ProcessPool

        return ProcessPool((cfg.fitness, cfg.evaluator, cfg.pool.toy_sleep_s), name="retrain")
    from primer_search.search.pool import InProcessPool, make_evaluator

    return InProcessPool(make_evaluator(cfg.fitness, cfg.evaluator, cfg.pool.toy_sleep_s),
                         name="retrain")


def retrain(store_path, top: int, seeds: int, steps: int | None = None,
            seconds: float | None = None,
            on_result: Callable[[int, int, object], None] | None = None,
            pool: WorkerPool | None = None, workers: int = 0,
            address: str | None = None, timeout_s: float | None = None) -> list[RetrainSummary]:
    """Retrain the ``top`` candidates with ``seeds`` seeds each; return the summaries
    of this budget, best first (:func:`~primer_search.stats.summarise_retrains`). The
    budget defaults to the search's, in one stage. Runs are keyed by candidate, seed and
    budget: retraining longer adds runs.
    ``pool``: where to train; else ``workers`` > 0 Ray workers with the search's resources
    per worker (on the cluster at ``address``, or the search's), else one slot in this
    process (a child process when a time-out applies). ``timeout_s``: a run's time limit
    (default: :func:`retrain_timeout` of the search's ``candidate_timeout_s``). A pool is
    only started, and the data only loaded, if there is work."""
    with Store(store_path) as store:
        cfg = config_from_dict(store.config, source=f"{store_path} (stored config)")
        old = cfg.fitness.budget
        budget = BudgetConfig(steps=steps if steps or seconds else old.steps,
                              seconds=seconds, stages=1, timeout_s=old.timeout_s)
        label = budget_label(budget)
        if timeout_s is None:
            timeout_s = retrain_timeout(cfg.limits.candidate_timeout_s, old, budget)
        rows = store.retrain_rows(label)
        done = {(c.parent_id, c.seed) for c in rows if c.status != Status.PENDING}
        stale = {(c.parent_id, c.seed): c.id for c in rows if c.status == Status.PENDING}
        jobs, parents = [], {}
        for cand in store.top(top):
            for seed in range(seeds):
                if (cand.id, seed) in done:
                    continue
                cid = stale.get((cand.id, seed)) or store.add(
                    dna=cand.dna, parent_id=cand.id,
                    mutation=f"retrain of {cand.id} for {label}", dna_hash=cand.dna_hash,
                    fingerprint=cand.fingerprint, kind="retrain", seed=seed, budget=label)
                jobs.append(Job(cid, cand.dna, seed=seed, budget=budget, want_weights=True))
                parents[cid] = cand.id
        if not jobs:
            return summarise_retrains(store.retrain_runs(label))
        owned = pool is None
        if pool is None:
            pool = make_pool(cfg, workers, address, timeout_s)

        def save(job: Job, done: Done) -> None:
            store.finish(job.cid, done.result, worker=done.worker or "retrain",
                         node=done.node or socket.gethostname())
            if done.weights is not None:
                _keep_best_seed(store, store.get(job.cid), done.weights)
            if on_result:
                on_result(parents[job.cid], job.seed, done.result)

        try:
            run_jobs(pool, jobs, on_done=save, max_retries=cfg.limits.max_retries, timeout_s=timeout_s)
        finally:
            if owned:
                pool.close()
        return summarise_retrains(store.retrain_runs(label))


# ---------------------------------------------------------------------------------------
# The ladder

def rung_timeout(search_timeout_s: float | None, search, rung) -> float | None:
    """A rung's per-run time-out: the search's ``candidate_timeout_s`` scaled by how much
    more a run of the rung computes (steps, tokens per step, and width squared: a
    generous bound, since it only ends runs that hang). None when the search had none."""
    if search_timeout_s is None:
        return None
    ratio = 1.0
    if search.budget.steps and rung.budget.steps:
        ratio *= rung.budget.steps / search.budget.steps
    if search.budget.seconds and rung.budget.seconds:
        ratio *= rung.budget.seconds / search.budget.seconds
    ratio *= (rung.data.seq_len * rung.data.batch_size) / (
        search.data.seq_len * search.data.batch_size)
    ratio *= (rung.model.d_model / search.model.d_model) ** 2
    ratio *= rung.model.num_layers / search.model.num_layers
    return search_timeout_s * max(1.0, ratio)


def climb_ladder(store_path, ladder: LadderConfig | None = None,
                 on_result: Callable[[str, int, int, EvalResult], None] | None = None,
                 workers: int = 0, address: str | None = None,
                 pool_for: Callable[[SearchConfig, float | None], WorkerPool] | None = None
                 ) -> list[dict]:
    """Final selection up ``ladder`` (default: the stored config's ``[ladder]``): rung 1
    trains the search's best ``rungs[0].candidates``, each later rung the best of the one
    below by mean fitness over its seeds, plus the seed blocks at every rung when
    ``include_seeds``. Finished (candidate, rung, seed) runs are kept, so an interrupted
    climb resumes. Returns :func:`ladder_results` with ``entrants`` (the ids trained at
    each rung, in entry order) and ``promoted`` (those it sends up) added; the winner is
    the first of the top rung's ``candidates`` that is not a seed copy.

    ``on_result(label, candidate_id, seed, result)`` hears of each run as it ends.
    ``pool_for(config, timeout_s)`` makes the pool of a rung (its config's fitness is the
    rung's); the default is that of :func:`retrain`: ``workers`` Ray workers, or one slot
    in this process (a child process when a time-out applies)."""
    with Store(store_path) as store:
        cfg = config_from_dict(store.config, source=f"{store_path} (stored config)")
        ladder = ladder or cfg.ladder
        if not ladder.rungs:
            raise ValueError(
                f"{store_path}: the search's config has no ladder ([[ladder.rungs]]); give "
                "one with --ladder-from CONFIG, or set it when the search starts")
        for index, rung in enumerate(ladder.rungs):  # every rung valid before any trains
            check_rung_settings(store, rung_label(index + 1, rung.name), rung_fitness(cfg, rung))
        seeds = [c.id for c in store.seed_copies()] if ladder.include_seeds else []
        entrants = [c.id for c in store.top(ladder.rungs[0].candidates + len(seeds))
                    if c.id not in seeds][:ladder.rungs[0].candidates]
        climbed = []
        for index, rung in enumerate(ladder.rungs):
            if index > 0:
                below = climbed[-1]
                scores = {cid: below["candidates"][cid]["fitnesses"]
                          for cid in below["entrants"] if cid in below["candidates"]}
                entrants = promote(scores, rung.candidates, below["entrants"])
                below["promoted"] = entrants
            label = rung_label(index + 1, rung.name)
            fitness = rung_fitness(cfg, rung)
            rung_cfg = dataclasses.replace(cfg, fitness=fitness)
            train_at_rung(store, rung_cfg, label, entrants + seeds, rung.seeds,
                          rung_timeout(cfg.limits.candidate_timeout_s, cfg.fitness, fitness),
                          on_result, pool_for or (lambda c, t: make_pool(c, workers, address, t)))
            result = rung_results(store, index + 1, rung.name)
            result["entrants"] = entrants
            result["seed_copies"] = seeds
            climbed.append(result)
        climbed[-1]["promoted"] = promote(
            {cid: climbed[-1]["candidates"][cid]["fitnesses"] for cid in entrants
             if cid in climbed[-1]["candidates"]}, 1, entrants)
        return climbed


def train_at_rung(store: Store, cfg: SearchConfig, label: str, ids: list[int], seeds: int,
                  timeout_s: float | None, on_result, pool_for) -> None:
    """Train candidates ``ids`` with ``seeds`` seeds each under ``cfg.fitness`` (one
    rung's), as ``retrain`` rows named ``label``; finished runs are skipped, stale pending
    ones reused. ``pool_for(cfg, timeout_s)`` makes the pool. The ladder calls it with the
    rung's label; the efficacy benchmark, to measure a rung's fidelity, with another."""
    rows = store.retrain_rows(label)
    done = {(c.parent_id, c.seed) for c in rows if c.status != Status.PENDING}
    stale = {(c.parent_id, c.seed): c.id for c in rows if c.status == Status.PENDING}
    jobs, parents = [], {}
    for cid in ids:
        cand = store.get(cid)
        for seed in range(seeds):
            if (cid, seed) in done:
                continue
            row = stale.get((cid, seed)) or store.add(
                dna=cand.dna, parent_id=cid, mutation=f"{label} of {cid}",
                dna_hash=cand.dna_hash, fingerprint=cand.fingerprint, kind="retrain",
                seed=seed, budget=label)
            jobs.append(Job(row, cand.dna, seed=seed))
            parents[row] = cid
    if not jobs:
        return
    pool = pool_for(cfg, timeout_s)

    def save(job: Job, done: Done) -> None:
        store.finish(job.cid, done.result, worker=done.worker or "retrain",
                     node=done.node or socket.gethostname())
        if on_result:
            on_result(label, parents[job.cid], job.seed, done.result)

    try:
        run_jobs(pool, jobs, on_done=save, max_retries=cfg.limits.max_retries, timeout_s=timeout_s)
    finally:
        pool.close()
