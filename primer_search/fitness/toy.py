"""A stand-in fitness with no training, for testing and measuring the search machinery.

The toy fitness rewards programs of about 48 live instructions that use many different
primitives: mutations can improve it step by step, it is deterministic, and it costs
microseconds (plus an optional sleep standing in for training time). It says nothing
about language modelling.
"""

from __future__ import annotations

import contextlib
import time

from primer_search.fitness.results import WORST_FITNESS, EvalResult, Status
from primer_search.program.dna import DNA, DNAError
from primer_search.program.validate import canonical

__all__ = ["ToyEvaluator", "toy_fitness"]

TARGET_SIZE = 48
TARGET_OPS = 16


def toy_fitness(dna: DNA) -> float:
    """1 + distance from TARGET_SIZE live instructions + missing distinct ops."""
    program = canonical(dna)
    ops = {ins.op for sub in program.subprograms for ins in sub.instructions if not ins.is_call}
    return 1.0 + abs(program.num_instructions() - TARGET_SIZE) + max(0, TARGET_OPS - len(ops))


class ToyEvaluator:
    """Scores with :func:`toy_fitness`; the same interface as the real evaluator, with no
    parameters to hand back."""

    def __init__(self, sleep_s: float = 0.0):
        self.sleep_s = sleep_s

    def evaluate(self, dna: DNA, hurdles=(), *, seed=None, budget=None,
                 gate=None) -> tuple[EvalResult, None]:
        """``seed`` and ``budget`` are accepted for the evaluator's interface; the toy
        fitness depends on neither. Its sleep stands in for training: it holds ``gate``."""
        try:
            fitness = toy_fitness(dna)
        except DNAError as e:
            return EvalResult(fitness=WORST_FITNESS, status=Status.INVALID, reason=str(e)), None
        with gate if gate is not None else contextlib.nullcontext():
            start = time.perf_counter()
            if self.sleep_s:
                time.sleep(self.sleep_s)
            elapsed = time.perf_counter() - start
        return EvalResult(fitness=fitness, status=Status.OK, steps=1, train_s=elapsed,
                          stage_fitness=(fitness,)), None
