"""Hurdles on a real search: the compute they save, and the good candidates they cut.

Runs a real search (the tiny_cpu config by default: PTB, Ray workers, regularized
evolution, hurdles as configured), then:

* **compute saved**: training steps the search spent against the steps it would have
  spent training every evaluated candidate to the end (failures cost what they ran in
  both), next to the expected saving of the stage split at the configured pass rate;
* **good candidates cut**: trains a random sample of the candidates stopped at a hurdle
  to the full budget, with the seed the search used (training is deterministic on the
  CPU, so each rerun first reproduces the stage fitness the search saw, to 1e-3; this is
  checked), and ranks them with every candidate that finished: how many of the top 10
  by full-budget fitness had been stopped, in the sample and extrapolated to all
  stopped candidates.

    python benchmarks/hurdles.py [--config tiny_cpu] [--candidates 40] [--sample 10]
                                 [--set KEY=VALUE ...] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

TOP = 10


def run_search_for(config_name: str, overrides: list[str], store: Path):
    import ray

    from primer_search.search.config import load_config
    from primer_search.search.controller import run_search

    cfg = load_config(config_name, overrides)
    ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
             logging_level="WARNING", log_to_driver=False)
    try:
        start = time.time()
        summary = run_search(cfg, store, progress=False)
        return cfg, summary, time.time() - start
    finally:
        ray.shutdown()


def analyse(cfg, store_path: Path, sample: int, seed: int = 0) -> dict:
    from primer_search.fitness.evaluate import Evaluator
    from primer_search.fitness.hurdles import expected_cost
    from primer_search.fitness.results import Status
    from primer_search.search.store import Store

    budget = cfg.fitness.budget
    with Store(store_path, readonly=True) as store:
        evaluated = [c for c in store.finished() if c.status != "duplicate"]
    spent = sum(c.result.steps for c in evaluated)
    full = sum(c.result.steps if c.result.failed else budget.steps for c in evaluated)
    stopped = [c for c in evaluated if c.status == Status.HURDLE]
    finished = [c for c in evaluated if c.status == Status.OK]

    chosen = random.Random(seed).sample(stopped, min(sample, len(stopped)))
    evaluator = Evaluator(cfg.fitness)
    retrained, mismatches = {}, []
    for c in chosen:
        r, _ = evaluator.evaluate(c.dna, seed=c.seed)
        print(f"#{c.id}: stopped at {c.result.stage_fitness[-1]:.1f}, full budget "
              f"{r.fitness:.1f} ({r.status})", file=sys.stderr, flush=True)
        seen, again = c.result.stage_fitness, r.stage_fitness[:len(c.result.stage_fitness)]
        # Workers train on one thread, this process on several: float sums may differ
        # in their last bits, so compare to 1e-3.
        if len(again) != len(seen) or any(abs(a / b - 1) > 1e-3 for a, b in zip(again, seen)):
            mismatches.append({"id": c.id, "search": list(seen), "rerun": list(again)})
        retrained[c.id] = r.fitness
    pool = [(c.fitness, c.id, False) for c in finished] + \
        [(f, cid, True) for cid, f in retrained.items() if math.isfinite(f)]
    top = sorted(pool)[:TOP]
    cut_in_sample = sum(1 for _, _, was_stopped in top if was_stopped)
    scale = len(stopped) / len(chosen) if chosen else 0.0
    return {
        "evaluated": len(evaluated), "finished": len(finished), "stopped": len(stopped),
        "failed": sum(1 for c in evaluated if c.result.failed),
        "steps_spent": spent, "steps_if_all_trained": full,
        "compute_saved": 1 - spent / full if full else 0.0,
        "expected_saving_at_pass_rate": 1 - expected_cost(budget.stages, budget.pass_rate),
        "stages": budget.stages, "pass_rate": budget.pass_rate,
        "sampled_stopped": len(chosen),
        "retrained": {str(k): v for k, v in retrained.items()},
        "top10_ids": [cid for _, cid, _ in top],
        "top10_cut_by_hurdles_in_sample": cut_in_sample,
        "top10_cut_by_hurdles_extrapolated": cut_in_sample * scale,
        "stage_fitness_mismatches": mismatches,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny_cpu")
    p.add_argument("--candidates", type=int, default=40)
    p.add_argument("--sample", type=int, default=10,
                   help="hurdle-stopped candidates to train to the full budget")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="keep the search's store in this folder")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="hurdles-"))
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / f"{args.config}-hurdles.sqlite"
    if store.exists():
        store.unlink()
    cfg, summary, wall = run_search_for(
        args.config, [f"limits.max_candidates={args.candidates}", *args.set], store)
    out = {"config": args.config, "candidates": summary.finished, "search_s": round(wall, 1),
           "store": str(store), **analyse(cfg, store, args.sample)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.config}: {out['candidates']} candidates in {out['search_s']:.0f} s; "
          f"{out['evaluated']} evaluated ({out['finished']} to the end, {out['stopped']} "
          f"stopped at a hurdle, {out['failed']} failed); {out['stages']} stages at pass "
          f"rate {out['pass_rate']}\n")
    print("| figure | value |\n|---|---|")
    print(f"| training steps spent / if all trained to the end | {out['steps_spent']} / "
          f"{out['steps_if_all_trained']} |")
    print(f"| compute saved by hurdles | {100 * out['compute_saved']:.1f}% (expected at this "
          f"split: {100 * out['expected_saving_at_pass_rate']:.1f}%) |")
    print(f"| stopped candidates trained to the end | {out['sampled_stopped']} of "
          f"{out['stopped']} |")
    print(f"| of the top {TOP} by full-budget fitness, stopped by a hurdle | "
          f"{out['top10_cut_by_hurdles_in_sample']} in the sample, "
          f"{out['top10_cut_by_hurdles_extrapolated']:.1f} extrapolated to all stopped |")
    print(f"| reruns that did not reproduce the search's stage fitness | "
          f"{len(out['stage_fitness_mismatches'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
