"""Progressive dynamic hurdles (So et al. 2019, the Evolved Transformer; used by Primer).

Training is split into stages. After stage ``k`` a candidate must be at least as good as
the hurdle for that stage, a quantile of the stage-``k`` fitness of earlier candidates,
or it stops there. With the median (quantile 0.5) each hurdle passes the top 50%, as in
the paper. Pure bookkeeping: no I/O, no training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["HurdleTracker"]


class HurdleTracker:
    """Keeps the stage-wise fitness of earlier candidates and turns it into hurdles.

    Args:
      stages: number of training stages; hurdles sit after stages 1 .. stages - 1.
      quantile: the hurdle is this quantile of earlier fitness values (lower is better,
        so 0.5 lets the better half through).
      min_history: a stage has no hurdle until this many candidates have reached it.
    """

    def __init__(self, stages: int, quantile: float = 0.5, min_history: int = 10):
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"hurdle quantile must be in (0, 1], got {quantile}")
        self.stages = stages
        self.quantile = quantile
        self.min_history = min_history
        self._history: list[list[float]] = [[] for _ in range(stages)]

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
                out.append(float(np.quantile(values, self.quantile)))
        return out
