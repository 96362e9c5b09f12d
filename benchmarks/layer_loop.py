"""Benchmark: the shell's layers as a loop or unrolled, compile and train-step time.

The shell runs its N blocks under ``jax.lax.scan``. XLA compiles the scan as a loop,
or, unrolled, as N copies of the block in one graph; the trace is the same either way.
This benchmark builds every program twice, ``LanguageModel(unroll=1)`` (the loop) and
``LanguageModel(unroll=N)``, and times on the device at hand:

* ``compile``: the train step's XLA compile (cold, in-memory caches cleared), seconds;
* ``step``: a train step, the median of ``--repeats`` timings of ``--steps`` steps each,
  loop and unrolled timed in turn (A B B A ...), milliseconds;
* the first step's loss of both (the same function: they must agree).

Programs: a block of one dense convolution of each width (``ADD(h0, CONV_kX1(h1))``),
the seed zoo, and random programs (``random_dna(random.Random(seed))``), at a small
fixed size; or, with ``--store``, the programs a search produced (up to ``--limit`` of
its distinct ones, spread over its history) at that search's model, batch and
vocabulary. The table ends with the medians and the ratios unrolled / loop. The engine
unrolls on the CPU and loops elsewhere (``primer_search.fitness.model.layer_unroll``);
this is the measurement behind that choice, and the one to rerun on another device.

Usage: ``python benchmarks/layer_loop.py [--layers 2] [--programs 8] [--steps 10]
[--repeats 3] [--quick] [--json]`` or ``python benchmarks/layer_loop.py --store STORE
[--limit 12]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import statistics
import sys
import time

# Every compile is timed cold (primer_search.fitness.compile_cache would read a rerun's).
os.environ.setdefault("PRIMER_SEARCH_COMPILATION_CACHE", "0")


import jax
from _harness import COMPILE_SHAPE, lm_config, log, random_batch

from primer_search.fitness.config import OptimConfig
from primer_search.fitness.model import build_lm, layer_unroll
from primer_search.fitness.train import compiler_options, make_optimizer, make_steps
from primer_search.program import seeds
from primer_search.program.builder import ProgramBuilder
from primer_search.program.random_programs import RandomSpec, random_dna

CONV_WIDTHS = (3, 7, 15, 31)


def conv_block(k: int):
    """``ADD(h0, CONV_kX1(h1, dim=d))``: one dense causal convolution and a residual."""
    b = ProgramBuilder()
    main = b.subprogram()
    main("ADD", main.h0, main(f"CONV_{k}X1", main.h1, dim=1))
    return b.build()


def programs(num_random: int, quick: bool) -> list[tuple[str, object]]:
    out = [(f"conv_{k}x1", conv_block(k)) for k in (CONV_WIDTHS[:2] if quick else CONV_WIDTHS)]
    out += [(name, seeds.get(name)) for name in (("transformer",) if quick else seeds.names())]
    out += [(f"random_{s}", random_dna(random.Random(s), RandomSpec()))
            for s in range(num_random)]
    return out


def store_programs(path: str, limit: int):
    """Up to ``limit`` distinct programs of a search's store, evenly spread over its ids,
    and the search's ``(ModelConfig, vocab size)`` and batch shape."""
    import jax.numpy as jnp
    import numpy as np

    from primer_search.fitness.data import load_dataset
    from primer_search.search.config import config_from_dict
    from primer_search.search.store import Store

    with Store(path, readonly=True) as store:
        config = config_from_dict(store.config, str(path)).fitness
        unique: dict[str, tuple[str, object]] = {}
        for c in store.all():
            unique.setdefault(c.dna_hash, (f"#{c.id}", c.dna))
    rows = list(unique.values())
    if len(rows) > limit:
        rows = [rows[round(i * (len(rows) - 1) / (limit - 1))] for i in range(limit)]
    vocab = load_dataset(config.data).vocab_size
    shape = (config.data.batch_size, config.data.seq_len + 1)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, vocab, shape), jnp.int32)
    return rows, (config.model, vocab), batch


def time_program(dna, cfg, batch, optimizer, unrolls: dict[str, int], steps: int,
                 repeats: int) -> dict:
    """Compile each variant cold, then time their steps in turn."""
    options = compiler_options()
    runs = {}
    for name, unroll in unrolls.items():
        model = dataclasses.replace(build_lm(dna, *cfg), unroll=unroll)
        init_state, train_step, _ = make_steps(model, optimizer)
        state = init_state(0, batch)
        lowered = train_step.trace(state, batch).lower()
        jax.clear_caches()
        t = time.perf_counter()
        step = lowered.compile(options)
        compile_s = time.perf_counter() - t
        state, metrics = step(state, batch)
        runs[name] = {"compile_s": compile_s, "loss": float(metrics["loss"]),
                      "step": step, "state": state, "times": []}
    names = list(unrolls)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            run = runs[name]
            state = run["state"]
            t = time.perf_counter()
            for _ in range(steps):
                state, metrics = run["step"](state, batch)
            jax.block_until_ready(metrics)
            run["times"].append((time.perf_counter() - t) / steps)
            run["state"] = state
    return {name: {"compile_s": run["compile_s"], "loss": run["loss"],
                   "step_ms": 1000 * statistics.median(run["times"])}
            for name, run in runs.items()}


def loss_diff(a: float, b: float) -> float:
    """|a - b|; 0 when both are NaN or Inf alike (the same non-finite loss), inf when
    only one is finite."""
    if math.isfinite(a) and math.isfinite(b):
        return abs(a - b)
    return 0.0 if (math.isnan(a) and math.isnan(b)) or a == b else math.inf


def med_ratio(records: list[dict], key: str) -> float:
    ratios = [r[f"{key}_unrolled"] / r[f"{key}_loop"] for r in records]
    return statistics.median(ratios) if ratios else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=2, help="blocks in the shell")
    ap.add_argument("--programs", type=int, default=None, help="random programs")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats")
    ap.add_argument("--quick", action="store_true", help="few programs and steps (smoke test)")
    ap.add_argument("--store", default=None, help="time the programs of this search's store")
    ap.add_argument("--limit", type=int, default=12, help="programs taken from --store")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = ap.parse_args(argv)
    num_random = args.programs if args.programs is not None else (1 if args.quick else 8)
    steps = args.steps if args.steps is not None else (2 if args.quick else 10)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)

    if args.store:
        todo, cfg, batch = store_programs(args.store, args.limit)
        c = {"d_model": cfg[0].d_model, "num_layers": cfg[0].num_layers,
             "seq": batch.shape[1] - 1, "batch": batch.shape[0], "vocab": cfg[1],
             "store": args.store}
    else:
        c = dict(COMPILE_SHAPE, num_layers=args.layers)
        cfg, batch = lm_config(c), random_batch(c)
        todo = programs(num_random, args.quick)
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-3))
    layers = c["num_layers"]
    unrolls = {"loop": 1, "unrolled": layers}
    log(f"{jax.default_backend()}: d_model {c['d_model']}, {layers} layers, seq "
        f"{c['seq']}, batch {c['batch']}, vocab {c['vocab']}; {repeats} x {steps} steps")

    records = []
    lines = [f"{'program':<18}{'compile s':>20}{'step ms':>20}{'first loss':>22}",
             f"{'':<18}{'loop':>10}{'unrolled':>10}{'loop':>10}{'unrolled':>10}"
             f"{'loop':>11}{'unrolled':>11}"]
    for name, dna in todo:
        try:
            res = time_program(dna, cfg, batch, optimizer, unrolls, steps, repeats)
        except Exception as e:  # noqa: BLE001 -- a program that fails is listed, not fatal
            log(f"  {name}: failed: {type(e).__name__}: {str(e)[:200]}")
            records.append({"program": name, "error": f"{type(e).__name__}: {e}"[:300]})
            continue
        lo, un = res["loop"], res["unrolled"]
        records.append({"program": name, **{f"{k}_{v}": res[v][k] for v in unrolls
                                            for k in ("compile_s", "step_ms", "loss")}})
        line = (f"{name:<18}{lo['compile_s']:10.2f}{un['compile_s']:10.2f}"
                f"{lo['step_ms']:10.1f}{un['step_ms']:10.1f}{lo['loss']:11.4f}{un['loss']:11.4f}")
        lines.append(line)
        log(line)

    ok = [r for r in records if "error" not in r]

    def med(key):
        return statistics.median(r[key] for r in ok) if ok else float("nan")

    summary = {
        "backend": jax.default_backend(), "config": c, "steps": steps, "repeats": repeats,
        "engine_unroll": layer_unroll(layers),
        "compile_s_median_loop": med("compile_s_loop"),
        "compile_s_median_unrolled": med("compile_s_unrolled"),
        "step_ms_median_loop": med("step_ms_loop"),
        "step_ms_median_unrolled": med("step_ms_unrolled"),
        # Per program, then the median: one slow program does not set the figure.
        "compile_ratio_median": med_ratio(ok, "compile_s"),
        "step_ratio_median": med_ratio(ok, "step_ms"),
        "step_ratio_max_speedup": max((r["step_ms_loop"] / r["step_ms_unrolled"] for r in ok),
                                      default=float("nan")),
        "loss_max_abs_diff": max((loss_diff(r["loss_loop"], r["loss_unrolled"]) for r in ok),
                                 default=float("nan")),
        "failures": len(records) - len(ok),
        "records": records,
    }
    lines += ["",
              f"{'median':<18}{summary['compile_s_median_loop']:10.2f}"
              f"{summary['compile_s_median_unrolled']:10.2f}{summary['step_ms_median_loop']:10.1f}"
              f"{summary['step_ms_median_unrolled']:10.1f}",
              (f"unrolled / loop, median over programs: compile {summary['compile_ratio_median']:.2f}"
               f"x, step {summary['step_ratio_median']:.2f}x (largest speed-up "
               f"{summary['step_ratio_max_speedup']:.1f}x); first losses differ by at most "
               f"{summary['loss_max_abs_diff']:.1e}; failures {summary['failures']}"),
              f"the engine on {summary['backend']} runs {summary['engine_unroll']} layer(s) per "
              f"loop step"]
    text = "\n".join(lines)
    if args.json:
        log(text)
        print(json.dumps(summary, indent=1))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
