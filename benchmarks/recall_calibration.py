"""Recall calibration: does the recall task tell attention from local mixing, and at what cost?

For a search config (its fitness section, with the recall task on), this trains every
seed of the zoo and two attention-free blocks, each with its training seeds, exactly as
a search scores a candidate (one ``Evaluator.evaluate`` each, no hurdles), and reports per
block: recall accuracy (chance is 1 / num_values) and loss, the language model's
perplexity and context-use score, the combined fitness, and the time split (compile,
language-model training, recall training and scoring). The cost line is the recall
task's seconds against the rest of a candidate's.

The attention-free blocks: ``local-mixing-51`` (a search's winner that mixes tokens only
through a width-3 convolution; ``--dna`` adds more DNA files) and ``dconv_for_attention``
(the Transformer with its attention replaced by a causal depthwise convolution of width
3, built here).

    python benchmarks/recall_calibration.py [--config efficacy_cpu] [--seeds 2]
        [--set fitness.recall.pairs=8] [--blocks transformer,primer_ez] [--json]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import _harness

from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library
from primer_search.program.builder import ProgramBuilder
from primer_search.program.patterns import write_layer_norm, write_relu
from primer_search.program.validate import load_dna
from primer_search.search.config import load_config

LOCAL_51 = Path(__file__).resolve().parents[1] / "examples" / "local-mixing-51.dna"


def dconv_for_attention():
    """The Transformer with attention replaced by a width-3 causal depthwise convolution:
    ``y = x + W DCONV_3X1(LN(x)); out = y + W2 ReLU(W1 LN(y))``."""
    p = ProgramBuilder()
    main, norm, act = p.subprograms(3)
    write_layer_norm(norm)
    write_relu(act)
    mixed = main("DCONV_3X1", main.call(norm, main.h0))
    x = main("ADD", main.h0, main("CONV_1X1", mixed, dim=1))
    hidden = main.call(act, main("CONV_1X1", main.call(norm, x), dim=4))
    main("ADD", x, main("CONV_1X1", hidden, dim=1))
    return p.build()


def blocks(names: list[str] | None, dna_files: list[str]) -> dict:
    out = {name: seed_library.get(name) for name in seed_library.names()}
    out["dconv_for_attention"] = dconv_for_attention()
    for path in [str(LOCAL_51), *dna_files]:
        out[Path(path).stem] = load_dna(path)
    if names:
        unknown = [n for n in names if n not in out]
        if unknown:
            raise SystemExit(f"unknown blocks {unknown}; known: {', '.join(out)}")
        out = {n: out[n] for n in names}
    return out


def measure(evaluator: Evaluator, name: str, dna, num_seeds: int) -> dict:
    rows = _harness.train_over_seeds(evaluator, [(name, dna)], range(num_seeds))[name]
    failed = _harness.failures(rows)
    if failed:
        return {"failed": f"{failed[0]['status']}: {failed[0]['reason']}"}

    def mean(field):
        return _harness.summarise(rows, field)[0]

    rest = mean("compile_s") + mean("train_s") + mean("eval_s")
    return {"recall_accuracy": mean("recall_accuracy"), "recall_accuracy_std":
            _harness.summarise(rows, "recall_accuracy")[1], "recall_loss": mean("recall_loss"),
            "perplexity": math.exp(statistics.fmean(math.log(r.perplexity) for r in rows)),
            "fitness": math.exp(statistics.fmean(math.log(r.fitness) for r in rows)),
            "context_use": mean("context_use"), "compile_s": mean("compile_s"),
            "lm_s": mean("train_s") + mean("eval_s"), "recall_s": mean("recall_s"),
            "cost_ratio": (rest + mean("recall_s")) / rest}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="efficacy_cpu", help="a search config (name or path)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (fitness.recall.enabled is set to true)")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per block")
    p.add_argument("--blocks", help="comma-separated block names (default: all)")
    p.add_argument("--dna", action="append", default=[], help="more blocks, as DNA files")
    p.add_argument("--steps", type=int, help="shorthand for --set fitness.budget.steps=N")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    overrides = ["fitness.recall.enabled=true", "fitness.budget.stages=1", *args.set]
    if args.steps:
        overrides.append(f"fitness.budget.steps={args.steps}")
    fitness = load_config(args.config, overrides).fitness
    evaluator = Evaluator(fitness)
    chosen = blocks(args.blocks.split(",") if args.blocks else None, args.dna)
    results = {}
    for name, dna in chosen.items():
        results[name] = measure(evaluator, name, dna, args.seeds)
    if args.json:
        _harness.print_json({"recall": vars(fitness.recall), "results": results})
        return 0
    r = fitness.recall
    steps = r.steps or fitness.budget.steps
    print(f"{args.config}: MQAR {r.pairs} pairs, {r.num_queries} queries, {r.num_keys} keys, "
          f"{r.num_values} values, {r.placement}; {steps} recall steps and "
          f"{fitness.budget.steps} LM steps of batch {fitness.data.batch_size} x "
          f"{fitness.data.seq_len}; chance {1 / r.num_values:.3f}; {args.seeds} seeds each")
    print("| block | recall acc | recall loss | LM ppl | context use | fitness | compile s | "
          "LM s | recall s | time with / without recall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in results.items():
        if "failed" in m:
            print(f"| {name} | failed: {m['failed'][:60]} |||||||||")
            continue
        print(f"| {name} | {m['recall_accuracy']:.3f} ± {m['recall_accuracy_std']:.3f} | "
              f"{m['recall_loss']:.3f} | {m['perplexity']:.3f} | {m['context_use']:+.3f} | "
              f"{m['fitness']:.4g} | {m['compile_s']:.2f} | {m['lm_s']:.2f} | "
              f"{m['recall_s']:.2f} | {m['cost_ratio']:.2f} |")
    ratios = [m["cost_ratio"] for m in results.values() if "cost_ratio" in m]
    if ratios:
        print(f"median time with / without recall: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
