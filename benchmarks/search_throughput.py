"""Search throughput: candidates per hour by worker layout, controller overhead, dedup.

Runs short real searches (the tiny_cpu config, PTB training) with

* 1 worker on 1 core,
* 2 workers on 1 core each,
* 1 worker given both cores (JAX threads = 2),

and reports candidates/hour (finished candidates, duplicates included, and trained ones
alone), the controller's own time per candidate (proposal, mutation, validation,
fingerprint, store writes) as a share of the workers' evaluation time, and the dedup hit
rate. Each layout starts a fresh Ray and a fresh store.

    python benchmarks/search_throughput.py [--candidates 24] [--json] [--toy]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

LAYOUTS = [("1 worker x 1 core", ["workers=1", "cpus_per_worker=1.0", "threads_per_worker=1"]),
           ("2 workers x 1 core", ["workers=2", "cpus_per_worker=1.0", "threads_per_worker=1"]),
           ("1 worker x 2 cores", ["workers=1", "cpus_per_worker=2.0", "threads_per_worker=2"])]


def run_layout(name, overrides, candidates, toy, tmp):
    import ray

    from primer_search.search.config import load_config
    from primer_search.search.controller import run_search

    extra = [f"max_candidates={candidates}", "evolution.population_size=8",
             "evolution.tournament_size=3", "seeds=['transformer', 'primer_ez']"]
    if toy:
        extra += ["evaluator='toy'", "toy_sleep_s=2.0"]
    cfg = load_config("tiny_cpu", overrides + extra)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        start = time.time()
        s = run_search(cfg, Path(tmp) / f"{name.replace(' ', '_')}.sqlite", progress=False)
        wall = time.time() - start
    finally:
        ray.shutdown()
    hours = wall / 3600
    return {"layout": name, "finished": s.finished, "trained": s.trained,
            "duplicates": s.duplicates, "failed": s.failed, "wall_s": round(wall, 1),
            "candidates_per_hour": round(s.finished / hours, 1),
            "trained_per_hour": round(s.trained / hours, 1),
            "controller_s_per_candidate": round(s.controller_s / max(s.finished, 1), 3),
            "controller_share": round(s.controller_s / max(s.evaluation_s, 1e-9), 4),
            "dedup_hit_rate": round(s.duplicates / max(s.finished, 1), 3),
            "best_fitness": s.best_fitness}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=24)
    p.add_argument("--json", action="store_true")
    p.add_argument("--toy", action="store_true",
                   help="toy evaluator sleeping 2 s instead of training (machinery only)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_layout(n, o, args.candidates, args.toy, tmp) for n, o in LAYOUTS]
    base = rows[0]["trained_per_hour"] or 1e-9
    for r in rows:
        r["speedup_trained_vs_1x1"] = round(r["trained_per_hour"] / base, 2)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"tiny_cpu search, {args.candidates} candidates per layout"
          + (" (toy evaluator)" if args.toy else " (real PTB training)"))
    cols = ["layout", "finished", "trained", "wall_s", "candidates_per_hour",
            "trained_per_hour", "speedup_trained_vs_1x1", "controller_share", "dedup_hit_rate"]
    print("  ".join(f"{c:>22}" if i else f"{c:<20}" for i, c in enumerate(cols)))
    for r in rows:
        print("  ".join(f"{str(r[c]):>22}" if i else f"{r[c]:<20}" for i, c in enumerate(cols)))


if __name__ == "__main__":
    main()
