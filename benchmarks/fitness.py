"""Fitness of the Transformer and Primer-EZ seeds on PTB, at equal steps and equal time.

Each seed block is trained with 3 seeds at the same step budget and at the same
wall-clock budget, in a tiny configuration that fits a 2-core CPU, and the table reports
mean +- std of validation perplexity, tokens/s and step time. The Primer paper found
Primer-EZ better than the Transformer at equal compute; this measures whether that holds
at this scale.

    python benchmarks/fitness.py [--json] [--steps 300] [--seconds 30] [--seeds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys

from primer_search import seeds as seed_library
from primer_search.data import DataConfig
from primer_search.evaluate import BudgetConfig, Evaluator, FitnessConfig, ModelConfig


def run(blocks, budgets, num_seeds, d_model, layers, seq_len, batch_size):
    base = FitnessConfig(data=DataConfig(seq_len=seq_len, batch_size=batch_size),
                         model=ModelConfig(d_model=d_model, num_layers=layers))
    evaluator = Evaluator(base)
    rows = []
    for budget_name, budget in budgets:
        for block in blocks:
            results = []
            for seed in range(num_seeds):
                evaluator.config = dataclasses.replace(base, budget=budget, seed=seed)
                r = evaluator.evaluate(seed_library.get(block))
                if r.failed:
                    print(f"{block} seed {seed}: {r.status} {r.reason}", file=sys.stderr)
                results.append(r)
            ok = [r for r in results if not r.failed]

            def stat(field, ok=ok):
                values = [getattr(r, field) for r in ok]
                if not values:
                    return None, None
                return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

            rows.append({
                "budget": budget_name, "block": block, "runs": len(ok),
                "params": ok[0].num_params if ok else None,
                "steps": stat("steps"), "valid_ppl": stat("fitness"),
                "tokens_per_s": stat("tokens_per_s"), "step_ms": tuple(
                    None if v is None else 1000 * v for v in stat("step_time_s")),
                "compile_s": stat("compile_s")})
    return rows


def fmt(pair, digits=1):
    mean, std = pair
    return "n/a" if mean is None else f"{mean:.{digits}f} +- {std:.{digits}f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--blocks", default="transformer,primer_ez")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    budgets = [(f"{args.steps} steps", BudgetConfig(steps=args.steps)),
               (f"{args.seconds:g} s", BudgetConfig(steps=None, seconds=args.seconds))]
    rows = run(args.blocks.split(","), budgets, args.seeds, args.d_model, args.layers,
               args.seq_len, args.batch_size)
    config = {"d_model": args.d_model, "layers": args.layers, "seq_len": args.seq_len,
              "batch_size": args.batch_size, "corpus": "ptb", "seeds": args.seeds}
    if args.json:
        print(json.dumps({"config": config, "rows": rows}, indent=1))
        return
    print(f"PTB, d_model {args.d_model}, {args.layers} layers, seq {args.seq_len}, "
          f"batch {args.batch_size}, {args.seeds} seeds (mean +- std)")
    header = f"{'budget':<10} {'block':<12} {'params':>8} {'steps':>14} {'valid ppl':>16} " \
             f"{'tokens/s':>16} {'step ms':>14}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['budget']:<10} {r['block']:<12} {r['params'] or 0:>8} {fmt(r['steps'], 0):>14} "
              f"{fmt(r['valid_ppl']):>16} {fmt(r['tokens_per_s'], 0):>16} {fmt(r['step_ms']):>14}")


if __name__ == "__main__":
    main()
