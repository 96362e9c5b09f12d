"""Proxy signal: which fitness task tells good blocks from bad fastest?

A search's proxy task should separate a better block from a worse one in as few seconds
as possible. This trains the Transformer and Primer-EZ seeds (a known-better block, 2.34x
less compute on LM1B in the Primer paper) under each candidate proxy, several training
seeds each, and reports per proxy:

* seconds per candidate (compile, training and evaluation, one core);
* the gap: how much lower Primer-EZ's mean log-perplexity is than the Transformer's;
* the noise: the pooled seed-to-seed standard deviation of log-perplexity;
* z = gap / (noise * sqrt(2)): how many standard deviations apart one evaluation of
  each lands, and z per sqrt(second), the signal an equal amount of compute buys (z
  grows as the square root of repeated evaluations).

Proxies differ in tokeniser (a 10K-word vocabulary, a 2K-word one, UTF-8 bytes) and
context; all are PTB at width 64 with 2 layers, trained 200 steps of batch 16.

    python benchmarks/proxy_signal.py [--seeds 3] [--steps 200] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys

import _harness

from primer_search.fitness.config import BudgetConfig
from primer_search.fitness.data import DataConfig
from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library

PROXIES = {
    "word 10K, 64 tokens": DataConfig(seq_len=64, batch_size=16, eval_tokens=8192),
    "word 2K, 64 tokens": DataConfig(vocab_size=2000, seq_len=64, batch_size=16,
                                     eval_tokens=8192),
    "byte, 64 bytes": DataConfig(tokenizer="byte", seq_len=64, batch_size=16,
                                 eval_tokens=16384),
    "byte, 128 bytes": DataConfig(tokenizer="byte", seq_len=128, batch_size=16,
                                  eval_tokens=16384),
}
BLOCKS = ("transformer", "primer_ez")


def measure(data: DataConfig, steps: int, num_seeds: int, d_model: int) -> dict:
    base = _harness.fitness_settings("tiny_cpu", recall=False)
    evaluator = Evaluator(dataclasses.replace(
        base, data=data, model=dataclasses.replace(base.model, d_model=d_model, num_layers=2),
        budget=BudgetConfig(steps=steps)))
    trained = _harness.train_over_seeds(
        evaluator, [(b, seed_library.get(b)) for b in BLOCKS], range(num_seeds))
    failed = [(b, f) for b, results in trained.items() for f in _harness.failures(results)]
    if failed:
        block, f = failed[0]
        raise RuntimeError(f"{block} seed {f['seed']} failed: {f['status']} {f['reason']}")
    logs = {b: [math.log(r.perplexity) for r in results] for b, results in trained.items()}
    runs = [r for results in trained.values() for r in results]
    seconds = [r.compile_s + r.train_s + r.eval_s for r in runs]
    step_ms = [1000 * r.train_s / r.steps for r in runs]
    gap = statistics.fmean(logs["transformer"]) - statistics.fmean(logs["primer_ez"])
    noise = math.sqrt(statistics.fmean(statistics.variance(v) for v in logs.values())) \
        if num_seeds > 1 else float("nan")
    z = gap / (noise * math.sqrt(2)) if noise > 0 else float("nan")
    sec = statistics.fmean(seconds)
    return {"seconds": sec, "step_ms": statistics.median(step_ms), "gap": gap,
            "noise": noise, "z": z, "z_per_sqrt_s": z / math.sqrt(sec),
            "perplexity": {b: [math.exp(x) for x in v] for b, v in logs.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--proxy", action="append", choices=list(PROXIES), metavar="NAME",
                   help="a proxy to measure, by name (repeatable; default: all of "
                        f"{', '.join(map(repr, PROXIES))})")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    names = args.proxy or list(PROXIES)
    rows = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows[name] = measure(PROXIES[name], args.steps, args.seeds, args.d_model)
    if args.json:
        _harness.print_json(rows)
        return 0
    print(f"{args.steps} steps, width {args.d_model}, {args.seeds} seeds per block")
    print("| proxy | s / candidate | ms / step | gap (log ppl) | noise (log ppl) | z | "
          "z / sqrt(s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['seconds']:.1f} | {r['step_ms']:.1f} | {r['gap']:.3f} | "
              f"{r['noise']:.3f} | {r['z']:.1f} | {r['z_per_sqrt_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
