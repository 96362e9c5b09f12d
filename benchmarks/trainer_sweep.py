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
import sys

import _harness

from primer_search.fitness.config import BudgetConfig, OptimConfig
from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library

FULL_VALIDATION = 73_760  # PTB validation tokens with sentence ends

# Each profile is tiny_cpu's fitness (language modelling alone, one stage) with these
# overrides.
PROFILES = {
    "tiny_cpu": [],
    "train": ["fitness.model.d_model=128", "fitness.budget.steps=300",
              "fitness.data.eval_tokens=16384"],
    "long": ["fitness.model.d_model=128", "fitness.budget.steps=600",
             "fitness.data.batch_size=32",
             f"fitness.data.eval_tokens={FULL_VALIDATION - FULL_VALIDATION % 64}"],
}


def profile(name: str):
    """The fitness settings of profile ``name``."""
    return _harness.fitness_settings("tiny_cpu", ["fitness.budget.stages=1", *PROFILES[name]],
                                     recall=False)


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

    base = profile(args.profile)
    if args.steps:
        base = dataclasses.replace(base, budget=BudgetConfig(steps=args.steps))
    evaluator = Evaluator(base)
    settings = parse_grid(args.grid)
    blocks = args.blocks.split(",")
    programs = [(b, seed_library.get(b)) for b in blocks]
    rows = []
    for setting in settings:
        # Same loaded data, another optimiser: a new evaluator over its dataset.
        optim = dataclasses.replace(OptimConfig(), **setting)
        trained = _harness.train_over_seeds(
            Evaluator(dataclasses.replace(base, optim=optim), dataset=evaluator.dataset),
            programs, range(args.seeds), label=label(setting) + ":")
        rows += [{"setting": setting, "block": block,
                  **_harness.seed_row(results, "perplexity", "fitness")}
                 for block, results in trained.items()]
    best = {b: min((r["mean"] for r in rows if r["block"] == b and r["mean"] is not None),
                   default=None) for b in blocks}
    for r in rows:
        r["gap_to_best"] = (None if r["mean"] is None or best[r["block"]] is None
                            else r["mean"] / best[r["block"]] - 1.0)
    if args.json:
        _harness.print_json({"profile": args.profile, "seeds": args.seeds, "rows": rows})
        return 0
    columns = [("setting", False, lambda r: label(r["setting"])),
               ("block", False, lambda r: r["block"]),
               ("valid ppl", True, lambda r: _harness.fmt((r["mean"], r["std"]))),
               ("vs best", True, lambda r: "n/a" if r["gap_to_best"] is None
                else f"{100 * r['gap_to_best']:+.1f}%")]
    print(f"profile {args.profile}, {args.seeds} seeds, validation perplexity\n")
    print(_harness.table(sorted(rows, key=lambda r: (r["block"], r["mean"] is None,
                                                     r["mean"] or 0.0)),
                         columns, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
