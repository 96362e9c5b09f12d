"""Fitness: train a language model around a candidate block under a fixed budget.

As in Primer (So et al. 2021, Sec. 3), a candidate's fitness is the validation perplexity
its language model reaches after a fixed training budget; lower is better. The budget is
a number of steps (deterministic), a number of seconds of training (the paper's choice,
so that slow blocks pay for their slowness), or both, whichever ends first.

Progressive dynamic hurdles (So et al. 2019, the Evolved Transformer; used in Primer):
training is split into ``stages`` parts whose lengths grow so that every stage costs the
same expected compute at the hurdles' pass rate (:func:`primer_search.fitness.hurdles.stage_ends`;
lengths 1, 2, 4, 8, 16 of 31 for four hurdles passing half each, as in the Primer paper).
After each stage the model is evaluated; if its fitness is worse than the hurdle for that
stage (a quantile of recent candidates at the same stage, see
:mod:`primer_search.fitness.hurdles`), it stops there, is recorded as ``hurdle`` and keeps its
partial fitness.

A budget in seconds counts completed steps only: with ``seconds`` set, every step is
waited for before the clock is read, so a stage overshoots its time by at most one step.

**Tasks.** With ``fitness.recall.enabled``, a candidate also trains a second copy of its
model, from fresh parameters, on the recall task (multi-query associative recall,
:mod:`primer_search.fitness.recall`) for ``recall.steps`` steps, and that copy is scored
on the task's fixed evaluation set. Both tasks use one compiled train step and one
compiled evaluation step (same model, batch shape and, by default, learning-rate
schedule; the steps take a weight per target). Every stage's fitness combines that
stage's perplexity with the recall loss (:func:`~primer_search.fitness.recall.combine`),
so the hurdles see recall. When the recall task trains is ``recall.timing``:

* ``"first"``: all of it before the language model's first stage, so every hurdle sees
  the final recall loss and a block that cannot recall stops at the first one.
* ``"staged"``: in the language model's stages, the same share of its steps in each
  (:func:`~primer_search.fitness.hurdles.stage_ends` of the recall steps), and scored
  after each, so hurdle ``k`` sees the recall loss after that share. A candidate stopped
  at a hurdle has paid for only its share of the task; one that passes them all ends
  with the same recall loss as under ``"first"`` (same steps, batches and schedule).
  Where no hurdle can stop a candidate (one stage, or ``budget.pass_rate = 1``: a
  retrain or a ladder rung) the task trains first, as staging would buy nothing.

A failure on either task fails the candidate, and its reason names the task. The recall
task's time counts towards the time-out, not towards a budget in seconds (which is the
language model's training time).

**Context use.** Every language-model evaluation also records the validation loss by
position in the context and the context-use score (:class:`EvalResult` ``context_use``,
``position_loss``).

Failures never escape :meth:`Evaluator.evaluate`: an invalid program, a compile error, a
NaN or Inf loss, a training signal that stopped (see
:class:`~primer_search.fitness.results.Status`), running out of memory or passing the
time limit each come back as an :class:`EvalResult` with a status, a reason and the worst
fitness (``inf``).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from primer_search.fitness import compile_cache
from primer_search.fitness.config import BudgetConfig, FitnessConfig, RecallConfig
from primer_search.fitness.data import DataError, Dataset, Prefetcher, cache_root, load_dataset
from primer_search.fitness.hurdles import stage_ends
from primer_search.fitness.metrics import metrics_from_eval
from primer_search.fitness.model import build_lm, count_params
from primer_search.fitness.recall import RecallData, combine
from primer_search.fitness.results import WORST_FITNESS, EvalResult, Status
from primer_search.fitness.train import compiler_options, make_optimizer, make_steps
from primer_search.program.compiler import CompileError
from primer_search.program.dna import DNA, DNAError

__all__ = ["Evaluator", "context_scores", "recall_stage_ends", "unigram_perplexity"]


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


# What an evaluation hands back besides its result: the trained language-model
# parameters (None when it failed).
Params = Any


class Evaluator:
    """Scores DNAs under one :class:`FitnessConfig`. Loads the data once.

    ``evaluate`` returns what it produced, ``(result, params)``. The training seed and
    the budget are the config's unless a call names others (retraining the best with
    more seeds and a longer budget uses the same loaded data)."""

    def __init__(self, config: FitnessConfig | None = None, dataset: Dataset | None = None):
        self.config = config = config if config is not None else FitnessConfig()
        self.compilation_cache = compile_cache.enable(cache_root(config.data))
        self.dataset = dataset if dataset is not None else load_dataset(config.data)
        # The evaluation set as full batches and the targets of each that count: a short
        # last batch is padded (weight 0), so that one compiled evaluation step serves
        # them all, and the recall task's batches too.
        B, L = self.dataset.batch_size, self.dataset.seq_len
        self._eval_batches = []
        self._eval_rows = 0
        for b in self.dataset.eval_batches():
            rows = len(b)
            padded = np.zeros((B, b.shape[1]), np.int32)
            padded[:rows] = b
            weights = np.zeros((B, L), np.float32)
            weights[:rows] = 1.0
            self._eval_batches.append((jnp.asarray(padded), jnp.asarray(weights)))
            self._eval_rows += rows
        self._all_targets = jnp.ones((B, L), jnp.float32)
        self.recall: RecallData | None = None
        if config.recall.enabled:
            need, have = config.recall.vocab_needed, self.dataset.vocab_size
            if need > have:
                raise DataError(
                    f"recall: {config.recall.num_keys} keys, {config.recall.num_values} values "
                    f"and a filler need {need} token ids, but the language model's "
                    f"vocabulary ({self.dataset!r}) has {have}; use fewer keys or values")
            # Rows of the language model's length, unless the task has its own.
            self.recall = RecallData(config.recall, B, (config.recall.seq_len or L) + 1)
            self._recall_eval = [(jnp.asarray(t), jnp.asarray(w))
                                 for t, w in self.recall.eval_batches]
            self._recall_answers = float(sum(w.sum() for _, w in self.recall.eval_batches))

    def evaluate(self, dna: DNA, hurdles: Sequence[float | None] = (), *,
                 seed: int | None = None, budget: BudgetConfig | None = None,
                 gate: threading.Lock | None = None) -> tuple[EvalResult, Params | None]:
        """Train and score ``dna``; return the result and the trained parameters (None
        for a failure). ``hurdles[k]`` is the fitness a candidate must reach (be at or
        below) after stage ``k`` to go on; None or missing means no hurdle. ``seed`` and
        ``budget`` replace the config's for this call.

        ``gate``: a lock shared by evaluations that run in threads of one worker. Each
        builds, initialises and compiles on its own, then holds the gate while it trains
        and evaluates, so one candidate trains while the next compiles and the device
        never waits for a compiler. The time-out (``budget.timeout_s``) does not count the
        wait for the gate."""
        run = _Run(seed=self.config.seed if seed is None else seed,
                   budget=self.config.budget if budget is None else budget, gate=gate)
        try:
            return self._evaluate(dna, list(hurdles), run)
        except _Failure as f:
            status, reason = f.status, f.reason
        except Exception as e:  # noqa: BLE001 - nothing may escape, by design
            status, reason = _classify(e)
        finally:
            if run.batches is not None:
                run.batches.close()
            if run.holding_gate:
                run.gate.release()
        return EvalResult(fitness=WORST_FITNESS, status=status, reason=reason, **run.timings,
                          **run.partial), None

    def _evaluate(self, dna: DNA, hurdles: list, run: _Run) -> tuple[EvalResult, Params]:
        cfg, budget, timings, partial = self.config, run.budget, run.timings, run.partial
        lm = build_lm(dna, cfg.model, self.dataset.vocab_size)
        total_steps = _total_steps(budget)
        init_state, train_step, eval_step = make_steps(
            lm, make_optimizer(cfg.optim, total_steps, cfg.model.d_model))
        # Batches are made in a background thread ahead of training; time spent waiting
        # for one is kept out of train_s (and so out of a budget in seconds).
        batches = run.batches = Prefetcher(self.dataset.train_batches(run.seed))
        first = jnp.asarray(next(batches))
        ones = self._all_targets

        t = time.perf_counter()
        state = init_state(run.seed, first)
        options = compiler_options()
        step_fn = train_step.lower(state, first, ones).compile(options)
        eval_fn = eval_step.lower(state.params, *self._eval_batches[0]).compile(options)
        recall_steps = recall_init = recall_step_fn = recall_eval_fn = None
        if self.recall is not None:
            # The config's own budget, not a retrain's longer one: the recall task is the
            # same test wherever a candidate is scored.
            recall_steps = cfg.recall.steps or cfg.budget.steps
            recall_init, recall_train, recall_step_fn, recall_eval_fn = (
                init_state, train_step, step_fn, eval_fn)
            optim = cfg.optim if cfg.recall.learning_rate is None else dataclasses.replace(
                cfg.optim, learning_rate=cfg.recall.learning_rate)
            own_schedule = ((total_steps is not None and recall_steps != total_steps)
                            or optim is not cfg.optim)
            if own_schedule:
                # A schedule of another length or rate is another optimiser: a compile of
                # its own.
                recall_init, recall_train, _ = make_steps(
                    lm, make_optimizer(optim, recall_steps, cfg.model.d_model))
            tokens, weights = self._recall_eval[0]
            own_shape = tokens.shape != first.shape
            if own_schedule or own_shape:  # rows of their own length: steps of their own
                recall_step_fn = recall_train.lower(state, tokens, weights).compile(options)
            if own_shape:
                recall_eval_fn = eval_step.lower(state.params, tokens, weights).compile(options)
        timings["compile_s"] = time.perf_counter() - t
        partial["num_params"] = count_params(state.params)
        run.check_time()
        run.enter_gate()

        recall = recall_loss = None
        if self.recall is not None:
            recall = _RecallTask(self, run, recall_init, first, recall_step_fn,
                                 recall_eval_fn,
                                 recall_stage_ends(cfg.recall, recall_steps, budget))

        steps, stage_fitness, stage_perplexity = 0, [], []
        batch = first
        timed = budget.seconds is not None
        for k, (step_limit, second_limit) in enumerate(_stage_limits(budget)):
            if recall is not None:
                recall_loss = recall.train_to(k)
            t, stage_start, waited = time.perf_counter(), steps, batches.waited_s
            while True:
                if step_limit is not None and steps >= step_limit:
                    break
                if second_limit is not None and steps > stage_start and timings["train_s"] + (
                        time.perf_counter() - t - (batches.waited_s - waited)) >= second_limit:
                    break
                state, metrics = step_fn(state, batch, ones)
                steps += 1
                if timed:  # count only completed steps against the clock
                    metrics["loss"].block_until_ready()
                batch = jnp.asarray(next(batches))
                if steps % budget.check_every == 0:
                    _check_training(state, metrics, steps, partial)
                    run.check_time()
            metrics["loss"].block_until_ready()  # the stage's training time ends here
            stalled = batches.waited_s - waited
            timings["data_wait_s"] += stalled
            timings["train_s"] += time.perf_counter() - t - stalled
            loss = _check_training(state, metrics, steps, partial)

            t = time.perf_counter()
            by_position = np.zeros(self.dataset.seq_len, np.float64)
            for b, weights in self._eval_batches:
                by_position += np.asarray(eval_fn(state.params, b, weights)[0], np.float64)
            total = float(by_position.sum())
            timings["eval_s"] += time.perf_counter() - t
            if not math.isfinite(total):
                raise _Failure(Status.NAN, f"validation loss is {total} after {steps} steps")
            metrics_eval = metrics_from_eval(total, self.dataset.eval_info)
            partial.update(context_scores(by_position / self._eval_rows))
            stage_fitness.append(combine(cfg.recall, metrics_eval["perplexity"], recall_loss))
            stage_perplexity.append(metrics_eval["perplexity"])
            partial["stage_perplexity"] = tuple(stage_perplexity)
            partial["stage_fitness"] = tuple(stage_fitness)
            run.check_time()
            hurdle = hurdles[k] if k < len(hurdles) else None
            last_stage = k == budget.stages - 1
            if last_stage or (hurdle is not None and stage_fitness[-1] > hurdle):
                status = Status.OK if last_stage else Status.HURDLE
                reason = "" if last_stage else (
                    f"stopped after stage {k + 1} of {budget.stages}: fitness "
                    f"{stage_fitness[-1]:.4g} is worse than the hurdle {hurdle:.4g}")
                break

        tokens = steps * self.dataset.batch_size * self.dataset.seq_len
        return EvalResult(
            fitness=stage_fitness[-1], status=status, reason=reason, steps=steps,
            train_loss=loss, valid_loss=metrics_eval["loss"],
            perplexity=metrics_eval["perplexity"],
            word_perplexity=metrics_eval["word_perplexity"],
            bits_per_byte=metrics_eval["bits_per_byte"],
            tokens_per_s=tokens / timings["train_s"] if timings["train_s"] else 0.0,
            step_time_s=timings["train_s"] / steps if steps else 0.0,
            num_params=partial["num_params"], stage_fitness=tuple(stage_fitness),
            **timings, **{k: partial[k] for k in _TASK_FIELDS if k in partial}), state.params


def recall_stage_ends(config: RecallConfig, steps: int, budget: BudgetConfig) -> list[int]:
    """How many recall steps a candidate has trained by the end of each language-model
    stage of ``budget``: all of them from the first stage on, unless ``config.timing`` is
    "staged" and a hurdle can stop a candidate (more than one stage, a pass rate below 1,
    at least a step per stage), where stage ``k`` gets the share that the language
    model's stage ``k`` gets of its own budget."""
    stages = budget.stages
    if config.timing == "staged" and 1 < stages <= steps and budget.pass_rate < 1.0:
        return stage_ends(steps, stages, budget.pass_rate)
    return [steps] * stages


class _RecallTask:
    """The recall task of one evaluation: a copy of the model trained from fresh
    parameters, up to a number of steps per language-model stage, and scored whenever it
    has trained more. Records the task's metrics in ``run.partial``."""

    def __init__(self, evaluator: Evaluator, run: _Run, init_state, first, step_fn,
                 eval_fn, ends: list[int]):
        self.evaluator, self.run, self.ends = evaluator, run, ends
        self.step_fn, self.eval_fn = step_fn, eval_fn
        t = time.perf_counter()
        self.state = init_state(run.seed, first)
        self.batches = evaluator.recall.train_batches(run.seed, ends[-1])
        run.partial["recall_s"] = time.perf_counter() - t
        self.steps, self.loss = 0, None

    def train_to(self, stage: int) -> float:
        """Train on to the end of ``stage``'s share, score if it trained, and return the
        validation loss."""
        target = self.ends[stage]
        if target == self.steps:
            return self.loss
        partial, check_every, run = self.run.partial, self.run.budget.check_every, self.run
        t = time.perf_counter()
        state, metrics = self.state, None
        for k in range(self.steps + 1, target + 1):
            tokens, weights = self.batches[k - 1]
            state, metrics = self.step_fn(state, jnp.asarray(tokens), jnp.asarray(weights))
            if k % check_every == 0 or k == target:
                _check_training(state, metrics, k, partial, task="recall")
                run.check_time()
        self.state, self.steps = state, target
        ev = self.evaluator
        loss_sum = correct = 0.0
        for tokens, weights in ev._recall_eval:
            by_position, right = self.eval_fn(state.params, tokens, weights)
            loss_sum += float(np.asarray(by_position, np.float64).sum())
            correct += float(right)
        loss = loss_sum / ev._recall_answers
        partial["recall_s"] += time.perf_counter() - t
        if not math.isfinite(loss):
            raise _Failure(Status.NAN, f"recall task: validation loss is {loss} after "
                                       f"{target} steps")
        partial.update(recall_loss=loss, recall_accuracy=correct / ev._recall_answers)
        self.loss = loss
        return loss


# What a run records in its partial measurements besides the language model's.
_TASK_FIELDS = ("recall_loss", "recall_accuracy", "recall_steps", "recall_s", "context_use",
                "position_loss", "stage_perplexity")


def context_scores(position_loss: np.ndarray, spans: int = 8) -> dict:
    """``{"context_use": ..., "position_loss": ...}`` from the mean validation loss at
    each position of a context (see :class:`EvalResult`): the loss over the second
    eighth of the positions minus that over the last quarter, and the mean loss in
    ``spans`` equal spans. A context shorter than 8 positions has no score (NaN)."""
    L = len(position_loss)
    if L < 8:
        return {"context_use": math.nan, "position_loss": tuple(map(float, position_loss))}
    early = position_loss[L // 8: L // 4].mean()
    late = position_loss[3 * L // 4:].mean()
    return {"context_use": float(early - late),
            "position_loss": tuple(float(p.mean()) for p in np.array_split(position_loss, spans))}


@dataclasses.dataclass
class _Run:
    """One call of :meth:`Evaluator.evaluate`: its seed and budget, its clock, and what
    it has measured so far (a failure keeps the partial measurements)."""

    seed: int
    budget: BudgetConfig
    start: float = dataclasses.field(default_factory=time.perf_counter)
    timings: dict = dataclasses.field(
        default_factory=lambda: {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0,
                                 "data_wait_s": 0.0})
    partial: dict = dataclasses.field(default_factory=dict)
    batches: Prefetcher | None = None  # closed when the call ends
    gate: threading.Lock | None = None  # held from the first step to the end of the call
    holding_gate: bool = False
    waited_for_gate_s: float = 0.0

    def enter_gate(self) -> None:
        """Wait for the gate (if any); the wait does not count towards the time-out."""
        if self.gate is None:
            return
        t = time.perf_counter()
        self.gate.acquire()
        self.holding_gate = True
        self.waited_for_gate_s = time.perf_counter() - t

    def check_time(self) -> None:
        limit = self.budget.timeout_s
        if limit is not None and \
                time.perf_counter() - self.start - self.waited_for_gate_s > limit:
            raise _Failure(Status.TIMEOUT, f"passed the time limit of {limit:g} s")


def _stage_limits(budget: BudgetConfig) -> list[tuple[int | None, float | None]]:
    """Cumulative (steps, seconds) at the end of each stage."""
    steps = ([None] * budget.stages if budget.steps is None
             else stage_ends(budget.steps, budget.stages, budget.pass_rate))
    fractions = stage_ends(None, budget.stages, budget.pass_rate)
    seconds = [None if budget.seconds is None else budget.seconds * f for f in fractions]
    return list(zip(steps, seconds))


def _total_steps(budget: BudgetConfig) -> int | None:
    """The last step, for schedules that decay to it; None when a seconds budget decides
    where training ends."""
    return budget.steps if budget.seconds is None else None


def _check_training(state, metrics, steps: int, partial: dict, task: str = "lm") -> float:
    """Record the training loss so far in ``partial`` and return it; fail on a non-finite
    loss, or on any step so far with a non-finite gradient norm (waits for the step: a
    sync point). ``task``: "lm", or "recall" (its steps are recorded apart and its
    failures say which task failed)."""
    loss = float(metrics["loss"])
    if task == "lm":
        partial.update(steps=steps, train_loss=loss)
        where = ""
    else:
        partial["recall_steps"] = steps
        where = "recall task: "
    if not math.isfinite(loss):
        raise _Failure(Status.NAN, f"{where}training loss is {loss} at step {steps}")
    bad = int(state.bad_grad_steps)
    if bad:
        raise _Failure(Status.UNTRAINED, (
            f"{where}gradient norm was NaN or Inf in {bad} of the first {steps} steps (last "
            f"{float(metrics['grad_norm']):.3g}) while the loss stayed finite; clipping "
            "turns such a gradient into a zero or NaN update, so the model stopped "
            "learning"))
    return loss


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
