"""Does the seeds' ordering hold under the paper's optimiser?

A block that suits one optimiser need not suit another. This trains the Transformer and
Primer-EZ seeds at a search config's fitness budget (default: tiny_cpu's, PTB at width 64
for 100 steps) under the default AdamW trainer and under the Primer paper's Adafactor
(learning rate 0.01, inverse-square-root decay after warm-up, no weight decay; the
warm-up is the trainer's, 30% of a short run, since the paper's 10K steps would not end
within it), several training seeds each, and reports mean and spread of validation
perplexity and Primer-EZ's lead under each.

    python benchmarks/optimizers.py [--config tiny_cpu] [--seeds 3] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys

from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library
from primer_search.search.config import load_config

BLOCKS = ("transformer", "primer_ez")
SETTINGS = {
    "adamw (default)": {},
    "adafactor (paper)": {"optimizer": "adafactor", "learning_rate": 0.01,
                          "schedule": "rsqrt", "weight_decay": 0.0},
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny_cpu")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    base = load_config(args.config).fitness
    rows = []
    for name, changes in SETTINGS.items():
        fitness = dataclasses.replace(base, optim=dataclasses.replace(base.optim, **changes))
        evaluator = Evaluator(fitness)
        for block in BLOCKS:
            ppl = []
            for seed in range(args.seeds):
                r, _ = evaluator.evaluate(seed_library.get(block), seed=seed)
                print(f"{name} {block} seed {seed}: {r.status} {r.fitness:.2f}",
                      file=sys.stderr, flush=True)
                ppl.append(r.fitness)
            rows.append({"optimizer": name, "block": block, "ppl": ppl,
                         "mean": statistics.fmean(ppl),
                         "std": statistics.stdev(ppl) if len(ppl) > 1 else 0.0})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{args.config} fitness budget, {args.seeds} seeds: validation perplexity")
    print("| optimiser | Transformer | Primer-EZ | Primer-EZ's lead |")
    print("|---|---:|---:|---:|")
    for name in SETTINGS:
        t, e = (next(r for r in rows if r["optimizer"] == name and r["block"] == b)
                for b in BLOCKS)
        print(f"| {name} | {t['mean']:.1f} ± {t['std']:.1f} | {e['mean']:.1f} ± {e['std']:.1f} | "
              f"{100 * (1 - e['mean'] / t['mean']):.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
