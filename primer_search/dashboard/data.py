"""What the dashboard shows, computed from a store: plain JSON-ready dicts, no web code.

Every function reads a store opened read-only (:func:`open_readonly`): the dashboard
never writes to a store, never takes its lease, and never creates a file beside it. The
numbers follow the command line and the figures of ``primer-search plot``:

* the best so far is ranked as ``primer-search top`` ranks (:func:`rank_key`: more hurdle
  stages completed first, then lower fitness), duplicates and failures excluded, one
  point per finished candidate in finishing order;
* non-finite fitness (a failure's worst fitness) is sent as ``None``; the status says why;
* a worker's busy time is what its candidates measured (compile, data wait, training,
  evaluation, recall task), over the span from the first candidate proposed to the last
  finished.
"""

from __future__ import annotations

import difflib
import math
import time
from pathlib import Path
from typing import Any

from primer_search.fitness.hurdles import rank_key
from primer_search.fitness.results import Status
from primer_search.search.store import Store, StoreError

__all__ = ["TOP_N", "candidate_detail", "check_store", "display_names", "open_readonly", "overview"]

TOP_N = 20          # rows of the top table
LATEST_N = 12       # rows of the latest-candidates table
THROUGHPUT_BUCKETS = 40


def open_readonly(path: str | Path) -> Store:
    """The store at ``path`` for one read: ``mode=ro``, and ``immutable`` where no writer
    has it open (see :class:`Store`), so that reading creates no file."""
    return Store(path, readonly=True, idle_immutable=True)


def display_names(paths: list[Path]) -> list[str]:
    """Short names that tell the stores apart: the file name, with as many parent
    folders as it takes to make every name unique."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _finite(x) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _effective_config(store: Store) -> dict:
    """The stored config, read by its version (an old store's flat keys in their sections
    now), with every resume's overrides (limits, workers) applied."""
    from primer_search.search.config import merge
    from primer_search.search.versions import upgrade

    config = upgrade(store.config)
    for resume in store.resumes():
        config = merge(config, upgrade(resume["overrides"]))
    return config


def _stages(row: dict) -> int:
    r = row["result"]
    return r.stages_completed if r is not None else 0


def _metrics(row: dict) -> dict[str, Any]:
    """A finished candidate's metrics, every task's, as the top table shows them."""
    r = row["result"]
    if r is None:
        return {}
    return {
        "perplexity": _finite(r.perplexity), "word_perplexity": _finite(r.word_perplexity),
        "bits_per_byte": _finite(r.bits_per_byte), "train_loss": _finite(r.train_loss),
        "recall_accuracy": _finite(r.recall_accuracy), "recall_loss": _finite(r.recall_loss),
        "context_use": _finite(r.context_use), "steps": r.steps,
        "recall_steps": r.recall_steps, "params": r.num_params,
        "step_ms": _finite(1000 * r.step_time_s) if r.step_time_s else None,
        "tokens_per_s": _finite(r.tokens_per_s) if r.tokens_per_s else None,
        "reason": r.reason,
    }


def _row(row: dict) -> dict[str, Any]:
    return {"id": row["id"], "parent": row["parent_id"], "status": str(row["status"]),
            "fitness": _finite(row["fitness"]), "stages": _stages(row),
            "mutation": row["mutation"], "worker": row["worker"],
            "duplicate_of": row["duplicate_of"], "created_at": row["created_at"],
            "finished_at": row["finished_at"]}


def _rankable(row: dict) -> bool:
    return (row["status"] not in (Status.PENDING, Status.DUPLICATE)
            and _finite(row["fitness"]) is not None)


def _top(rows: list[dict], n: int) -> list[dict]:
    """The ``n`` best, in the order of :meth:`Store.top` (more stages, lower fitness,
    earlier finish)."""
    ranked = sorted((r for r in rows if _rankable(r)),
                    key=lambda r: (*rank_key(r["fitness"], _stages(r)), r["finish_seq"]))
    return [{**_row(r), **_metrics(r)} for r in ranked[:n]]


def _best_so_far(finished: list[dict]) -> list[dict]:
    """After each finished candidate (finishing order), the best one so far."""
    out, best, best_key = [], None, None
    for i, row in enumerate(finished, start=1):
        if _rankable(row):
            key = rank_key(row["fitness"], _stages(row))
            if best_key is None or key < best_key:
                best, best_key = row, key
        out.append({"n": i, "id": best["id"] if best else None,
                    "fitness": best["fitness"] if best else None})
    return out


def _hurdle_stages(rows: list[dict], stages: int) -> dict[str, Any]:
    """How far trained candidates got: for each stage, those that stopped at its hurdle
    (status ``hurdle``) and those that completed it as their last (``ok``: the full
    budget), and the failures, which completed no stage count."""
    deepest = max([stages] + [_stages(r) for r in rows])
    stopped = [0] * deepest
    completed = [0] * deepest
    for r in rows:
        k = _stages(r)
        if k and r["status"] == Status.HURDLE:
            stopped[k - 1] += 1
        elif k and r["status"] == Status.OK:
            completed[k - 1] += 1
    reached = [sum(1 for r in rows if r["status"] in (Status.OK, Status.HURDLE)
                   and _stages(r) >= k) for k in range(1, deepest + 1)]
    return {"stages": deepest, "stopped": stopped, "completed": completed, "reached": reached}


def _busy_s(row: dict) -> float:
    r = row["result"]
    if r is None or row["status"] == Status.DUPLICATE:
        return 0.0
    return sum(x for x in (r.compile_s, r.data_wait_s, r.train_s, r.eval_s, r.recall_s)
               if math.isfinite(x))


def _throughput(rows: list[dict], finished: list[dict]) -> dict[str, Any]:
    """Candidates finished (and trained: ``ok`` or ``hurdle``) per bucket of time since
    the first candidate was proposed; rates per minute overall."""
    if not finished:
        return {"t0": rows[0]["created_at"] if rows else None, "bucket_s": None,
                "finished": [], "trained": [], "per_minute": None, "trained_per_minute": None}
    t0 = min(r["created_at"] for r in rows)
    t1 = max(r["finished_at"] for r in finished)
    span = max(t1 - t0, 1e-9)
    bucket = _nice_bucket(span / THROUGHPUT_BUCKETS)
    n = int(span // bucket) + 1
    done, trained = [0] * n, [0] * n
    for r in finished:
        i = min(n - 1, int((r["finished_at"] - t0) // bucket))
        done[i] += 1
        if r["status"] in (Status.OK, Status.HURDLE):
            trained[i] += 1
    return {"t0": t0, "bucket_s": bucket, "finished": done, "trained": trained,
            "per_minute": 60 * len(finished) / span,
            "trained_per_minute": 60 * sum(trained) / span}


def _nice_bucket(seconds: float) -> float:
    for b in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800,
              86400):
        if seconds <= b:
            return float(b)
    return 86400.0 * math.ceil(seconds / 86400)


def _workers(rows: list[dict], finished: list[dict], configured) -> dict[str, Any]:
    """Per worker (its name as the pool recorded it): candidates, busy seconds and the
    share of the search's span they make up."""
    per: dict[str, dict] = {}
    for r in finished:
        if r["worker"] is None:      # duplicates are settled by the driver, not a worker
            continue
        w = per.setdefault(r["worker"], {"worker": r["worker"], "node": r["node"],
                                         "candidates": 0, "busy_s": 0.0})
        w["candidates"] += 1
        w["busy_s"] += _busy_s(r)
    span = (max(r["finished_at"] for r in finished) - min(r["created_at"] for r in rows)
            if finished else 0.0)
    for w in per.values():
        w["share"] = w["busy_s"] / span if span > 0 else None
    busy = sum(w["busy_s"] for w in per.values())
    return {"configured": configured, "in_flight": sum(r["status"] == Status.PENDING for r in rows),
            "span_s": span, "busy_s": busy,
            "use": busy / (span * configured) if span > 0 and configured else None,
            "per_worker": sorted(per.values(), key=lambda w: w["worker"])}


def overview(store: Store, name: str = "") -> dict[str, Any]:
    """Everything the page shows of one store but a single program."""
    config = _effective_config(store)
    rows = store.summaries()
    finished = sorted((r for r in rows if r["status"] != Status.PENDING),
                      key=lambda r: r["finish_seq"])
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    stages = ((config.get("fitness") or {}).get("budget") or {}).get("stages", 1)
    evolution = config.get("evolution") or {}
    best = _best_so_far(finished)
    top = _top(rows, TOP_N)
    last_change = max([r["created_at"] for r in rows] + [r["finished_at"] for r in finished],
                      default=None)
    return {
        "name": name or store.path.name, "path": str(store.path.resolve()),
        "token": list(store.change_token()),
        "config": {"evaluator": config.get("evaluator", "train"),
                   "workers": config.get("pool", {}).get("workers"),
                   "max_candidates": config.get("limits", {}).get("max_candidates"),
                   "population_size": evolution.get("population_size"),
                   "stages": stages,
                   "budget": (config.get("fitness") or {}).get("budget")},
        "counts": {"total": len(rows), "finished": len(finished),
                   "pending": by_status.get("pending", 0), "by_status": by_status},
        "best": top[0] if top else None,
        "best_so_far": best,
        "candidates": [{"id": r["id"], "status": str(r["status"]), "fitness": _finite(r["fitness"]),
                        "stages": _stages(r), "order": i}
                       for i, r in enumerate(finished, start=1)],
        "stages": _hurdle_stages(rows, stages),
        "top": top,
        "latest": [_row(r) for r in rows[-LATEST_N:][::-1]],
        "throughput": _throughput(rows, finished),
        "workers": _workers(rows, finished, config.get("pool", {}).get("workers")),
        "last_change": last_change,
        "read_at": time.time(),
    }


def candidate_detail(store: Store, cid: int) -> dict[str, Any]:
    """One candidate: its metrics, its program as code, the unified diff from its
    parent's program and its lineage up to its seed."""
    chain = store.lineage(cid)       # a StoreError names a candidate that is not there
    c = chain[0]
    parent = chain[1] if len(chain) > 1 else None
    row = {"id": c.id, "parent_id": c.parent_id, "mutation": c.mutation, "status": c.status,
           "fitness": c.fitness, "result": c.result, "duplicate_of": c.duplicate_of,
           "worker": c.worker, "node": c.node, "created_at": c.created_at,
           "finished_at": c.finished_at}
    diff = list(difflib.unified_diff(parent.dna_text.splitlines(), c.dna_text.splitlines(),
                                     f"#{parent.id}", f"#{c.id}", lineterm="", n=2)) \
        if parent is not None else []
    r = c.result
    return {
        **_row(row), **_metrics(row), "kind": c.kind,
        "stage_fitness": [_finite(x) for x in r.stage_fitness] if r else [],
        "position_loss": [_finite(x) for x in r.position_loss] if r else [],
        "code": c.dna_text, "diff": diff,
        "lineage": [{"id": a.id, "status": str(a.status), "fitness": _finite(a.fitness),
                     "stages": a.result.stages_completed if a.result else 0,
                     "mutation": a.mutation} for a in chain],
    }


def check_store(path: str | Path) -> Path:
    """``path`` if it is a store this version reads; a :class:`StoreError` in one line
    otherwise (missing, a folder, not SQLite, not a primer-search store)."""
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"{p} is a folder, not a primer-search store (give the .sqlite file)")
    with open_readonly(p):
        pass
    return p
