"""Shared by fitness.py and zoo.py: train seed blocks for real at equal steps and at equal
wall-clock time, several seeds each, and report mean +- std of their figures.

:func:`main` is a whole benchmark (arguments, training, table or JSON); a script gives it
its docstring, its base :class:`FitnessConfig` (data and model settings), its default
blocks and budgets, and the columns and style of its table. Every row is trained; failed
runs (``EvalResult.failed``) are reported on stderr with their status and reason and left
out of the statistics, and each row counts the runs that succeeded.
"""

from __future__ import annotations

import argparse
import dataclasses

import _harness
from _harness import fmt, table

from primer_search.fitness.config import BudgetConfig, FitnessConfig, ModelConfig
from primer_search.fitness.evaluate import Evaluator
from primer_search.program import seeds as seed_library

# --quick: tiny budgets and a small evaluation set, for smoke tests.
QUICK = {"steps": 5, "seconds": 1.0, "seeds": 1, "eval_tokens": 1024}


def make_budgets(steps: int, seconds: float) -> list[tuple[str, BudgetConfig]]:
    """The two budgets every block trains under: ``steps`` steps, and ``seconds`` seconds of
    training (compile and evaluation excluded) with no step limit."""
    return [(f"{steps} steps", BudgetConfig(steps=steps)),
            (f"{seconds:g} s", BudgetConfig(steps=None, seconds=seconds))]


def run(base: FitnessConfig, blocks, budgets, num_seeds: int) -> list[dict]:
    """Train every block under every budget with seeds ``0 .. num_seeds - 1``; a row per
    (budget, block). Statistics are :func:`_harness.mean_std` pairs over the successful
    runs.

    Language modelling alone: ``base``'s recall task is turned off, since it would train
    its own fixed budget beside every run (``benchmarks/recall_calibration.py`` measures
    it) and its factor would hide the perplexity these rows report."""
    evaluator = Evaluator(_harness.with_recall(base, False))
    rows = []
    for budget_name, budget in budgets:
        trained = _harness.train_over_seeds(
            evaluator, [(b, seed_library.get(b)) for b in blocks], range(num_seeds),
            budget=budget, label=budget_name + ",")
        for block, results in trained.items():
            def stat(field, results=results):
                return _harness.summarise(results, field)

            rows.append({
                "budget": budget_name, "block": block,
                "runs": sum(not r.failed for r in results), "seeds": num_seeds,
                "params": next((r.num_params for r in results if r.num_params), None),
                "steps": stat("steps"), "valid_ppl": stat("perplexity"),
                "tokens_per_s": stat("tokens_per_s"), "step_ms": tuple(
                    None if v is None else 1000 * v for v in stat("step_time_s")),
                "compile_s": stat("compile_s"), "failed": _harness.failures(results)})
    return rows


# Table columns (:data:`_harness.Column`) by key.
COLUMNS = {
    "budget": ("budget", False, lambda r: r["budget"]),
    "block": ("block", False, lambda r: r["block"]),
    "params": ("params", True, lambda r: "n/a" if r["params"] is None else str(r["params"])),
    "runs": ("runs", True, lambda r: f"{r['runs']}/{r['seeds']}"),
    "steps": ("steps", True, lambda r: fmt(r["steps"], 0)),
    "step_ms": ("step ms", True, lambda r: fmt(r["step_ms"])),
    "tokens_per_s": ("tokens/s", True, lambda r: fmt(r["tokens_per_s"], 0)),
    "valid_ppl": ("valid ppl", True, lambda r: fmt(r["valid_ppl"])),
}


def main(argv, *, doc: str, base: FitnessConfig, blocks: str, steps: int, seconds: float,
         columns, markdown: bool) -> None:
    """A benchmark's command line: ``doc`` is its docstring (the first line is the help's
    description), ``base`` gives the default data and model settings, ``blocks`` the
    default comma-separated blocks ("" for every seed in the library)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the config and rows as JSON")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: tiny budgets ({', '.join(f'{k} {v:g}' for k, v in QUICK.items())}) "
                        "unless given explicitly")
    p.add_argument("--steps", type=int, default=steps, help="step budget (default %(default)s)")
    p.add_argument("--seconds", type=float, default=seconds,
                   help="wall-clock training budget in seconds (default %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per block and budget (default %(default)s)")
    p.add_argument("--blocks", default=blocks,
                   help="comma-separated seed blocks (default: %s)" % (blocks or "all of "
                                                                        "primer_search.program.seeds.names()"))
    p.add_argument("--d-model", type=int, default=base.model.d_model, help="default %(default)s")
    p.add_argument("--layers", type=int, default=base.model.num_layers, help="default %(default)s")
    p.add_argument("--seq-len", type=int, default=base.data.seq_len, help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=base.data.batch_size, help="default %(default)s")
    p.add_argument("--eval-tokens", type=int, default=base.data.eval_tokens,
                   help="validation tokens (default %(default)s)")
    args = p.parse_args(argv)
    if args.quick:  # explicit flags still win over the quick defaults
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
    names = [b for b in args.blocks.split(",") if b] or list(seed_library.names())
    unknown = [b for b in names if b not in seed_library.names()]
    if unknown:
        p.error(f"unknown blocks {', '.join(unknown)}; known: {', '.join(seed_library.names())}")

    base = dataclasses.replace(
        base, data=dataclasses.replace(base.data, seq_len=args.seq_len, batch_size=args.batch_size,
                                       eval_tokens=args.eval_tokens),
        model=ModelConfig(d_model=args.d_model, num_layers=args.layers))
    rows = run(base, names, make_budgets(args.steps, args.seconds), args.seeds)
    config = {"d_model": args.d_model, "layers": args.layers, "seq_len": args.seq_len,
              "batch_size": args.batch_size, "corpus": base.data.corpus, "seeds": args.seeds,
              "eval_tokens": args.eval_tokens, "steps": args.steps, "seconds": args.seconds,
              "blocks": names}
    if args.json:
        _harness.print_json({"config": config, "rows": rows})
        return
    print(f"{base.data.corpus.upper()}, d_model {args.d_model}, {args.layers} layers, "
          f"seq {args.seq_len}, batch {args.batch_size}, {args.seeds} seed{'s' * (args.seeds != 1)} "
          "(mean +- std)")
    if markdown:
        print()
    print(table(rows, [COLUMNS[c] for c in columns], markdown))

