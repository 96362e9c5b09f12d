"""Progressive dynamic hurdles (So et al. 2019, the Evolved Transformer; used by Primer).

Training is split into stages. After stage ``k`` a candidate must be at least as good as
the hurdle for that stage, a quantile of the stage-``k`` fitness of recent candidates, or
it stops there. With the median (quantile 0.5) each hurdle passes the better half, as in
the Primer paper.

**Stage lengths** (:func:`stage_ends`). With pass rate ``p``, a share ``p**k`` of the
candidates reaches stage ``k`` (counting from 0). Giving stage ``k`` a length
proportional to ``p**-k`` makes every stage cost the same expected compute, which is how
the Primer paper places its four hurdles: at ``p = 0.5`` the five stages are 1, 2, 4, 8
and 16 parts of 31. The expected cost of a candidate is then ``stages / sum_k p**-k``
of a full training, 5/31 (a 6.2x saving) for four hurdles, against 0.47 (2.1x) for
four equal stages.

**Hurdles are recomputed, from a window.** The Evolved Transformer fixes each hurdle
once, from the mean fitness of the first ``m`` candidates to reach it, and adds hurdles
as the search grows. Here the hurdle for stage ``k`` is the ``p``-quantile of the last
``window`` candidates that completed stage ``k``, recomputed whenever a candidate is
dispatched. A fixed hurdle loosens as the population improves: late candidates pass it
far more often than ``p``, and the compute saving that justified the hurdles fades
(towards training everything fully). A window keeps the pass rate near ``p`` and tightens
the hurdle as the search improves, while forgetting the first, weak candidates. The cost
is that verdicts are relative to the recent past, which regularized evolution already
assumes of its population.

**Ranking.** A candidate stopped at a hurdle keeps the fitness of its last completed
stage, which was measured after less training and is not on the full budget's scale.
:func:`rank_key` orders candidates by stages completed first (more is better), then by
fitness: a candidate that passed hurdle ``k`` beat the stage-``k`` median, so it ranks
above every candidate that failed it, whatever their numbers say. Failed candidates
(infinite or NaN fitness) rank last.

Pure bookkeeping: no I/O, no training.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["HurdleTracker", "expected_cost", "rank_key", "stage_ends"]


def _stage_weights(stages: int, pass_rate: float) -> list[float]:
    return [pass_rate ** -k for k in range(stages)]


def stage_ends(steps: int | None, stages: int, pass_rate: float) -> list:
    """Where each stage ends, cumulatively.

    With ``steps=None``: fractions of the budget (the last is 1.0). With a step count:
    whole steps, every stage at least one step long, the last equal to ``steps``.
    Stage ``k`` is proportional to ``pass_rate**-k`` (see the module doc).
    """
    if stages < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    if not 0.0 < pass_rate <= 1.0:
        raise ValueError(f"pass_rate must be in (0, 1], got {pass_rate}")
    weights = _stage_weights(stages, pass_rate)
    total = sum(weights)
    fractions, acc = [], 0.0
    for w in weights:
        acc += w
        fractions.append(acc / total)
    fractions[-1] = 1.0
    if steps is None:
        return fractions
    if steps < stages:
        raise ValueError(f"{steps} steps cannot make {stages} stages of at least one step")
    ends, prev = [], 0
    for k, f in enumerate(fractions):
        # At least one step per stage, and room left for one step in each later stage.
        end = min(max(prev + 1, round(steps * f)), steps - (stages - 1 - k))
        ends.append(end)
        prev = end
    return ends


def expected_cost(stages: int, pass_rate: float) -> float:
    """Expected training cost of one candidate as a fraction of training it fully, if
    each hurdle passes exactly ``pass_rate`` of the candidates that reach it."""
    weights = _stage_weights(stages, pass_rate)
    return sum(pass_rate ** k * w for k, w in enumerate(weights)) / sum(weights)


def rank_key(fitness: float | None, stages_completed: int) -> tuple:
    """Sort key, best first: finite fitness, then more stages completed, then lower
    fitness (see the module doc)."""
    if fitness is None or not math.isfinite(fitness):
        return (1, 0, math.inf)
    return (0, -stages_completed, fitness)


class HurdleTracker:
    """Keeps the stage-wise fitness of recent candidates and turns it into hurdles.

    Args:
      stages: number of training stages; hurdles sit after stages 1 .. stages - 1.
      quantile: the hurdle is this quantile of recent fitness values (lower is better,
        so 0.5 lets the better half through). It is the budget's ``pass_rate``.
      min_history: a stage has no hurdle until this many candidates have reached it.
      window: the hurdle uses the last ``window`` candidates that completed its stage
        (None: all of them).
    """

    def __init__(self, stages: int, quantile: float = 0.5, min_history: int = 10,
                 window: int | None = None):
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"hurdle quantile must be in (0, 1], got {quantile}")
        if window is not None and window < 1:
            raise ValueError(f"hurdle window must be >= 1 or None, got {window}")
        self.stages = stages
        self.quantile = quantile
        self.min_history = min_history
        self.window = window
        self._history: list[collections.deque[float]] = [
            collections.deque(maxlen=window) for _ in range(stages)]

    def record(self, stage_fitness: Sequence[float]) -> None:
        """Add one candidate's fitness after each stage it completed (NaN/Inf ignored)."""
        for k, f in enumerate(stage_fitness[: self.stages]):
            if np.isfinite(f):
                self._history[k].append(float(f))

    def thresholds(self) -> list[float | None]:
        """The hurdle after each stage but the last (None: not enough history yet)."""
        out: list[float | None] = []
        for values in self._history[:-1]:
            if len(values) < self.min_history:
                out.append(None)
            else:
                out.append(float(np.quantile(list(values), self.quantile)))
        return out
