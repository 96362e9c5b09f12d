"""The transfer ladder: final selection by settings larger than the search's.

A search's fitness is a cheap proxy: a small model, short contexts, a few hundred steps.
What it is for is quality at scale, and the settings a single machine affords can rank
blocks differently from larger ones (a block that mixes only a few neighbouring tokens
wins short contexts; attention pays with longer ones and longer training). The Primer
paper picked its winner by retraining its top 100 longer; the systems after it (STAR,
Genesys) climb a ladder of larger settings, fewer candidates at each. This module holds
the ladder's settings and its one rule, successive halving:

* rung 1 trains the search's best ``rungs[0].candidates``;
* rung k+1 trains the best ``rungs[k].candidates`` of rung k, ranked by the mean fitness
  over the rung's training seeds (a failed run counts as infinite);
* the winner is the best at the top rung.

Each rung's fitness is the search's fitness config with the rung's ``fitness`` tables
merged in key by key, written like the search config's own ``[fitness.*]`` tables: a
rung can widen the model, lengthen the context, change the tokeniser, train longer and
make the recall task harder. ``include_seeds`` lets the search's seed blocks (its first
candidates, copies of the seeds) climb every rung beside the promoted ones, so that each
rung says how the winners compare with where the search started.

:func:`ladder_results` reads a climb back from a store (it loads no JAX: ``top`` and
``show`` use it); :func:`primer_search.retrain.climb_ladder` runs the ladder on a store's
candidates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

from primer_search.stats import over_seeds

__all__ = ["LadderConfig", "Rung", "check_rung_settings", "ladder_results", "mean_fitness",
           "promote", "rung_label", "rung_results"]

_RUNG = re.compile(r"rung (\d+): (.+)")


@dataclasses.dataclass(frozen=True)
class Rung:
    """One setting of the ladder."""

    # A short name for tables and the store, e.g. "2x width, 4x context".
    name: str
    # How many candidates train at this rung: the search's best for the first rung, the
    # best of the rung below for the others (no more than the rung below trained).
    candidates: int
    # Training seeds per candidate.
    seeds: int = 2
    # The rung's fitness settings over the search's, as nested tables with the keys of
    # the search config's [fitness] section (data, model, optim, budget, recall, seed),
    # e.g. {model = {d_model = 128}, budget = {steps = 1000}}.
    fitness: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.name.strip():
            raise ValueError("a ladder rung needs a name")
        if self.candidates < 1:
            raise ValueError(f"rung {self.name!r}: candidates must be >= 1, got "
                             f"{self.candidates}")
        if self.seeds < 1:
            raise ValueError(f"rung {self.name!r}: seeds must be >= 1, got {self.seeds}")


@dataclasses.dataclass(frozen=True)
class LadderConfig:
    """Final selection up a ladder of larger settings (``primer-search retrain --ladder``)."""

    # A resume may change the ladder: it is climbed after the search, and each rung's
    # settings are checked against the runs already made under its name.
    resumable: ClassVar[bool] = True

    # The rungs, smallest first; empty: the search has no ladder.
    rungs: tuple[Rung, ...] = ()
    # Let the search's seed blocks (the first trained copy of each) climb every rung
    # beside the promoted candidates, outside the count of each rung.
    include_seeds: bool = True

    def __post_init__(self):
        for lower, upper in zip(self.rungs, self.rungs[1:]):
            if upper.candidates > lower.candidates:
                raise ValueError(
                    f"ladder rung {upper.name!r} trains {upper.candidates} candidates, more "
                    f"than the {lower.candidates} of the rung below ({lower.name!r}): a rung "
                    "promotes from the one below")
        names = [r.name for r in self.rungs]
        if len(set(names)) != len(names):
            raise ValueError(f"ladder rung names must differ, got {names}")


def rung_label(number: int, name: str) -> str:
    """How a rung's runs are named in the store (the retrain rows' budget):
    ``"rung 2: 2x width"`` for the second rung (``number`` counts from 1)."""
    return f"rung {number}: {name}"


def mean_fitness(values: Sequence[float]) -> float:
    """The mean over a rung's seeds; infinite if any run failed (infinite or NaN); see
    :func:`primer_search.stats.over_seeds`."""
    return over_seeds(values)[0]


def promote(results: Mapping[Hashable, Sequence[float]], n: int,
            order: Sequence[Hashable]) -> list[Hashable]:
    """The best ``n`` of a rung by mean fitness over seeds (:func:`mean_fitness`), ties
    broken by ``order`` (the rung's entry order: the better at the rung below first).
    Only keys with results are ranked; a candidate whose every run failed is never
    promoted."""
    rank = {key: i for i, key in enumerate(order)}
    finite = [k for k in results if math.isfinite(mean_fitness(results[k]))]
    finite.sort(key=lambda k: (mean_fitness(results[k]), rank.get(k, len(rank))))
    return finite[:max(0, n)]


def _run_summary(rows) -> dict:
    """One candidate's runs at one rung: fitness (what the ladder ranks by) and the
    language model's own numbers, per seed and as means."""
    results = [r.result for r in rows]
    fits = [math.inf if r.failed else r.fitness for r in results]
    ok = [r for r in results if not r.failed]

    def mean(field):
        values = [getattr(r, field) for r in ok]
        return statistics.fmean(values) if len(ok) == len(results) and values else math.nan

    mean_fit, std_fit = over_seeds(fits)
    return {"seeds": [r.seed for r in rows], "fitnesses": fits,
            "mean_fitness": mean_fit, "std_fitness": std_fit,
            "perplexities": [r.perplexity for r in results],
            "perplexity": mean("perplexity"), "bits_per_byte": mean("bits_per_byte"),
            "recall_accuracy": mean("recall_accuracy"),
            "recall_accuracies": [r.recall_accuracy for r in results],
            "context_use": mean("context_use"),
            "steps": max((r.steps for r in ok), default=0),
            "stage_perplexity": [statistics.fmean(v) for v in zip(
                *[r.stage_perplexity or r.stage_fitness for r in ok])]
            if len(ok) == len(results) else []}


def rung_results(store, number: int, name: str) -> dict:
    """Rung ``number`` (from 1) named ``name`` as a store holds it: ``rung``, ``name``,
    ``label`` and ``candidates``: {candidate id: its summary (:func:`_run_summary`)} over
    its finished runs at that rung, best mean fitness first."""
    label = rung_label(number, name)
    by_candidate: dict[int, list] = {}
    for row in store.retrain_rows(label):
        if row.status.is_finished():
            by_candidate.setdefault(row.parent_id, []).append(row)
    summaries = {cid: _run_summary(sorted(rows, key=lambda r: r.seed))
                 for cid, rows in by_candidate.items()}
    ranked = sorted(summaries, key=lambda c: (summaries[c]["mean_fitness"], c))
    return {"rung": number, "name": name, "label": label,
            "candidates": {c: summaries[c] for c in ranked}}


def ladder_results(store) -> list[dict]:
    """Every rung found in a store (by its runs' labels), lowest first, each as
    :func:`rung_results` gives it. A rung climbed again under a new name (new settings;
    :func:`check_rung_settings`) is listed under each of its names, in name order: its
    earlier runs are results too."""
    rungs = []
    for budget in store.retrain_budgets():
        m = _RUNG.fullmatch(budget)
        if m:
            rungs.append((int(m.group(1)), m.group(2)))
    return [rung_results(store, number, name) for number, name in sorted(rungs)]


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_rung_settings(store, label: str, fitness) -> None:
    """Refuse to climb rung ``label`` under ``fitness`` (a FitnessConfig) when its runs in
    ``store`` trained under other settings: they would be found done and their results
    mixed with the new setting's. The first climb of a rung records its settings."""
    settings = json.loads(json.dumps(dataclasses.asdict(fitness)))
    known = store.budget_settings(label)
    if known is None:
        store.record_budget_settings(label, settings)
        return
    # A setting the record lacks (added to the engine since) counts as its default.
    defaults = _flat(json.loads(json.dumps(dataclasses.asdict(type(fitness)()))))
    old, new = {**defaults, **_flat(known)}, _flat(settings)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        shown = ", ".join(f"fitness.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ValueError(f"{label!r}: its runs in {store.path} trained under other settings "
                         f"({shown}{more}); give the rung a new name to train it anew")
