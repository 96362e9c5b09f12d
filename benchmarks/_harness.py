"""What the benchmarks share: settings from a search config, programs trained over
seeds, one spread convention, and one way to print a table or JSON.

A benchmark script is its question (which programs, which settings, what it compares)
on top of these:

* :func:`fitness_settings`: a search config's fitness settings, as ``load_config``
  reads them (``tiny_cpu`` by default), so a benchmark measures what a search runs;
  ``recall=False`` for those that measure language modelling alone;
* :func:`train_over_seeds`: train each program once per seed, log every run on stderr
  (a failure with its status and reason), return the results;
* :func:`mean_std`: the one spread convention of the tables: mean and sample standard
  deviation (n - 1) over the runs that succeeded, 0.0 for a single run, ``(None,
  None)`` when none did; a row also says how many of its runs succeeded (:func:`seed_row`
  makes such a row's figures);
* :func:`table` and :func:`print_json`: an aligned Markdown or plain table, and JSON;
* :data:`COMPILE_SHAPE`, :func:`lm_config` and :func:`random_batch`: a model size and
  random token batches, for the benchmarks that time compiling and stepping without a
  corpus.

Benchmarks import this as ``import _harness``: Python puts a script's own folder first on
its import path, and the tests add ``benchmarks/`` to theirs.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence

from primer_search.fitness.config import BudgetConfig, FitnessConfig, ModelConfig
from primer_search.fitness.results import EvalResult
from primer_search.search.config import load_config

# A table column: its title, whether it is right-aligned, and its cell of a row.
Column = tuple[str, bool, Callable[[dict], str]]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fitness_settings(config: str = "tiny_cpu", overrides: Sequence[str] = (), *,
                     recall: bool | None = None) -> FitnessConfig:
    """``load_config(config, overrides).fitness``; ``recall`` turns the recall task on or
    off (None: as the config says). Benchmarks of language modelling turn it off: it
    trains its own fixed budget beside every run, and its factor in the fitness would hide
    the perplexity they report (``EvalResult.perplexity`` is the language model's)."""
    fitness = load_config(config, list(overrides)).fitness
    if recall is not None:
        fitness = with_recall(fitness, recall)
    return fitness


def with_recall(fitness: FitnessConfig, enabled: bool) -> FitnessConfig:
    """``fitness`` with its recall task turned on or off."""
    return dataclasses.replace(fitness, recall=dataclasses.replace(fitness.recall,
                                                                   enabled=enabled))


def describe(r: EvalResult) -> str:
    """One run in a line: its perplexity (and fitness where they differ) and speed, or
    its failure."""
    if r.failed:
        return f"FAILED {r.status}: {r.reason}"
    fitness = "" if r.fitness == r.perplexity else f", fitness {r.fitness:.2f}"
    return (f"ppl {r.perplexity:.2f}{fitness} after {r.steps} steps "
            f"({1000 * r.step_time_s:.1f} ms/step)")


def train_over_seeds(evaluator, programs: Iterable[tuple[str, object]], seeds: Sequence[int],
                     *, budget: BudgetConfig | None = None, label: str = ""
                     ) -> dict[str, list[EvalResult]]:
    """Train every ``(name, dna)`` of ``programs`` once per seed of ``seeds`` with
    ``evaluator`` (under ``budget``, or its config's); the results by name, in seed order.
    Each run is logged on stderr, prefixed by ``label``."""
    out: dict[str, list[EvalResult]] = {}
    for name, dna in programs:
        runs = out.setdefault(name, [])
        for seed in seeds:
            r, _ = evaluator.evaluate(dna, seed=seed, budget=budget)
            log(f"{label}{' ' if label else ''}{name}, seed {seed}: {describe(r)}")
            runs.append(r)
    return out


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) of ``values``: 0.0 for one value,
    ``(None, None)`` for none. Give it the values of the runs that succeeded."""
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(results: Sequence[EvalResult], field: str) -> tuple[float | None, float | None]:
    """:func:`mean_std` of ``field`` over the runs of ``results`` that succeeded."""
    return mean_std([getattr(r, field) for r in results if not r.failed])


def seed_row(results: Sequence[EvalResult], field: str, key: str) -> dict:
    """A row's figures for ``field`` over one program's runs: the successful runs' values
    under ``key``, their :func:`mean_std` as ``mean`` and ``std``, and the failures."""
    mean, std = summarise(results, field)
    return {key: [getattr(r, field) for r in results if not r.failed], "mean": mean,
            "std": std, "failed": failures(results)}


def failures(results: Sequence[EvalResult]) -> list[dict]:
    """The runs that failed, by their position (the seed's index): status and reason."""
    return [{"seed": k, "status": r.status, "reason": r.reason}
            for k, r in enumerate(results) if r.failed]


def fmt(pair: tuple[float | None, float | None], digits: int = 1) -> str:
    """``mean +- std`` of a :func:`mean_std` pair; "n/a" when no run succeeded."""
    mean, std = pair
    return "n/a" if mean is None else f"{mean:.{digits}f} +- {std:.{digits}f}"


def table(rows: Sequence[dict], columns: Sequence[Column], markdown: bool = False) -> str:
    """``rows`` as a table of ``columns``, aligned for a terminal; ``markdown``: a
    Markdown table (still aligned, so it pastes into the docs), else space-separated with
    a rule under the header."""
    cells = [[title for title, _, _ in columns]] + [[cell(r) for _, _, cell in columns]
                                                    for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def line(values):
        parts = [v.rjust(w) if right else v.ljust(w)
                 for v, w, (_, right, _) in zip(values, widths, columns)]
        return f"| {' | '.join(parts)} |" if markdown else " ".join(parts)

    header = line(cells[0])
    if markdown:
        rule = "|" + "|".join("-" * (w + 1) + (":" if right else "-")
                              for w, (_, right, _) in zip(widths, columns)) + "|"
    else:
        rule = "-" * len(header)
    return "\n".join([header, rule] + [line(values) for values in cells[1:]])


def print_json(report) -> None:
    """A benchmark's report on stdout as JSON (indented, so it diffs line by line)."""
    print(json.dumps(report, indent=1))


# The compile-latency shape: small, so that 20+ programs compile quickly.
COMPILE_SHAPE = {"d_model": 128, "num_layers": 2, "seq": 64, "batch": 8, "vocab": 1024}


def lm_config(c: dict) -> tuple[ModelConfig, int]:
    """The model config and vocabulary size of a shape like :data:`COMPILE_SHAPE`."""
    return ModelConfig(d_model=c["d_model"], num_layers=c["num_layers"]), c["vocab"]


def random_batch(c: dict, seed: int = 0):
    """A batch of random token ids of shape ``c`` (``batch`` rows of ``seq + 1``)."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, c["vocab"], (c["batch"], c["seq"] + 1)), jnp.int32)
