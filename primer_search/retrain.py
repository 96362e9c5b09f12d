"""Final selection: retrain the best candidates longer, with several seeds.

A short, noisy search budget flatters lucky candidates, so the Primer paper retrained its
top 100 to pick the winner (So et al. 2021, Sec. 3). ``retrain`` takes the top K of a
store by search fitness, trains each with ``seeds`` training seeds under a new budget,
and records every run in the same store as a ``retrain`` row whose parent is the
candidate. ``primer-search top STORE --retrained`` ranks by the mean over seeds.

Runs in this process, one after another (it is K x seeds evaluations, not a search).
Already finished (candidate, seed) pairs are skipped, so an interrupted retrain resumes.
"""

from __future__ import annotations

import socket
from typing import Callable

from primer_search.fitness.config import BudgetConfig
from primer_search.fitness.results import Status
from primer_search.search.config import config_from_dict
from primer_search.search.store import Store

__all__ = ["retrain"]


def retrain(store_path, top: int, seeds: int, steps: int | None = None,
            seconds: float | None = None,
            on_result: Callable[[int, int, object], None] | None = None) -> list[dict]:
    """Retrain the ``top`` candidates with ``seeds`` seeds each; return the summary rows
    (``Store.retrain_summary``). The budget defaults to the search's, in one stage."""
    with Store(store_path) as store:
        cfg = config_from_dict(store.config, source=f"{store_path} (stored config)")
        old = cfg.fitness.budget
        budget = BudgetConfig(steps=steps if steps or seconds else old.steps,
                              seconds=seconds, stages=1, timeout_s=old.timeout_s)
        done = {(c.parent_id, c.seed) for c in store.finished(kind="retrain")}
        stale = {(c.parent_id, c.seed): c.id for c in store.all()
                 if c.kind == "retrain" and c.status == Status.PENDING}
        evaluator = None
        for cand in store.top(top):
            for seed in range(seeds):
                if (cand.id, seed) in done:
                    continue
                if evaluator is None:  # loads the data: only when there is work
                    from primer_search.fitness.evaluate import Evaluator

                    evaluator = Evaluator(cfg.fitness)
                cid = stale.get((cand.id, seed)) or store.add(
                    dna=cand.dna, parent_id=cand.id, mutation=f"retrain of {cand.id}",
                    dna_hash=cand.dna_hash, fingerprint=cand.fingerprint, kind="retrain",
                    seed=seed)
                result, _ = evaluator.evaluate(cand.dna, seed=seed, budget=budget)
                store.finish(cid, result, worker="retrain", node=socket.gethostname())
                if on_result:
                    on_result(cand.id, seed, result)
        return store.retrain_summary()
