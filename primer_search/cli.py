"""The ``primer-search`` command line. Thin: each command calls the library's functions.

    primer-search train --dna seeds:primer_ez --corpus ptb --steps 300 [--seconds 60] [--json]
    primer-search show-dna seeds:transformer [--prune]
    primer-search seeds | ops
"""

from __future__ import annotations

import argparse
import json
import math
import sys

__all__ = ["main"]


def resolve_dna(spec: str):
    """``seeds:NAME`` or a path to a DNA file."""
    from primer_search import seeds
    from primer_search.dna import load_dna

    if spec.startswith("seeds:"):
        return seeds.get(spec[len("seeds:"):])
    return load_dna(spec)


def _fitness_config(args):
    from primer_search.data import DataConfig
    from primer_search.evaluate import BudgetConfig, FitnessConfig, ModelConfig
    from primer_search.train import OptimConfig

    return FitnessConfig(
        data=DataConfig(corpus=args.corpus, path=args.path, tokenizer=args.tokenizer,
                        seq_len=args.seq_len, batch_size=args.batch_size),
        model=ModelConfig(d_model=args.d_model, num_layers=args.layers),
        optim=OptimConfig(learning_rate=args.lr),
        budget=BudgetConfig(steps=args.steps, seconds=args.seconds, stages=args.stages),
        seed=args.seed)


def cmd_train(args) -> int:
    from primer_search.evaluate import Evaluator

    dna = resolve_dna(args.dna)
    evaluator = Evaluator(_fitness_config(args))
    result = evaluator.evaluate(dna)
    if args.json:
        print(json.dumps({"dna": args.dna, **result.to_dict()}, default=_json_float))
    else:
        print(f"{args.dna}: {result.status}" + (f" ({result.reason})" if result.reason else ""))
        rows = [("validation perplexity (fitness)", result.fitness),
                ("word perplexity", result.word_perplexity),
                ("bits per byte", result.bits_per_byte),
                ("train loss", result.train_loss), ("steps", result.steps),
                ("parameters", result.num_params), ("tokens/s", result.tokens_per_s),
                ("step time (ms)", 1000 * result.step_time_s),
                ("compile / train / eval (s)",
                 f"{result.compile_s:.1f} / {result.train_s:.1f} / {result.eval_s:.1f}")]
        for name, value in rows:
            print(f"  {name:<32} {value:.4g}" if isinstance(value, float) else
                  f"  {name:<32} {value}")
    return 0 if not result.failed else 1


def _json_float(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def cmd_show_dna(args) -> int:
    from primer_search.validate import canonical, dna_hash

    dna = resolve_dna(args.dna)
    print(canonical(dna) if args.prune else dna, end="")
    print(f"# hash {dna_hash(dna)[:16]}")
    return 0


def cmd_seeds(args) -> int:
    from primer_search import seeds

    for name in seeds.names():
        doc = (seeds._SEEDS[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<16} {doc}")
    return 0


def cmd_ops(args) -> int:
    import primitives

    for name in primitives.names():
        prim = primitives.get(name)
        flags = ("P" if prim.has_params else "-") + ("S" if prim.mixes_sequence else "-")
        print(f"{name:<12} {prim.arity} {flags}  {prim.doc}")
    print("\narity, P = trainable parameters, S = mixes sequence positions (causal)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="primer-search", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one DNA and print its fitness")
    t.add_argument("--dna", default="seeds:transformer",
                   help="seeds:NAME or a DNA file (default: seeds:transformer)")
    t.add_argument("--corpus", default="ptb", help="ptb (embedded), lm1b or text")
    t.add_argument("--path", default=None, help="corpus path, for lm1b and text")
    t.add_argument("--tokenizer", default="word", help="word or byte")
    t.add_argument("--steps", type=int, default=300, help="step budget (default 300)")
    t.add_argument("--seconds", type=float, default=None, help="wall-clock training budget")
    t.add_argument("--stages", type=int, default=1, help="evaluate after each of N stages")
    t.add_argument("--d-model", type=int, default=128)
    t.add_argument("--layers", type=int, default=2)
    t.add_argument("--seq-len", type=int, default=64)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("show-dna", help="print a DNA as readable code")
    s.add_argument("dna", help="seeds:NAME or a DNA file")
    s.add_argument("--prune", action="store_true", help="print the canonical (pruned) form")
    s.set_defaults(fn=cmd_show_dna)

    sub.add_parser("seeds", help="list the seed blocks").set_defaults(fn=cmd_seeds)
    sub.add_parser("ops", help="list the primitive vocabulary").set_defaults(fn=cmd_ops)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from primer_search.data import DataError
    from primer_search.dna import DNAError

    try:
        return args.fn(args)
    except (DNAError, DataError, KeyError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"primer-search: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
