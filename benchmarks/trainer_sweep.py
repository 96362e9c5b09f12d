"""Sweep the trainer's learning-rate schedule, warm-up, peak rate and weight-decay mask
on real PTB training, to choose the defaults of ``OptimConfig``.

A search can only rank blocks as well as its trainer trains them: a weak schedule makes
it favour blocks that cope with that schedule. Every setting trains the same blocks with
the same seeds (so comparisons are paired) and reports validation perplexity, mean and
spread over seeds, best first, and each setting's gap to the best per block.

Profiles (the settings a user meets first):
  tiny_cpu  the tiny_cpu search's fitness: d 64, 2 layers, seq 64, batch 16, 100 steps,
            8192 evaluation tokens
  train     `primer-search train`'s defaults: d 128, 2 layers, seq 64, batch 16, 300 steps
  long      d 128, 2 layers, seq 64, batch 32, 600 steps, the full validation set

    python benchmarks/trainer_sweep.py --profile tiny_cpu \\
        --grid "schedule=constant,linear,cosine,rsqrt" --grid "learning_rate=1e-3,3e-3,1e-2"
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys

from primer_search.fitness.config import BudgetConfig, FitnessConfig, ModelConfig, OptimConfig
from primer_search.fitness.data import DataConfig
from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library

FULL_VALIDATION = 73_760  # PTB validation tokens with sentence ends

PROFILES = {
    "tiny_cpu": FitnessConfig(data=DataConfig(seq_len=64, batch_size=16, eval_tokens=8192),
                              model=ModelConfig(d_model=64, num_layers=2),
                              budget=BudgetConfig(steps=100)),
    "train": FitnessConfig(data=DataConfig(seq_len=64, batch_size=16),
                           model=ModelConfig(d_model=128, num_layers=2),
                           budget=BudgetConfig(steps=300)),
    "long": FitnessConfig(data=DataConfig(seq_len=64, batch_size=32,
                                          eval_tokens=FULL_VALIDATION - FULL_VALIDATION % 64),
                          model=ModelConfig(d_model=128, num_layers=2),
                          budget=BudgetConfig(steps=600)),
}


def parse_grid(items: list[str]) -> list[dict]:
    """``["schedule=linear,cosine", "learning_rate=1e-3,3e-3"]`` -> the product as dicts."""
    fields = {f.name: f.type for f in dataclasses.fields(OptimConfig)}
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--grid expects FIELD=v1,v2 with FIELD one of {sorted(fields)}; "
                             f"got {item!r}")
        kind = float if key == "learning_rate" else type(getattr(OptimConfig(), key))
        axes.append([(key, kind(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def label(setting: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items()) or "defaults"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="tiny_cpu")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="an OptimConfig field and its values; several --grid make a product")
    p.add_argument("--blocks", default="transformer,primer_ez")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="override the profile's steps")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    base = PROFILES[args.profile]
    if args.steps:
        base = dataclasses.replace(base, budget=BudgetConfig(steps=args.steps))
    evaluator = Evaluator(base)
    settings = parse_grid(args.grid)
    blocks = args.blocks.split(",")
    rows = []
    for setting in settings:
        optim = dataclasses.replace(OptimConfig(), **setting)
        for block in blocks:
            values = []
            for seed in range(args.seeds):
                # Same loaded data, another optimiser: a new evaluator over its dataset.
                r, _ = Evaluator(dataclasses.replace(base, optim=optim),
                                 dataset=evaluator.dataset).evaluate(
                    seed_library.get(block), seed=seed)
                print(f"{label(setting)} {block} seed {seed}: {r.status} {r.fitness:.2f}",
                      file=sys.stderr, flush=True)
                values.append(r.fitness)
            rows.append({"setting": setting, "block": block, "fitness": values,
                         "mean": statistics.mean(values),
                         "std": statistics.stdev(values) if len(values) > 1 else 0.0})
    best = {b: min(r["mean"] for r in rows if r["block"] == b) for b in blocks}
    for r in rows:
        r["gap_to_best"] = r["mean"] / best[r["block"]] - 1.0
    if args.json:
        print(json.dumps({"profile": args.profile, "seeds": args.seeds, "rows": rows}))
        return 0
    print(f"profile {args.profile}, {args.seeds} seeds, validation perplexity\n")
    print(f"| {'setting':<58} | {'block':<11} | {'valid ppl':>15} | {'vs best':>7} |")
    print(f"|{'-' * 60}|{'-' * 13}|{'-' * 17}:|{'-' * 8}:|")
    for r in sorted(rows, key=lambda r: (r["block"], r["mean"])):
        print(f"| {label(r['setting']):<58} | {r['block']:<11} | "
              f"{r['mean']:7.1f} +- {r['std']:5.1f} | {100 * r['gap_to_best']:+6.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
