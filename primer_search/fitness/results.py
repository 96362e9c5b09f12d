"""What an evaluation produced, and the status vocabulary of a candidate.

This module imports no JAX, so everything that only *reads* results (the store, the
search loop, ``primer-search top``, plots, notebooks) stays light; the trainer that
*produces* them lives in :mod:`primer_search.fitness.evaluate`.

A candidate's status is one :class:`Status`. The store adds two that are not outcomes of
an evaluation: ``pending`` (written before the candidate is sent to a worker) and
``duplicate`` (it behaves like an earlier candidate and reuses that one's result).
"""

from __future__ import annotations

import dataclasses
import enum
import math

__all__ = ["WORST_FITNESS", "EvalResult", "Status"]

# The fitness of a candidate that failed: worse than any perplexity.
WORST_FITNESS = math.inf


class Status(enum.StrEnum):
    """What happened to a candidate. A ``str``, so it reads and stores as its value.

    "Did not train" has two statuses. ``nan``: the training or validation loss became
    NaN or Inf. ``untrained``: some step's gradient norm was NaN or Inf while the loss
    stayed finite (LOG of an exact zero has gradient 1e30; a few such entries overflow
    the norm); global-norm clipping then scales the whole update to zero or NaN, so the
    model stops learning while its loss looks ordinary. A loss that merely falls slowly
    is not a failure: the shell around the block (embedding, output layer) always learns
    something, and the fitness already says how much.
    """

    PENDING = "pending"      # written to the store, not finished yet
    OK = "ok"                # trained through the whole budget
    HURDLE = "hurdle"        # stopped at a hurdle; fitness is that stage's
    DUPLICATE = "duplicate"  # behaves like an earlier candidate; reuses its result
    INVALID = "invalid"      # the program does not validate or compile
    NAN = "nan"              # the loss became NaN or Inf
    UNTRAINED = "untrained"  # a gradient norm was NaN or Inf: updates stopped training
    OOM = "oom"              # ran out of memory
    TIMEOUT = "timeout"      # passed the candidate's hard time limit
    ERROR = "error"          # anything else (the reason says what)

    def is_finished(self) -> bool:
        return self is not Status.PENDING

    def is_evaluation(self) -> bool:
        """An outcome an evaluator can return (not ``pending`` or ``duplicate``)."""
        return self not in (Status.PENDING, Status.DUPLICATE)

    def is_failed(self) -> bool:
        return self in _FAILED

    def is_transient(self) -> bool:
        """A failure of the moment (load, memory, a dead worker), not of the program."""
        return self in _TRANSIENT

    def is_reusable(self) -> bool:
        """A finished evaluation that would come out the same again, so a functional
        duplicate may take its result instead of training."""
        return self.is_evaluation() and not self.is_transient()

    @classmethod
    def failed(cls) -> tuple[Status, ...]:
        return tuple(s for s in cls if s.is_failed())

    @classmethod
    def transient(cls) -> tuple[Status, ...]:
        return tuple(s for s in cls if s.is_transient())


_FAILED = frozenset({Status.INVALID, Status.NAN, Status.UNTRAINED, Status.OOM, Status.TIMEOUT,
                     Status.ERROR})
_TRANSIENT = frozenset({Status.OOM, Status.TIMEOUT, Status.ERROR})


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """The outcome of one evaluation. Fitness is the language model's validation
    perplexity, combined with the recall task's loss when that task is on
    (:func:`primer_search.fitness.recall.combine`); lower is better."""

    fitness: float
    status: Status
    reason: str = ""
    steps: int = 0
    train_loss: float = math.nan
    valid_loss: float = math.nan
    perplexity: float = math.nan
    word_perplexity: float = math.nan
    bits_per_byte: float = math.nan
    tokens_per_s: float = 0.0
    step_time_s: float = 0.0
    num_params: int = 0
    compile_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    # Time training waited for its data, kept out of train_s and of a budget in seconds.
    data_wait_s: float = 0.0
    # Fitness after each completed stage; the hurdles compare against these.
    stage_fitness: tuple[float, ...] = ()
    # The language model's validation perplexity after each completed stage (the same
    # as stage_fitness when no other task enters the fitness).
    stage_perplexity: tuple[float, ...] = ()
    # The recall task (fitness.recall; NaN and 0 when it is off): validation loss in nats
    # per answer, the share of answers ranked first (chance: 1 / num_values), its
    # training steps and its seconds (training and scoring; compile excluded).
    recall_loss: float = math.nan
    recall_accuracy: float = math.nan
    recall_steps: int = 0
    recall_s: float = 0.0
    # Context use of the language model (as the in-context learning score of Olsson et
    # al. 2022): mean validation loss over the second eighth of a context's positions
    # minus that over its last quarter, in nats. Near 0 for a block that sees only a few
    # tokens back; larger the more later tokens gain from what came before them.
    context_use: float = math.nan
    # Mean validation loss by position, in 8 equal spans of the context (first to last).
    position_loss: tuple[float, ...] = ()

    def __post_init__(self):
        try:
            status = Status(self.status)
        except ValueError:
            raise ValueError(f"EvalResult.status must be one of "
                             f"{', '.join(s.value for s in Status)}; got {self.status!r}") from None
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "stage_fitness", tuple(self.stage_fitness))
        object.__setattr__(self, "position_loss", tuple(self.position_loss))
        object.__setattr__(self, "stage_perplexity", tuple(self.stage_perplexity))

    @staticmethod
    def failure(status: Status, reason: str) -> EvalResult:
        """A failed evaluation: the worst fitness and the reason."""
        return EvalResult(fitness=WORST_FITNESS, status=status, reason=reason)

    @property
    def failed(self) -> bool:
        return self.status.is_failed()

    @property
    def stages_completed(self) -> int:
        return len(self.stage_fitness)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["stage_fitness"] = list(self.stage_fitness)
        d["position_loss"] = list(self.position_loss)
        d["stage_perplexity"] = list(self.stage_perplexity)
        return d

    @staticmethod
    def from_dict(d: dict) -> EvalResult:
        return EvalResult(**d)
