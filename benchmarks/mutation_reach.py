"""Mutation reach: how often does one mutation give a seed a new mechanism?

A search can keep only what its mutations propose. Primer-EZ's larger change is a
depthwise convolution after each of attention's Q, K and V projections (MDHA); the
decaying-sum block the CPU searches found puts a recurrence before attention. This
draws ``--children`` children of a seed block with a search config's mutations (one
``mutate`` call each, as evolution makes a child) and counts, per sequence-mixing
primitive and for SQUARE (squared ReLU's op), the children whose live code holds more of
it than the seed's does:

* in the attention head: a subprogram whose live code takes a query-key product
  (``T_MAT_MUL``), so the op sits on Q, K, V or the scores;
* elsewhere: the residual path, the FFN, a norm.

Each rate is per child; "per search" multiplies it by the config's
``limits.max_candidates``, the expected number of such proposals in a search if every
parent were the seed (a search's parents are mostly its mutants, which differ little).
No training, no JAX compile: a few seconds per 1,000 children.

    python benchmarks/mutation_reach.py [--config efficacy_cpu] [--seed-block transformer]
        [--children 40000] [--set KEY=VALUE ...] [--json]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time

import _harness

from primer_search.program import seeds as seed_library
from primer_search.program.mutations import mutate
from primer_search.program.validate import canonical
from primer_search.search.config import load_config

# Attention's own products: every seed with attention has them, so they are not new.
ATTENTION = ("T_MAT_MUL", "MAT_MUL")


def tracked_ops() -> list[str]:
    """The sequence-mixing primitives other than attention's products, and SQUARE."""
    import primitives

    mixing = [n for n in primitives.names()
              if primitives.get(n).mixes_sequence and n not in ATTENTION]
    return mixing + ["SQUARE"]


def op_counts(dna) -> tuple[collections.Counter, collections.Counter]:
    """Live ops of ``dna`` (its canonical form), counted in the attention head (the
    subprograms that take a query-key product) and elsewhere."""
    head, rest = collections.Counter(), collections.Counter()
    for sub in canonical(dna).subprograms:
        ops = [ins.op for ins in sub.instructions]
        (head if "T_MAT_MUL" in ops else rest).update(ops)
    return head, rest


def reach(config: str, block: str, children: int, seed: int = 0,
          overrides: list[str] = ()) -> dict:
    cfg = load_config(config, list(overrides))
    parent = seed_library.get(block)
    base_head, base_rest = op_counts(parent)
    ops = tracked_ops()
    in_head, elsewhere = collections.Counter(), collections.Counter()
    any_head = any_dconv = 0
    rng = random.Random(seed)
    t = time.perf_counter()
    for _ in range(children):
        child, _ = mutate(parent, rng, cfg.evolution.mutation)
        head, rest = op_counts(child)
        gained = [op for op in ops if head[op] > base_head[op]]
        in_head.update(gained)
        any_head += any(op != "SQUARE" for op in gained)
        any_dconv += any(op.startswith("DCONV") for op in gained)
        elsewhere.update(op for op in ops if rest[op] > base_rest[op])
    seconds = time.perf_counter() - t
    per_search = cfg.limits.max_candidates or 0
    rows = [{"op": op, "in_head": in_head[op] / children, "elsewhere": elsewhere[op] / children,
             "head_per_search": in_head[op] / children * per_search} for op in ops]
    return {"config": config, "overrides": list(overrides), "seed_block": block, "children": children,
            "candidates_per_search": per_search, "seconds": seconds, "rows": rows,
            "any_mixing_in_head": any_head / children,
            "any_mixing_in_head_per_search": any_head / children * per_search,
            "any_dconv_in_head": any_dconv / children,
            "any_dconv_in_head_per_search": any_dconv / children * per_search}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="efficacy_cpu", help="a search config (its mutations "
                   "and limits.max_candidates)")
    p.add_argument("--seed-block", default="transformer", help="the parent: a seed's name")
    p.add_argument("--children", type=int, default=40000)
    p.add_argument("--seed", type=int, default=0, help="the random stream's seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the config, e.g. an op prior: "
                        "evolution.mutation.spec.op_weights='[[\"DCONV_3X1\", 4]]'")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.children < 1:
        p.error(f"--children must be at least 1, got {args.children}")
    if args.seed_block not in seed_library.names():
        p.error(f"--seed-block {args.seed_block!r} is not a seed; known: "
                f"{', '.join(seed_library.names())}")
    report = reach(args.config, args.seed_block, args.children, args.seed, args.set)
    if args.json:
        _harness.print_json(report)
        return 0
    n = report["candidates_per_search"]
    print(f"{report['children']} children of {args.seed_block} under {args.config}'s "
          f"mutations ({report['seconds']:.0f} s); per search: x {n} candidates")
    print(_harness.table(report["rows"], [
        ("op gained", False, lambda r: r["op"]),
        ("in the attention head, per child", True, lambda r: f"{r['in_head']:.3%}"),
        ("elsewhere, per child", True, lambda r: f"{r['elsewhere']:.3%}"),
        (f"in the head, per search of {n}", True, lambda r: f"{r['head_per_search']:.2f}"),
    ], markdown=True))
    for what, key in (("any sequence-mixing op", "any_mixing"),
                      ("a depthwise convolution of any width (MDHA's op)", "any_dconv")):
        print(f"{what} gained in the attention head: {report[key + '_in_head']:.3%} per "
              f"child, {report[key + '_in_head_per_search']:.2f} per search of {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
