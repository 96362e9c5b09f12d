"""Statistics for comparing searches: medians with their spread, a paired test between
arms, and a compute ratio with a confidence interval.

A search is one draw of a noisy process, so one search per arm says little about how
much selection helps (in one measured run of three seeds per arm, one search in each
found the large gain). These helpers turn several searches per arm into numbers that say
how sure a comparison is. The tests come from SciPy; what is ours is only which test a
comparison of search arms calls for:

* :func:`over_seeds` and :func:`summarise_retrains`: one program's fitness over its
  training seeds (a retraining, a ladder rung), the mean it is ranked by and its spread;
* :func:`spread`: median, quartiles and the sample standard deviation (n - 1) of a set
  of results, the one spread convention of the benchmarks' tables;
* :func:`paired_test`: arms run with the same search seeds (the same start of the
  proposal stream and the same training seed) are paired; the Wilcoxon signed-rank test
  on the per-seed differences, exact for small samples, one-sided when asked whether one
  arm is better;
* :func:`correlation_p`: whether a rank correlation over a few items (the zoo's blocks,
  say) is above 0 beyond chance;
* :func:`steps_to_reach` and :func:`compute_ratio`: how many fewer steps a block needs to
  reach a reference's final perplexity, from perplexity curves, with a bootstrap
  interval over training seeds.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["RetrainSummary", "compute_ratio", "correlation_p", "over_seeds", "paired_test", "spread",
           "steps_to_reach", "summarise_retrains"]


def over_seeds(values: Sequence[float]) -> tuple[float, float]:
    """The mean and spread of one program's fitness over its training seeds, as every
    retraining and ladder rung ranks them: the mean is infinite if any run failed (a
    non-finite fitness) or there is none; the spread is the sample standard deviation
    (n - 1), 0.0 for a single run, NaN when a run failed."""
    if not values or any(not math.isfinite(v) for v in values):
        return math.inf, (math.nan if values else 0.0)
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclasses.dataclass(frozen=True)
class RetrainSummary:
    """One retrained candidate's runs under one budget (:func:`over_seeds` of them)."""

    id: int | None           # the retrained candidate
    budget: str | None       # its budget's label (None: rows from before labels were kept)
    runs: int
    mean_fitness: float
    std_fitness: float
    fitnesses: list[float]   # in the runs' id order

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarise_retrains(runs: Iterable[tuple[int | None, str | None, float]]
                       ) -> list[RetrainSummary]:
    """Finished retrain runs, each (retrained candidate, budget label, fitness) in id
    order (``Store.retrain_runs``), grouped by candidate and budget: best mean first,
    ties by candidate id."""
    groups: dict[tuple[int | None, str | None], list[float]] = {}
    for cid, budget, fitness in runs:
        groups.setdefault((cid, budget), []).append(fitness)
    out = [RetrainSummary(cid, budget, len(values), *over_seeds(values), values)
           for (cid, budget), values in groups.items()]
    return sorted(out, key=lambda r: (r.mean_fitness, r.id if r.id is not None else -1))


def spread(values: Sequence[float]) -> dict:
    """``n``, ``median``, ``q1``, ``q3``, ``mean`` and ``std`` (sample, n - 1; 0 for one
    value) of the finite ``values``; ``failed`` counts the others (a failed run)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    out = {"n": len(finite), "failed": len(values) - len(finite)}
    if not finite:
        return {**out, "median": math.nan, "q1": math.nan, "q3": math.nan,
                "mean": math.nan, "std": math.nan}
    q1, med, q3 = (float(q) for q in np.quantile(finite, [0.25, 0.5, 0.75]))
    return {**out, "median": med, "q1": q1, "q3": q3, "mean": statistics.fmean(finite),
            "std": statistics.stdev(finite) if len(finite) > 1 else 0.0}


def paired_test(a: Sequence[float], b: Sequence[float], alternative: str = "less") -> dict:
    """The Wilcoxon signed-rank test of paired results ``a[i]`` vs ``b[i]`` (lower is
    better; pairs with a non-finite side are dropped). ``alternative="less"`` asks
    whether ``a`` is better (its values lower); "two-sided" whether they differ.

    Returns ``n`` (pairs used), ``wins`` (pairs where ``a`` is lower), the median
    difference ``a - b``, the statistic and the p-value (None under 2 usable pairs, or
    when every difference is 0). With n pairs the smallest possible one-sided p-value is
    2^-n: five search seeds per arm cannot show p < 0.03."""
    from scipy.stats import wilcoxon

    if len(a) != len(b):
        raise ValueError(f"paired_test needs pairs: got {len(a)} and {len(b)} values")
    pairs = [(x, y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
    diffs = [x - y for x, y in pairs]
    out = {"n": len(pairs), "wins": sum(d < 0 for d in diffs),
           "median_difference": float(np.median(diffs)) if diffs else math.nan,
           "alternative": alternative, "statistic": None, "p_value": None}
    if len(pairs) < 2 or all(d == 0 for d in diffs):
        return out
    res = wilcoxon(diffs, alternative=alternative, zero_method="wilcox")
    return {**out, "statistic": float(res.statistic), "p_value": float(res.pvalue)}


def correlation_p(rho: float | None, n: int) -> float | None:
    """The one-sided p-value that a (rank) correlation ``rho`` over ``n`` pairs is above
    0 by chance: the t-distribution with n - 2 degrees of freedom, as
    ``scipy.stats.spearmanr(x, y, alternative="greater")`` computes it from the same
    two numbers. None for a missing correlation or under 3 pairs. Over 9 items a
    correlation needs about 0.58 to reach p = 0.05."""
    from scipy.stats import t as student_t

    if rho is None or not math.isfinite(rho) or n < 3:
        return None
    if rho >= 1.0:
        return 0.0
    if rho <= -1.0:
        return 1.0
    return float(student_t.sf(rho * math.sqrt((n - 2) / (1 - rho * rho)), n - 2))


def steps_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The first step at which a ``(step, perplexity)`` curve reaches ``target``,
    interpolating linearly between recorded points (a curve already at or below the
    target at its first point reaches it there: an upper bound). None if it never does."""
    prev = None
    for step, value in curve:
        if value <= target:
            if prev is None or prev[1] == value:
                return float(step)
            s0, v0 = prev
            return s0 + (step - s0) * (v0 - target) / (v0 - value)
        prev = (step, value)
    return None


def _mean_curve(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    return [(points[0][0], statistics.fmean(p[1] for p in points)) for points in zip(*curves)]


def _ratio(block: Sequence, reference: Sequence) -> float | None:
    ref = _mean_curve(reference)
    reached = steps_to_reach(_mean_curve(block), ref[-1][1])
    if reached is None:
        return None
    return ref[-1][0] / max(reached, 1e-9)


def compute_ratio(block: Sequence[Sequence[tuple[float, float]]],
                  reference: Sequence[Sequence[tuple[float, float]]],
                  resamples: int = 2000, confidence: float = 0.9, seed: int = 0) -> dict:
    """How many times fewer steps ``block`` needs than ``reference`` to reach the
    reference's final perplexity: the reference's last step over the step at which the
    block's mean curve (over its training seeds) reaches the reference's mean final
    value. ``block`` and ``reference`` are lists of curves, one per training seed, each
    ``[(step, perplexity), ...]`` at the same steps.

    ``ratio`` is None when the block never reaches it. ``low`` and ``high``: a percentile
    bootstrap interval at ``confidence``, resampling each side's seeds with replacement
    (a resample whose block never reaches the target counts as ratio 0); with two or
    three seeds a side it is wide, and honest about it."""
    if not block or not reference:
        raise ValueError("compute_ratio needs at least one curve on each side")
    ratio = _ratio(block, reference)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        b = [block[i] for i in rng.integers(len(block), size=len(block))]
        r = [reference[i] for i in rng.integers(len(reference), size=len(reference))]
        draws.append(_ratio(b, r) or 0.0)
    tail = (1 - confidence) / 2
    low, high = (float(q) for q in np.quantile(draws, [tail, 1 - tail]))
    return {"ratio": ratio, "low": low, "high": high, "confidence": confidence,
            "block_seeds": len(block), "reference_seeds": len(reference)}
