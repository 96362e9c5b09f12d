"""Search throughput: candidates per hour by worker layout, controller overhead, dedup.

Runs short real searches (the tiny_cpu config, PTB training) with

* 1 worker on 1 core,
* 2 workers on 1 core each,
* 1 worker given both cores (JAX threads = 2),
* the last two again with two candidates per worker (one compiles while one trains),

or, with ``--gpu``, the gpu_small config on one GPU: one worker, one worker holding two
candidates, and two workers sharing the GPU (0.5 each, with and without two candidates
each). ``--config`` names another search config and ``--set`` overrides its keys (for
example ``--set fitness.budget.seconds=10`` for a shorter run). It reports
candidates/hour (finished candidates, duplicates included, and trained ones alone), the
loop's own time per candidate (proposal, mutation, validation,
fingerprint, store writes) as a share of the workers' evaluation time, and the dedup hit
rate. Each layout starts a fresh Ray and a fresh store.

``--ceiling`` measures instead ``loop_ceiling_per_s``: how many candidates per
second one search loop sustains when workers cost nothing (an instant pool: the toy
fitness, and a stand-in fingerprint that hashes the canonical program, so that dedup
still runs its store queries). It is the loop's own cost per candidate (proposal,
mutation, validation, dedup, store writes, evolution, hurdles) and bounds how many
workers one controller can keep busy; fingerprints and training run in the pool.

    python benchmarks/search_throughput.py [--candidates 24] [--json] [--toy]
    python benchmarks/search_throughput.py --gpu [--candidates 24] [--set KEY=VALUE]
    python benchmarks/search_throughput.py --ceiling [--candidates 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

LAYOUTS = [("1 worker x 1 core",
            ["pool.workers=1", "pool.cpus_per_worker=1.0", "pool.threads_per_worker=1"]),
           ("2 workers x 1 core",
            ["pool.workers=2", "pool.cpus_per_worker=1.0", "pool.threads_per_worker=1"]),
           ("1 worker x 2 cores",
            ["pool.workers=1", "pool.cpus_per_worker=2.0", "pool.threads_per_worker=2"]),
           ("1 worker x 2 cores, 2 cand", ["pool.workers=1", "pool.cpus_per_worker=2.0",
                                           "pool.threads_per_worker=2", "pool.candidates_per_worker=2"]),
           ("2 workers x 1 core, 2 cand", ["pool.workers=2", "pool.cpus_per_worker=1.0",
                                           "pool.threads_per_worker=1", "pool.candidates_per_worker=2"])]

# One GPU: a worker holds the whole GPU, or two share it (each pre-allocates its part of
# the memory, see ray_pool.actor_options); each has the config's cpus_per_worker.
GPU_LAYOUTS = [("1 worker x 1 GPU", ["pool.workers=1", "pool.gpus_per_worker=1.0"]),
               ("1 worker x 1 GPU, 2 cand", ["pool.workers=1", "pool.gpus_per_worker=1.0",
                                             "pool.candidates_per_worker=2"]),
               ("2 workers x 0.5 GPU", ["pool.workers=2", "pool.gpus_per_worker=0.5"]),
               ("2 workers x 0.5 GPU, 2 cand", ["pool.workers=2", "pool.gpus_per_worker=0.5",
                                                "pool.candidates_per_worker=2"])]


def layout_config(overrides, candidates, toy, config="tiny_cpu", sets=()):
    """The search config of one layout: ``config`` with the layout's ``overrides``, this
    benchmark's small population, and the user's ``sets`` last (they win)."""
    from primer_search.search.config import load_config

    extra = [f"limits.max_candidates={candidates}", "evolution.population_size=8",
             "evolution.tournament_size=3", "seeding.blocks=['transformer', 'primer_ez']"]
    if toy:
        extra += ["evaluator='toy'", "pool.toy_sleep_s=2.0"]
    return load_config(config, list(overrides) + extra + list(sets))


def run_layout(name, overrides, candidates, toy, tmp, config="tiny_cpu", sets=(),
               num_cpus=2):
    """One short search of ``layout_config(...)`` on a fresh local Ray with ``num_cpus``
    cores (None: the machine's, GPUs found by Ray) and a fresh store."""
    import ray

    from primer_search.search.controller import run_search
    from primer_search.search.store import Store

    cfg = layout_config(overrides, candidates, toy, config, sets)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    path = Path(tmp) / f"{name.replace(' ', '_')}.sqlite"
    try:
        start = time.time()
        s = run_search(cfg, path, progress=False)
        wall = time.time() - start
    finally:
        ray.shutdown()
    with Store(path, readonly=True) as store:
        train_s = sum(c.result.train_s for c in store.finished()
                      if c.result is not None and c.status != "duplicate")
    hours = wall / 3600
    return {"layout": name, "finished": s.finished, "trained": s.trained,
            "duplicates": s.duplicates, "failed": s.failed, "wall_s": round(wall, 1),
            "candidates_per_hour": round(s.finished / hours, 1),
            "trained_per_hour": round(s.trained / hours, 1),
            "loop_s_per_candidate": round(s.loop_s / max(s.finished, 1), 3),
            "loop_share": round(s.loop_s / max(s.evaluation_s, 1e-9), 4),
            "dedup_hit_rate": round(s.duplicates / max(s.finished, 1), 3),
            # The share of the workers' wall-clock time spent in training steps (a worker
            # trains one candidate at a time, however many it holds).
            "busy_fraction": round(train_s / (cfg.pool.workers * wall), 3),
            "best_fitness": s.best_fitness}


class InstantPool:
    """Workers that cost nothing: ``size`` slots answered at the next wait with the toy
    fitness; fingerprints answered with a hash of the canonical program."""

    def __init__(self, size: int):
        from primer_search.fitness.toy import ToyEvaluator

        self.size = size
        self.evaluator = ToyEvaluator()
        self.jobs, self.probes = [], []

    def available(self, slot):
        return True

    def submit(self, slot, job):
        self.jobs.append((slot, job))

    def fingerprint(self, cid, dna, d_model):
        self.probes.append((cid, dna))

    def wait(self, timeout_s):
        from primer_search.program.validate import dna_hash
        from primer_search.search.pool import Fingerprinted, answer

        out = [(None, Fingerprinted(cid, "h" + dna_hash(dna))) for cid, dna in self.probes]
        out += [(slot, answer(self.evaluator, job, f"instant{slot}")) for slot, job in self.jobs]
        self.jobs, self.probes = [], []
        return out

    def replace(self, slot):
        pass

    def close(self):
        pass


def loop_ceiling(candidates: int, workers: int, tmp) -> dict:
    """Candidates per second of the search loop alone (see the module doc)."""
    from primer_search.search.config import load_config
    from primer_search.search.loop import SearchLoop
    from primer_search.search.store import Store

    cfg = load_config("tiny_cpu", ["evaluator='toy'", "fitness.budget.stages=1",
                                   f"limits.max_candidates={candidates}", "limits.keep_weights=0",
                                   f"pool.workers={workers}"])
    with Store(Path(tmp) / "ceiling.sqlite", {}) as store:
        loop = SearchLoop(cfg, store, InstantPool(workers))
        start = time.perf_counter()
        s = loop.run()
        wall = time.perf_counter() - start
    return {"candidates": s.finished, "workers": workers, "wall_s": round(wall, 2),
            "loop_ceiling_per_s": round(s.finished / wall, 1),
            "ms_per_candidate": round(1000 * wall / max(s.finished, 1), 2),
            "dedup_hit_rate": round(s.duplicates / max(s.finished, 1), 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=None,
                   help="per layout (default 24), or for --ceiling (default 2000)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--toy", action="store_true",
                   help="toy evaluator sleeping 2 s instead of training (machinery only)")
    p.add_argument("--ceiling", action="store_true",
                   help="the search loop's own candidates per second (no Ray, instant workers)")
    p.add_argument("--workers", type=int, default=64, help="slots of the instant pool (--ceiling)")
    p.add_argument("--layouts", default=None,
                   help="comma-separated layout numbers to run, from 1 (default: all)")
    p.add_argument("--gpu", action="store_true",
                   help="the GPU layouts (one GPU, one or two workers) with gpu_small")
    p.add_argument("--config", default=None,
                   help="search config to run (default tiny_cpu, with --gpu gpu_small)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the config (repeatable)")
    args = p.parse_args(argv)
    if args.ceiling:
        with tempfile.TemporaryDirectory() as tmp:
            row = loop_ceiling(args.candidates or 2000, args.workers, tmp)
        if args.json:
            print(json.dumps(row, indent=1))
        else:
            print("search loop alone, toy fitness, instant workers")
            for k, v in row.items():
                print(f"  {k:<26} {v}")
        return
    args.candidates = args.candidates or 24
    layouts = GPU_LAYOUTS if args.gpu else LAYOUTS
    config = args.config or ("gpu_small" if args.gpu else "tiny_cpu")
    with tempfile.TemporaryDirectory() as tmp:
        chosen = [layouts[int(k) - 1] for k in args.layouts.split(",")] if args.layouts \
            else layouts
        rows = [run_layout(n, o, args.candidates, args.toy, tmp, config, args.sets,
                           None if args.gpu else 2) for n, o in chosen]
    base = rows[0]["trained_per_hour"] or 1e-9
    for r in rows:
        r["speedup_trained_vs_1x1"] = round(r["trained_per_hour"] / base, 2)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{config} search" + (f" ({', '.join(args.sets)})" if args.sets else "")
          + f", {args.candidates} candidates per layout"
          + (" (toy evaluator)" if args.toy else " (real PTB training)"))
    cols = ["layout", "finished", "trained", "wall_s", "candidates_per_hour",
            "trained_per_hour", "speedup_trained_vs_1x1", "loop_share", "dedup_hit_rate",
            "busy_fraction"]
    print("  ".join(f"{c:>22}" if i else f"{c:<20}" for i, c in enumerate(cols)))
    for r in rows:
        print("  ".join(f"{str(r[c]):>22}" if i else f"{r[c]:<20}" for i, c in enumerate(cols)))


if __name__ == "__main__":
    main()
