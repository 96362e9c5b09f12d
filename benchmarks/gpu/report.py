"""The table of a check.sh run: one row per step, from the files it wrote.

    python benchmarks/gpu/report.py RESULTS_DIR [--mode gpu|cpu] [--total-s N]

Reads ``steps.tsv`` (step, exit status, seconds, limit) and each step's standard
output (``NAME.out``: JSON for the benchmarks), prints a Markdown table and writes it
to ``summary.md``, and the figures to ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _json(path: Path):
    """The JSON document on a step's standard output (anything before it skipped)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for start in range(len(text)):
        if text[start] in "[{" and (start == 0 or text[start - 1] == "\n"):
            try:
                return json.loads(text[start:])
            except ValueError:
                continue
    return None


def _f(x, fmt=".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, fmt)


def describe(name: str, out: Path) -> tuple[str, dict]:
    """What a step measured: a short text for the table, and its figures."""
    if name == "install":
        lines = [ln for ln in out.read_text().splitlines() if ln.startswith(("ray ", "jax "))] \
            if out.exists() else []
        return "; ".join(lines), {}
    if name == "no_gpu":
        return "Ray sees no GPU: the GPU steps were not run", {}
    if name.startswith("corpus_"):
        lines = [ln for ln in out.read_text().splitlines() if ln.startswith("training data")] \
            if out.exists() else []
        return "; ".join(ln.split(", in the cache")[0] for ln in lines), {}
    data = _json(out)
    if data is None:
        return "", {}
    if name == "ray_smoke":
        a = data.get("actor") or {}
        fig = {k: data.get(k) for k in ("ray_version", "import_ray_s", "init_s", "task_s",
                                          "actor_s", "shutdown_s")}
        fig.update(gpus=data.get("resources", {}).get("GPU", 0),
                   cpus=data.get("resources", {}).get("CPU"), actor_backend=a.get("backend"))
        return (f"Ray {fig['ray_version']}: init {_f(fig['init_s'])} s, task {_f(fig['task_s'])} s, "
                f"JAX actor {_f(fig['actor_s'])} s on {a.get('backend')} "
                f"({', '.join(a.get('devices', []))}); {_f(fig['cpus'])} CPUs, {fig['gpus']} GPUs"), fig
    if name == "compile_and_step":
        keys = ("backend", "compile_programs", "compile_failures", "compile_s_median",
                "compile_s_median_random", "compile_s_median_seeds", "step_ratio_vs_flax",
                "step_ratio_vs_flax_loop", "step_ms_dna", "step_ms_flax", "wall_s")
        fig = {k: data.get(k) for k in keys}
        text = (f"{fig['backend']}: DNA -> first step median {_f(fig['compile_s_median'])} s over "
                f"{fig['compile_programs']} programs (random {_f(fig['compile_s_median_random'])}, "
                f"seeds {_f(fig['compile_s_median_seeds'])}; {fig['compile_failures']} failed); "
                f"step vs Flax {_f(fig['step_ratio_vs_flax'], '.3f')} "
                f"({_f(fig['step_ms_dna'])} vs {_f(fig['step_ms_flax'])} ms)")
        if fig["step_ratio_vs_flax_loop"] is not None:
            text += f", vs Flax unrolled {_f(fig['step_ratio_vs_flax_loop'], '.3f')}"
        return text, fig
    if name.startswith("throughput_"):
        row = data[0] if isinstance(data, list) and data else {}
        return (f"{row.get('layout')}: {row.get('finished')} finished ({row.get('trained')} "
                f"trained) in {row.get('wall_s')} s, {row.get('trained_per_hour')} trained/h, "
                f"busy {row.get('busy_fraction')}, controller share "
                f"{row.get('loop_share')}, dedup {row.get('dedup_hit_rate')}"), row
    if name == "efficacy":
        searches = data.get("searches") if isinstance(data, dict) else None
        row = searches[0] if searches else {}
        return (f"{row.get('arm')} seed {row.get('seed')}: {row.get('finished')} finished "
                f"({row.get('full_budget')} full budget) in {row.get('seconds')} s, best "
                f"{_f(row.get('best_search_fitness'), '.4g')}, {row.get('trained_per_hour')} "
                f"trained/h, stopped by {row.get('stopped_by')}"), row
    return "", data if isinstance(data, dict) else {"output": data}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--mode", default="gpu")
    p.add_argument("--total-s", type=float)
    args = p.parse_args(argv)
    res = Path(args.results)
    rows, figures = [], {}
    for line in (res / "steps.tsv").read_text().splitlines()[1:]:
        name, rc, seconds, limit = line.split("\t")
        status = {"0": "ok", "124": "timed out", "137": "killed", "skipped": "skipped"}.get(
            rc, f"rc {rc}")
        text, fig = describe(name, res / f"{name}.out")
        figures[name] = {"rc": rc, "seconds": float(seconds), "limit_s": limit, **fig}
        rows.append(f"| {name} | {seconds} | {status} | {text} |")
    lines = [f"GPU check ({args.mode})"
             + (f", {args.total_s:.0f} s in all" if args.total_s is not None else ""),
             "", "| step | s | status | result |", "|---|---:|---|---|", *rows]
    text = "\n".join(lines)
    print(text)
    (res / "summary.md").write_text(text + "\n")
    (res / "summary.json").write_text(json.dumps(
        {"mode": args.mode, "total_s": args.total_s, "steps": figures}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
