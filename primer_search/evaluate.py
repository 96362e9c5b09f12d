"""Fitness: train a language model around a candidate block under a fixed budget.

As in Primer (So et al. 2021, Sec. 3), a candidate's fitness is the validation perplexity
its language model reaches after a fixed training budget; lower is better. The budget is
a number of steps (deterministic), a number of seconds of training (the paper's choice,
so that slow blocks pay for their slowness), or both, whichever ends first.

Progressive dynamic hurdles (So et al. 2019, the Evolved Transformer; used in Primer):
training is split into ``stages`` parts whose lengths grow so that every stage costs the
same expected compute at the hurdles' pass rate (:func:`primer_search.hurdles.stage_ends`;
lengths 1, 2, 4, 8, 16 of 31 for four hurdles passing half each, as in the Primer paper).
After each stage the model is evaluated; if its fitness is worse than the hurdle for that
stage (a quantile of recent candidates at the same stage, see
:mod:`primer_search.hurdles`), it stops there, is recorded as ``hurdle`` and keeps its
partial fitness.

A budget in seconds counts completed steps only: with ``seconds`` set, every step is
waited for before the clock is read, so a stage overshoots its time by at most one step.

Failures never escape :meth:`Evaluator.evaluate`: an invalid program, a compile error, a
NaN or Inf loss, a training signal that stopped (see :class:`Status`), running out of
memory or passing the time limit each come back as an :class:`EvalResult` with a status,
a reason and the worst fitness (``inf``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from primer_search.compiler import CompileError
from primer_search.data import DataConfig, Dataset, load_dataset
from primer_search.dna import DNA, DNAError
from primer_search.hurdles import stage_ends
from primer_search.metrics import metrics_from_eval
from primer_search.model import LMConfig, build_lm, count_params
from primer_search.train import OptimConfig, make_optimizer, make_steps

__all__ = [
    "WORST_FITNESS",
    "BudgetConfig",
    "EvalResult",
    "Evaluator",
    "FitnessConfig",
    "ModelConfig",
    "Status",
    "unigram_perplexity",
]

WORST_FITNESS = math.inf


class Status:
    """What happened to a candidate.

    "Did not train" has two statuses. ``nan``: the training or validation loss became
    NaN or Inf. ``untrained``: some step's gradient norm was NaN or Inf while the loss
    stayed finite (LOG of an exact zero has gradient 1e30; a few such entries overflow
    the norm); global-norm clipping then scales the whole update to zero or NaN, so the
    model stops learning while its loss looks ordinary. A loss that merely falls slowly
    is not a failure: the shell around the block (embedding, output layer) always learns
    something, and the fitness already says how much.
    """

    OK = "ok"                # trained through the whole budget
    HURDLE = "hurdle"        # stopped at a hurdle; fitness is that stage's
    INVALID = "invalid"      # the program does not validate or compile
    NAN = "nan"              # the loss became NaN or Inf
    UNTRAINED = "untrained"  # a gradient norm was NaN or Inf: updates stopped training
    OOM = "oom"              # ran out of memory
    TIMEOUT = "timeout"      # passed the candidate's hard time limit
    ERROR = "error"          # anything else (the reason says what)

    FAILED = frozenset({INVALID, NAN, UNTRAINED, OOM, TIMEOUT, ERROR})
    # Failures that depend on the moment (load, memory, a dead worker), not on the
    # program: their results are never reused for a duplicate.
    TRANSIENT = frozenset({OOM, TIMEOUT, ERROR})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The language model around the block (the vocabulary comes from the data)."""

    # Model width; the block maps [batch, seq, d_model] to the same shape.
    d_model: int = 128
    # Number of stacked copies of the block.
    num_layers: int = 2


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """How long one candidate trains."""

    # Training steps in total (over all stages). None: limited by `seconds` alone.
    steps: int | None = 300
    # Seconds of training in total, compile and evaluation excluded. None: steps alone.
    seconds: float | None = None
    # Number of stages the budget is split into; a hurdle follows every stage but the
    # last (1: no hurdles; 5: the Primer paper's four hurdles).
    stages: int = 1
    # The share of candidates each hurdle lets through (the hurdle is this quantile of
    # recent candidates' fitness at that stage). Stage lengths follow from it: stage k
    # trains in proportion to pass_rate**-k, so every stage costs the same expected
    # compute (1, 2, 4, 8, 16 of 31 parts for five stages at 0.5). 1.0: equal stages.
    pass_rate: float = 0.5
    # Hard limit on one evaluation, compile and evaluation included. None: no limit.
    timeout_s: float | None = None
    # Check the training loss for NaN/Inf every this many steps.
    check_every: int = 10

    def __post_init__(self):
        if self.steps is None and self.seconds is None:
            raise ValueError("budget: set steps, seconds or both (both are None)")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"budget.steps must be >= 1 or None, got {self.steps}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"budget.seconds must be > 0 or None, got {self.seconds}")
        if self.stages < 1:
            raise ValueError(f"budget.stages must be >= 1, got {self.stages}")
        if not 0.0 < self.pass_rate <= 1.0:
            raise ValueError(f"budget.pass_rate must be in (0, 1], got {self.pass_rate}")
        if self.steps is not None and self.steps < self.stages:
            raise ValueError(f"budget.steps ({self.steps}) must be at least budget.stages "
                             f"({self.stages}): every stage trains at least one step")


@dataclasses.dataclass(frozen=True)
class FitnessConfig:
    """Everything that defines how a candidate is scored."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    budget: BudgetConfig = BudgetConfig()
    # Seed of parameter initialisation and data order.
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """The outcome of one evaluation. Fitness is validation perplexity (lower is better)."""

    fitness: float
    status: str
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
    # Fitness after each completed stage; the hurdles compare against these.
    stage_fitness: tuple[float, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in Status.FAILED

    @property
    def stages_completed(self) -> int:
        return len(self.stage_fitness)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stage_fitness"] = list(self.stage_fitness)
        return d

    @staticmethod
    def from_dict(d: dict) -> EvalResult:
        d = dict(d)
        d["stage_fitness"] = tuple(d.get("stage_fitness", ()))
        return EvalResult(**d)


class _Failure(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _classify(e: Exception) -> tuple[str, str]:
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, (DNAError, CompileError)):
        return Status.INVALID, text
    if "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or isinstance(e, MemoryError):
        return Status.OOM, text.splitlines()[0][:500]
    return Status.ERROR, text.splitlines()[0][:500]


class Evaluator:
    """Scores DNAs under one :class:`FitnessConfig`. Loads the data once."""

    def __init__(self, config: FitnessConfig = FitnessConfig(), dataset: Dataset | None = None):
        self.config = config
        self.dataset = dataset if dataset is not None else load_dataset(config.data)
        self._eval_batches = [jnp.asarray(b) for b in self.dataset.eval_batches()]

    # ---- the budget -----------------------------------------------------------------

    def _stage_limits(self) -> list[tuple[int | None, float | None]]:
        """Cumulative (steps, seconds) at the end of each stage."""
        b = self.config.budget
        steps = [None] * b.stages if b.steps is None else stage_ends(b.steps, b.stages,
                                                                    b.pass_rate)
        fractions = stage_ends(None, b.stages, b.pass_rate)
        seconds = [None if b.seconds is None else b.seconds * f for f in fractions]
        return list(zip(steps, seconds))

    def _total_steps(self) -> int | None:
        """The last step, for schedules that decay to it; None when a seconds budget
        decides where training ends."""
        b = self.config.budget
        return b.steps if b.seconds is None else None

    # ---- evaluation -------------------------------------------------------------------

    def evaluate(self, dna: DNA, hurdles: Sequence[float | None] = ()) -> EvalResult:
        """Train and score ``dna``. ``hurdles[k]`` is the fitness a candidate must reach
        (be at or below) after stage ``k`` to go on; None or missing means no hurdle."""
        start = time.perf_counter()
        self.last_params = None  # the trained parameters of a successful evaluation
        timings = {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0}
        partial: dict = {}
        try:
            return self._evaluate(dna, list(hurdles), start, timings, partial)
        except _Failure as f:
            status, reason = f.status, f.reason
        except Exception as e:  # noqa: BLE001 - nothing may escape, by design
            status, reason = _classify(e)
        return EvalResult(fitness=WORST_FITNESS, status=status, reason=reason, **timings,
                          **partial)

    @staticmethod
    def _check_training(state, metrics, steps: int, partial: dict) -> float:
        """Record the training loss so far in ``partial`` and return it; fail on a
        non-finite loss, or on any step so far with a non-finite gradient norm (waits for
        the step: a sync point)."""
        loss = float(metrics["loss"])
        partial.update(steps=steps, train_loss=loss)
        if not math.isfinite(loss):
            raise _Failure(Status.NAN, f"training loss is {loss} at step {steps}")
        bad = int(state.bad_grad_steps)
        if bad:
            raise _Failure(Status.UNTRAINED, (
                f"gradient norm was NaN or Inf in {bad} of the first {steps} steps (last "
                f"{float(metrics['grad_norm']):.3g}) while the loss stayed finite; clipping "
                "turns such a gradient into a zero or NaN update, so the model stopped "
                "learning"))
        return loss

    def _check_time(self, start: float) -> None:
        limit = self.config.budget.timeout_s
        if limit is not None and time.perf_counter() - start > limit:
            raise _Failure(Status.TIMEOUT, f"passed the time limit of {limit:g} s")

    def _evaluate(self, dna, hurdles, start, timings, partial) -> EvalResult:
        cfg = self.config
        lm = build_lm(dna, LMConfig(vocab_size=self.dataset.vocab_size,
                                    d_model=cfg.model.d_model, num_layers=cfg.model.num_layers))
        init_state, train_step, eval_step = make_steps(
            lm, make_optimizer(cfg.optim, self._total_steps(), cfg.model.d_model))
        batches = self.dataset.train_batches(cfg.seed)
        first = jnp.asarray(next(batches))

        t = time.perf_counter()
        state = init_state(cfg.seed, first)
        step_fn = train_step.lower(state, first).compile()
        eval_fns = {b.shape: eval_step.lower(state.params, b).compile()
                    for b in self._eval_batches}
        timings["compile_s"] = time.perf_counter() - t
        partial["num_params"] = count_params(state.params)
        self._check_time(start)

        steps, stage_fitness = 0, []
        batch = first
        timed = cfg.budget.seconds is not None
        for k, (step_limit, second_limit) in enumerate(self._stage_limits()):
            t, stage_start = time.perf_counter(), steps
            while True:
                if step_limit is not None and steps >= step_limit:
                    break
                if second_limit is not None and steps > stage_start and timings["train_s"] + (
                        time.perf_counter() - t) >= second_limit:
                    break
                state, metrics = step_fn(state, batch)
                steps += 1
                if timed:  # count only completed steps against the clock
                    metrics["loss"].block_until_ready()
                batch = jnp.asarray(next(batches))
                if steps % cfg.budget.check_every == 0:
                    self._check_training(state, metrics, steps, partial)
                    self._check_time(start)
            metrics["loss"].block_until_ready()  # the stage's training time ends here
            timings["train_s"] += time.perf_counter() - t
            loss = self._check_training(state, metrics, steps, partial)

            t = time.perf_counter()
            total = sum(float(eval_fns[b.shape](state.params, b)[0]) for b in self._eval_batches)
            timings["eval_s"] += time.perf_counter() - t
            if not math.isfinite(total):
                raise _Failure(Status.NAN, f"validation loss is {total} after {steps} steps")
            metrics_eval = metrics_from_eval(total, self.dataset.eval_info)
            stage_fitness.append(metrics_eval["perplexity"])
            partial["stage_fitness"] = tuple(stage_fitness)
            self._check_time(start)
            hurdle = hurdles[k] if k < len(hurdles) else None
            last_stage = k == cfg.budget.stages - 1
            if last_stage or (hurdle is not None and stage_fitness[-1] > hurdle):
                status = Status.OK if last_stage else Status.HURDLE
                reason = "" if last_stage else (
                    f"stopped after stage {k + 1} of {cfg.budget.stages}: fitness "
                    f"{stage_fitness[-1]:.4g} is worse than the hurdle {hurdle:.4g}")
                break

        self.last_params = state.params
        tokens = steps * self.dataset.batch_size * self.dataset.seq_len
        return EvalResult(
            fitness=stage_fitness[-1], status=status, reason=reason, steps=steps,
            train_loss=loss, valid_loss=metrics_eval["loss"],
            perplexity=metrics_eval["perplexity"],
            word_perplexity=metrics_eval["word_perplexity"],
            bits_per_byte=metrics_eval["bits_per_byte"],
            tokens_per_s=tokens / timings["train_s"] if timings["train_s"] else 0.0,
            step_time_s=timings["train_s"] / steps if steps else 0.0,
            num_params=partial["num_params"], stage_fitness=tuple(stage_fitness), **timings)


def unigram_perplexity(dataset: Dataset) -> float:
    """Perplexity of the evaluation set under the training split's unigram distribution
    (add-one smoothed): the baseline a model that ignores context would reach."""
    counts = np.ones(dataset.vocab_size, np.float64)
    batches = dataset.train_batches(0)
    seen = 0
    budget = dataset.train_tokens or 1_000_000
    while seen < budget:
        b = next(batches)[:, 1:]
        np.add.at(counts, b.ravel(), 1)
        seen += b.size
    logp = np.log(counts / counts.sum())
    targets = np.concatenate([b[:, 1:].ravel() for b in dataset.eval_batches()])
    return float(np.exp(-logp[targets].mean()))
