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
import sys

import _harness

from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library

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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set fitness.budget.steps=10")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    base = _harness.fitness_settings(args.config, args.set, recall=False)
    programs = [(b, seed_library.get(b)) for b in BLOCKS]
    rows = []
    for name, changes in SETTINGS.items():
        fitness = dataclasses.replace(base, optim=dataclasses.replace(base.optim, **changes))
        trained = _harness.train_over_seeds(Evaluator(fitness), programs, range(args.seeds),
                                            label=f"{name}:")
        rows += [{"optimizer": name, "block": block,
                  **_harness.seed_row(results, "perplexity", "ppl")}
                 for block, results in trained.items()]
    if args.json:
        _harness.print_json(rows)
        return 0
    leads = {}
    for name in SETTINGS:
        t, e = (next(r for r in rows if r["optimizer"] == name and r["block"] == b)
                for b in BLOCKS)
        leads[name] = ("n/a" if t["mean"] is None or e["mean"] is None
                       else f"{100 * (1 - e['mean'] / t['mean']):.1f}%")
    columns = [("optimiser", False, lambda r: r["optimizer"]),
               ("Transformer", True, lambda r: _harness.fmt(r["transformer"])),
               ("Primer-EZ", True, lambda r: _harness.fmt(r["primer_ez"])),
               ("Primer-EZ's lead", True, lambda r: leads[r["optimizer"]])]
    by_setting = [{"optimizer": name, **{r["block"]: (r["mean"], r["std"])
                                         for r in rows if r["optimizer"] == name}}
                  for name in SETTINGS]
    print(f"{args.config} fitness budget, {args.seeds} seeds: validation perplexity")
    print(_harness.table(by_setting, columns, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
