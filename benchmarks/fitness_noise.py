"""Fitness noise: how far apart two candidates must score before the search can tell.

A search evaluates each candidate once, with one training seed. At the tiny_cpu budget
this trains the Transformer and Primer-EZ seeds and five mutants of the Transformer (the
first five valid children a seeded mutation stream draws), each with several training
seeds, and reports every program's mean and spread of validation perplexity.

The smallest difference the search can tell apart, two ways:

* unpaired: with one evaluation each and independent seeds, the difference of two
  candidates' fitness has a standard deviation of sqrt(2) sigma, where sigma is the pooled
  seed-to-seed standard deviation; two candidates differ with 95% confidence (two-sided)
  when their fitness differs by more than 1.96 sqrt(2) sigma (~2.77 sigma);
* paired, as a search evaluates: every candidate of a search trains with the same seed
  (``fitness.seed``: the same data order, though each program draws its own weights), so
  what matters is how much the *ratio* of two programs' fitness moves from seed to seed:
  the pooled standard deviation over program pairs of log(f_a / f_b), and a threshold of
  1.96 times that, as a relative difference.

    python benchmarks/fitness_noise.py [--seeds 3] [--mutants 5] [--config tiny_cpu]
                                       [--set KEY=VALUE ...] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys

import _harness

from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library
from primer_search.program.mutations import mutate
from primer_search.search.config import load_config

Z95 = 1.96


def programs(num_mutants: int, config) -> list[tuple[str, str, object]]:
    """(name, description, DNA): the two seeds and ``num_mutants`` Transformer mutants."""
    out = [("transformer", "seed", seed_library.get("transformer", heads=config.seeding.heads)),
           ("primer_ez", "seed", seed_library.get("primer_ez", heads=config.seeding.heads))]
    parent = out[0][2]
    for k in range(num_mutants):
        child, how = mutate(parent, random.Random(f"fitness-noise/{k}"),
                            config.evolution.mutation)
        out.append((f"mutant{k + 1}", how, child))
    return out


def summarise(rows: list[dict]) -> dict:
    """Pooled unpaired and paired noise figures of programs trained with every seed."""
    usable = [r for r in rows if len(r["fitness"]) > 1 and len(r["fitness"]) == len(
        r["statuses"])]
    if not usable:
        return {"pooled_std": math.nan, "pooled_relative_std": math.nan,
                "smallest_difference": math.nan, "smallest_relative_difference": math.nan,
                "paired_log_ratio_std": math.nan, "smallest_paired_relative_difference":
                math.nan}
    # Pooled variance: the mean of the per-program variances (equal seed counts).
    pooled = math.sqrt(statistics.mean(r["std"] ** 2 for r in usable))
    pooled_rel = math.sqrt(statistics.mean(r["relative_std"] ** 2 for r in usable))
    pair_vars = [statistics.variance([math.log(fa / fb) for fa, fb in
                                      zip(a["fitness"], b["fitness"])])
                 for a, b in itertools.combinations(usable, 2)]
    paired = math.sqrt(statistics.mean(pair_vars)) if pair_vars else math.nan
    return {"pooled_std": pooled, "pooled_relative_std": pooled_rel,
            "smallest_difference": Z95 * math.sqrt(2) * pooled,
            "smallest_relative_difference": Z95 * math.sqrt(2) * pooled_rel,
            "paired_log_ratio_std": paired,
            "smallest_paired_relative_difference": math.expm1(Z95 * paired)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny_cpu", help="search config whose fitness to use")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per program")
    p.add_argument("--mutants", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set fitness.budget.steps=10")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    config = load_config(args.config, args.set)
    evaluator = Evaluator(config.fitness)
    rows = []
    for name, how, dna in programs(args.mutants, config):
        results = _harness.train_over_seeds(evaluator, [(name, dna)], range(args.seeds))[name]
        values = [r.fitness for r in results if not r.failed]
        mean, std = _harness.mean_std(values)
        rows.append({"program": name, "mutation": how, "fitness": values,
                     "statuses": [r.status for r in results], "mean": mean, "std": std,
                     "relative_std": std / mean if values else None})
    summary = {"config": args.config, "seeds": args.seeds,
               "budget_steps": config.fitness.budget.steps, **summarise(rows)}
    if args.json:
        _harness.print_json({"summary": summary, "rows": rows})
        return 0
    print(f"fitness noise at the {args.config} budget ({config.fitness.budget.steps} steps), "
          f"{args.seeds} training seeds each\n")
    columns = [("program", False, lambda r: r["program"]),
               ("fitness", True, lambda r: _harness.fmt((r["mean"], r["std"]))),
               ("rel. std", True, lambda r: "n/a" if r["relative_std"] is None
                else f"{100 * r['relative_std']:.2f}%"),
               ("mutation", False, lambda r: r["mutation"][:90])]
    print(_harness.table(rows, columns, markdown=True))
    print(f"\npooled seed-to-seed std: {summary['pooled_std']:.1f} "
          f"({100 * summary['pooled_relative_std']:.2f}%)")
    print(f"smallest difference one evaluation each can tell apart (95%), unpaired: "
          f"{summary['smallest_difference']:.1f} "
          f"({100 * summary['smallest_relative_difference']:.1f}%); paired (one seed for "
          f"every candidate, as a search runs): "
          f"{100 * summary['smallest_paired_relative_difference']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
