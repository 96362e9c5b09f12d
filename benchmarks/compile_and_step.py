"""Benchmark: DNA -> first train step latency, and train-step speed against plain Flax.

Figures (``--json`` prints them as one JSON object on stdout; the table then goes to
stderr):

* ``compile_s_median``: seconds from a DNA to its first jitted train step finished
  (``build_lm`` + ``make_steps`` + ``init_state`` + first ``train_step``, blocked on), the
  median over random programs (``random_dna(random.Random(seed))``, seeds 0..N-1, default
  ``RandomSpec``) and the seed programs (``primer_search.program.seeds.names()``), with min/max and
  per-group medians. Small config. Programs that fail to compile are counted and left out
  of the timings; programs whose first loss is not finite are counted but still timed
  (they did compile and step).
* ``step_ratio_vs_flax``: train-step time of the DNA-compiled ``transformer`` seed over the
  hand-written Flax Transformer (``benchmarks/flax_transformer.py``, layers under
  ``nn.scan`` like the shell's ``lax.scan``), same optimizer, same batch, same weights.
  On the CPU the shell unrolls its scan (``fitness.model.layer_unroll``), so there the
  like-for-like figure is ``step_ratio_vs_flax_loop`` (Flax with its layers unrolled).
  Timed in interleaved repeats (DNA, Flax, Flax, DNA, ...) of ``--steps`` steps each after
  a warm-up. The headline ratio is the median over repeats of the *paired* ratio (DNA and
  Flax timed back to back in the same repeat), which is robust to load that comes and
  goes between repeats on a shared machine; the ratio of medians, of best times and of
  process CPU time are reported next to it. The full run also times the Flax model with
  its layers unrolled (a Python loop): ``step_ratio_vs_flax_loop``.
* ``peak_rss_mb``: peak resident memory of this process (``ru_maxrss / 1024``).

The Flax models start from the DNA model's (perturbed) initial weights mapped across, so
their first train steps see the same function, weights and batch: the first losses and
gradient norms are compared (``equivalence``).

Usage: ``python benchmarks/compile_and_step.py [--json] [--quick] [--steps N]
[--programs N] [--repeats N] [--no-hlo]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import statistics
import sys
import time

# Every compile is timed cold: the persistent compilation cache would turn a rerun's
# compiles into disk reads (primer_search.fitness.compile_cache measures those).
os.environ.setdefault("PRIMER_SEARCH_COMPILATION_CACHE", "0")


import jax
import jax.numpy as jnp
import numpy as np
from _harness import COMPILE_SHAPE, lm_config, log, random_batch
from flax_transformer import FlaxLM, params_from_dna

from primer_search.fitness.config import ModelConfig, OptimConfig
from primer_search.fitness.model import build_lm
from primer_search.fitness.train import TrainState, compiler_options, make_optimizer, make_steps
from primer_search.program import seeds
from primer_search.program.builder import ProgramBuilder
from primer_search.program.random_programs import RandomSpec, random_dna

# Step-speed config (the project's design notes).
STEP_CFG = {"d_model": 128, "num_layers": 2, "seq": 128, "batch": 32, "vocab": 8192}
# --quick (a smoke test): a smaller batch and vocabulary, so the steps take little time.
QUICK_STEP_CFG = {"d_model": 128, "num_layers": 2, "seq": 64, "batch": 8, "vocab": 2048}


# ---- part 1: DNA -> first train step -------------------------------------------------

# The parts of DNA -> first train step, in order (see time_first_step).
PHASES = ("build", "init", "trace", "lower", "xla", "run")


def time_first_step(dna, cfg: tuple[ModelConfig, int], batch, optimizer) -> dict:
    """Build, init, jit and run one train step; the time of each phase and the first loss.

    Phases: ``build`` (DNA -> block plan and LM), ``init`` (parameters on the host and
    the jitted optimiser init), ``trace`` (Python -> jaxpr: our interpreter runs here),
    ``lower`` (jaxpr -> StableHLO), ``xla`` (XLA's compile), ``run`` (the first step)."""
    times = {}
    t = time.perf_counter()
    model = build_lm(dna, *cfg)
    init_state, train_step, _ = make_steps(model, optimizer)
    times["build"], t = time.perf_counter() - t, time.perf_counter()
    state = jax.block_until_ready(init_state(0, batch))
    times["init"], t = time.perf_counter() - t, time.perf_counter()
    traced = train_step.trace(state, batch)
    times["trace"], t = time.perf_counter() - t, time.perf_counter()
    lowered = traced.lower()
    times["lower"], t = time.perf_counter() - t, time.perf_counter()
    step = lowered.compile(compiler_options())  # as the evaluator compiles
    times["xla"], t = time.perf_counter() - t, time.perf_counter()
    state, metrics = step(state, batch)
    metrics = jax.block_until_ready(metrics)
    times["run"] = time.perf_counter() - t
    loss, gnorm = float(metrics["loss"]), float(metrics["grad_norm"])
    total = sum(times.values())
    return {"total_s": total, "init_s": times["build"] + times["init"],
            "step_s": total - times["build"] - times["init"],
            **{f"{k}_s": v for k, v in times.items()}, "loss": loss,
            "finite": math.isfinite(loss) and math.isfinite(gnorm)}


def compile_benchmark(num_programs: int, optimizer) -> dict:
    c = COMPILE_SHAPE
    cfg, batch = lm_config(c), random_batch(c)
    programs: list[tuple[str, str, object]] = []
    for s in range(num_programs):
        try:
            programs.append(("random", f"random_{s}", random_dna(random.Random(s), RandomSpec())))
        except Exception as e:  # noqa: BLE001 -- a generator failure is counted, not fatal
            programs.append(("random", f"random_{s}", e))
    programs += [("seed", name, seeds.get(name)) for name in seeds.names()]

    # Warm-up (discarded): backend start-up and first-use costs should not land on the
    # first program measured. A two-instruction block keeps it cheap (it has parameters:
    # the shell's lax.scan over block parameters needs at least one).
    warm = ProgramBuilder()
    warm_main = warm.subprogram()
    warm_main("ADD", warm_main.h0, warm_main("CONV_1X1", warm_main.h0, dim=1))
    time_first_step(warm.build(), cfg, batch, optimizer)

    records = []
    for group, name, dna in programs:
        rec = {"group": group, "name": name}
        if isinstance(dna, Exception):
            rec.update(status="generation_failed", error=f"{type(dna).__name__}: {dna}")
        else:
            rec["instructions"] = dna.num_instructions()
            try:
                rec.update(time_first_step(dna, cfg, batch, optimizer))
                rec["status"] = "ok" if rec["finite"] else "nonfinite"
            except Exception as e:  # noqa: BLE001 -- count every failure, never crash
                rec.update(status="compile_failed", error=f"{type(e).__name__}: {e}"[:300])
        log(f"  {name:<12} {rec['status']:<15} "
            + (f"{rec['total_s']:.2f} s" if "total_s" in rec else rec.get("error", "")))
        records.append(rec)

    timed = [r for r in records if "total_s" in r]
    times = [r["total_s"] for r in timed]

    def med(group):
        vals = [r["total_s"] for r in timed if r["group"] == group]
        return statistics.median(vals) if vals else float("nan")

    return {
        "compile_s_median": statistics.median(times) if times else float("nan"),
        "compile_s_min": min(times, default=float("nan")),
        "compile_s_max": max(times, default=float("nan")),
        "compile_s_median_random": med("random"),
        "compile_s_median_seeds": med("seed"),
        "compile_init_s_median": statistics.median([r["init_s"] for r in timed])
        if timed else float("nan"),
        "compile_step_s_median": statistics.median([r["step_s"] for r in timed])
        if timed else float("nan"),
        # Where the time goes: the median of each phase of DNA -> first step.
        "compile_breakdown_s": {p: round(statistics.median([r[f"{p}_s"] for r in timed]), 3)
                                for p in PHASES} if timed else {},
        "compile_programs": len(records),
        "compile_timed": len(timed),
        "compile_failures": sum(r["status"] in ("compile_failed", "generation_failed")
                                for r in records),
        "compile_nonfinite": sum(r["status"] == "nonfinite" for r in records),
        "compile_records": records,
    }


# ---- part 2: train-step speed, DNA seed vs Flax ------------------------------------------

def _perturb(params, key):
    """Move every parameter a little off its init, so LN scales/biases are not 1/0."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    out = [a * (1 + 0.1 * jax.random.normal(k, a.shape)) + 0.02 * jax.random.normal(
        jax.random.fold_in(k, 1), a.shape) for a, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(treedef, out)


def equivalence(first: dict[str, dict]) -> dict:
    """Compare each Flax model's first train step with the DNA model's: same weights,
    same batch, so the loss and the gradient norm must agree."""
    ref = first["dna"]
    out = {}
    for name, m in first.items():
        if name == "dna":
            continue
        if not m["mapped"]:
            out[name] = {"match": None, "error": m["error"]}
            continue
        dl, dg = abs(ref["loss"] - m["loss"]), abs(ref["grad_norm"] - m["grad_norm"])
        out[name] = {"loss_dna": ref["loss"], "loss_flax": m["loss"], "loss_abs_diff": dl,
                     "grad_norm_dna": ref["grad_norm"], "grad_norm_flax": m["grad_norm"],
                     "grad_norm_rel_diff": dg / max(abs(ref["grad_norm"]), 1e-12),
                     "match": bool(dl < 1e-4 * max(1.0, abs(ref["loss"]))
                                   and dg < 1e-3 * max(1e-3, abs(ref["grad_norm"])))}
    return out


def hlo_stats(step, state, batch) -> dict:
    """Counts from the optimised HLO of a train step, and XLA's cost estimate."""
    compiled = step.lower(state, batch).compile()
    text = compiled.as_text()
    lines = [ln.strip() for ln in text.splitlines() if " = " in ln]
    ops: dict[str, int] = {}
    for ln in lines:
        # "%x = f32[..]{..} opname(args), ..." or "%w = (tuple type) while(args), ...": the
        # op is the first lower-case word followed by "(" (shapes are followed by "[").
        m = re.search(r"\s([a-z][\w\-]*)\(", ln.split(" = ", 1)[1])
        if m:
            ops[m.group(1)] = ops.get(m.group(1), 0) + 1
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    cost = cost or {}
    return {"instructions": len(lines), "fusions": ops.get("fusion", 0),
            "dots": ops.get("dot", 0), "transposes": ops.get("transpose", 0),
            "whiles": ops.get("while", 0),
            "flops": float(cost.get("flops", float("nan"))),
            "bytes_accessed": float(cost.get("bytes accessed", float("nan")))}


def step_benchmark(steps: int, repeats: int, optimizer, with_loop: bool,
                   with_hlo: bool, c: dict = STEP_CFG) -> dict:
    cfg, batch = lm_config(c), random_batch(c, seed=1)
    tokens_per_step = c["batch"] * c["seq"]

    dna_model = build_lm(seeds.get("transformer"), *cfg)
    dna_params = _perturb(dna_model.init(0, batch[:, :-1]), jax.random.PRNGKey(1))
    models = {"dna": dna_model, "flax": FlaxLM(*cfg, scan=True)}
    if with_loop:
        models["flax_loop"] = FlaxLM(*cfg, scan=False)

    params, first = {"dna": dna_params}, {"dna": {"mapped": True}}
    for name, model in models.items():
        if name == "dna":
            continue
        try:
            params[name] = params_from_dna(dna_params, scan=model.scan)
            first[name] = {"mapped": True}
        except KeyError as e:  # the compiler renamed parameters: time from own init
            log(f"  parameter mapping failed ({e!r}); {name} uses its own init, "
                "equivalence not checked")
            params[name] = model.init(0, batch[:, :-1])
            first[name] = {"mapped": False, "error": f"KeyError: {e}"}

    steps_fn, states = {}, {}
    for name, model in models.items():
        _, train_step, _ = make_steps(model, optimizer)
        p = jax.tree_util.tree_map(jnp.copy, params[name])  # train_step donates its state
        state = TrainState(p, optimizer.init(p), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        t0 = time.perf_counter()
        state, metrics = train_step(state, batch)  # compiles
        first[name].update(loss=float(metrics["loss"]),
                           grad_norm=float(metrics["grad_norm"]))
        for _ in range(2):  # warm-up
            state, metrics = train_step(state, batch)
        jax.block_until_ready(state)
        log(f"  {name}: compile + 3 warm-up steps {time.perf_counter() - t0:.2f} s, "
            f"first loss {first[name]['loss']:.6f}")
        steps_fn[name], states[name] = train_step, state

    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]  # A B B A ...: drift hits both
        for name in order:
            step, state = steps_fn[name], states[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                state, metrics = step(state, batch)
            jax.block_until_ready(state)
            wall[name].append((time.perf_counter() - t0) / steps)
            cpu[name].append((time.process_time() - c0) / steps)
            states[name] = state

    out: dict = {"step_config": dict(c), "step_steps": steps, "step_repeats": repeats}
    for name in models:
        ms = 1000 * statistics.median(wall[name])
        out[f"step_ms_{name}"] = ms
        out[f"step_ms_min_{name}"] = 1000 * min(wall[name])
        out[f"step_cpu_ms_{name}"] = 1000 * statistics.median(cpu[name])
        out[f"tokens_per_s_{name}"] = tokens_per_step / (ms / 1000)
        out[f"step_ms_all_{name}"] = [1000 * t for t in wall[name]]
    for ref in names[1:]:
        suffix = "" if ref == "flax" else ref[len("flax"):]
        # Headline: median over repeats of the paired ratio (DNA and Flax timed back to
        # back in the same repeat), robust to load that changes between repeats.
        out[f"step_ratio_vs_flax{suffix}"] = statistics.median(
            d / f for d, f in zip(wall["dna"], wall[ref]))
        out[f"step_ratio_vs_flax{suffix}_of_medians"] = (out["step_ms_dna"]
                                                          / out[f"step_ms_{ref}"])
        out[f"step_ratio_vs_flax{suffix}_best"] = min(wall["dna"]) / min(wall[ref])
        out[f"step_ratio_vs_flax{suffix}_cpu"] = statistics.median(
            d / f for d, f in zip(cpu["dna"], cpu[ref]))
    out["equivalence"] = equivalence(first)
    if with_hlo:
        out["hlo"] = {name: hlo_stats(steps_fn[name], states[name], batch)
                      for name in models}
    return out


# ---- report ---------------------------------------------------------------------------

def table(res: dict) -> str:
    c = COMPILE_SHAPE
    lines = [
        (f"DNA -> first train step (d_model {c['d_model']}, {c['num_layers']} layers, "
         f"seq {c['seq']}, batch {c['batch']}, vocab {c['vocab']})"),
        (f"  programs {res['compile_programs']}  timed {res['compile_timed']}  "
         f"compile failures {res['compile_failures']}  non-finite loss "
         f"{res['compile_nonfinite']}"),
        (f"  {'median':<10}{res['compile_s_median']:8.2f} s   (build+init "
         f"{res['compile_init_s_median']:.2f} s, first step "
         f"{res['compile_step_s_median']:.2f} s)"),
        ("  " + "  ".join(f"{p} {v:.2f}" for p, v in res["compile_breakdown_s"].items())
         + "  (median s per phase)"),
        f"  {'min':<10}{res['compile_s_min']:8.2f} s",
        f"  {'max':<10}{res['compile_s_max']:8.2f} s",
        f"  {'random':<10}{res['compile_s_median_random']:8.2f} s median",
        f"  {'seeds':<10}{res['compile_s_median_seeds']:8.2f} s median",
    ]
    if "step_config" in res:
        lines += _step_table(res)
    lines += ["", (f"peak RSS {res['peak_rss_mb']:.0f} MB   load average at start / end "
                   f"{res['loadavg_start']:.2f} / {res['loadavg_end']:.2f} "
                   f"({res['cpu_count']} CPUs)")]
    return "\n".join(lines)


def _step_table(res: dict) -> list[str]:
    s = res["step_config"]
    lines = [
        "",
        (f"Train step (d_model {s['d_model']}, {s['num_layers']} layers, seq {s['seq']}, "
         f"batch {s['batch']}, vocab {s['vocab']}; median of {res['step_repeats']} x "
         f"{res['step_steps']} steps)"),
        (f"  {'model':<28}{'ms/step':>10}{'tokens/s':>12}{'best ms':>10}"
         f"{'CPU ms':>10}"),
    ]
    labels = {"dna": "DNA transformer seed", "flax": "Flax (nn.scan)",
              "flax_loop": "Flax (unrolled loop)"}
    for name, label in labels.items():
        if f"step_ms_{name}" in res:
            lines.append(f"  {label:<28}{res[f'step_ms_{name}']:10.2f}"
                         f"{res[f'tokens_per_s_{name}']:12,.0f}{res[f'step_ms_min_{name}']:10.2f}"
                         f"{res[f'step_cpu_ms_{name}']:10.2f}")
    lines.append(f"  {'DNA / Flax ratio':<28}{'paired':>10}{'of medians':>12}{'best':>8}"
                 f"{'CPU time':>10}")
    for suffix, label in (("", "  vs Flax (nn.scan)"), ("_loop", "  vs Flax (loop)")):
        key = f"step_ratio_vs_flax{suffix}"
        if key in res:
            lines.append(f"  {label:<28}{res[key]:10.3f}{res[key + '_of_medians']:12.3f}"
                         f"{res[key + '_best']:8.3f}{res[key + '_cpu']:10.3f}")
    for name, e in res["equivalence"].items():
        if e.get("match") is None:
            lines.append(f"  equivalence vs {name}: not checked ({e.get('error')})")
        else:
            lines.append(f"  equivalence vs {name}: first-step loss {e['loss_dna']:.6f} vs "
                         f"{e['loss_flax']:.6f} (|diff| {e['loss_abs_diff']:.1e}), grad norm "
                         f"rel diff {e['grad_norm_rel_diff']:.1e} -> "
                         f"{'OK' if e['match'] else 'MISMATCH'}")
    if "hlo" in res:
        lines += ["", ("Optimised HLO of the train step (XLA counts a scan body once: the "
                       "scanned models show one layer's block work, the loop model both)"),
                  (f"  {'model':<12}{'instr':>8}{'fusions':>9}{'dots':>6}{'transp':>8}"
                   f"{'GFLOP':>8}{'GB accessed':>13}")]
        for name, h in res["hlo"].items():
            lines.append(f"  {name:<12}{h['instructions']:8d}{h['fusions']:9d}{h['dots']:6d}"
                         f"{h['transposes']:8d}{h['flops'] / 1e9:8.2f}"
                         f"{h['bytes_accessed'] / 1e9:13.2f}")
    return lines


def _json_safe(x):
    """Non-finite floats become null (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    ap.add_argument("--quick", action="store_true",
                    help="few programs and steps, small step config (smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repeat")
    ap.add_argument("--programs", type=int, default=None, help="random programs to compile")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved timing repeats")
    ap.add_argument("--no-hlo", action="store_true", help="skip the HLO statistics")
    ap.add_argument("--compile-only", action="store_true", help="skip the step benchmark")
    args = ap.parse_args(argv)
    steps = args.steps if args.steps is not None else (3 if args.quick else 10)
    programs = args.programs if args.programs is not None else (2 if args.quick else 20)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 12)

    # Compile and step costs do not depend on the rate's value: a fixed one.
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-3))
    res: dict = {"jax_version": jax.__version__, "backend": jax.default_backend(),
                 "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                 "compile_config": dict(COMPILE_SHAPE),
                 "quick": args.quick}
    res["loadavg_start"] = os.getloadavg()[0]
    t0 = time.perf_counter()
    log(f"compile benchmark: {programs} random programs + seeds {seeds.names()}")
    res.update(compile_benchmark(programs, optimizer))
    if not args.compile_only:
        log(f"step benchmark: {repeats} repeats x {steps} steps")
        res.update(step_benchmark(steps, repeats, optimizer, with_loop=not args.quick,
                                  with_hlo=not (args.quick or args.no_hlo),
                                  c=QUICK_STEP_CFG if args.quick else STEP_CFG))
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["wall_s"] = time.perf_counter() - t0
    res["loadavg_end"] = os.getloadavg()[0]

    text = table(res)
    if args.json:
        log(text)
        print(json.dumps(_json_safe(res), indent=1))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
