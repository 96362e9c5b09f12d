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
from primer_search.fitness.config import BudgetConfig, FitnessConfig
from primer_search.fitness.data import Dataset, Prefetcher, cache_root, load_dataset
from primer_search.fitness.hurdles import stage_ends
from primer_search.fitness.metrics import metrics_from_eval
from primer_search.fitness.model import build_lm, count_params
from primer_search.fitness.results import WORST_FITNESS, EvalResult, Status
from primer_search.fitness.train import compiler_options, make_optimizer, make_steps
from primer_search.program.compiler import CompileError
from primer_search.program.dna import DNA, DNAError

__all__ = ["Evaluator", "unigram_perplexity"]


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
        # The evaluation set as full batches and the rows of each that count: a short
        # last batch is padded, so that one compiled evaluation step serves them all.
        self._eval_batches = []
        for b in self.dataset.eval_batches():
            rows = len(b)
            padded = np.zeros((self.dataset.batch_size, b.shape[1]), np.int32)
            padded[:rows] = b
            self._eval_batches.append((jnp.asarray(padded), jnp.asarray(rows, jnp.int32)))

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
        init_state, train_step, eval_step = make_steps(
            lm, make_optimizer(cfg.optim, _total_steps(budget), cfg.model.d_model))
        # Batches are made in a background thread ahead of training; time spent waiting
        # for one is kept out of train_s (and so out of a budget in seconds).
        batches = run.batches = Prefetcher(self.dataset.train_batches(run.seed))
        first = jnp.asarray(next(batches))

        t = time.perf_counter()
        state = init_state(run.seed, first)
        options = compiler_options()
        step_fn = train_step.lower(state, first).compile(options)
        eval_fn = eval_step.lower(state.params, *self._eval_batches[0]).compile(options)
        timings["compile_s"] = time.perf_counter() - t
        partial["num_params"] = count_params(state.params)
        run.check_time()
        run.enter_gate()

        steps, stage_fitness = 0, []
        batch = first
        timed = budget.seconds is not None
        for k, (step_limit, second_limit) in enumerate(_stage_limits(budget)):
            t, stage_start, waited = time.perf_counter(), steps, batches.waited_s
            while True:
                if step_limit is not None and steps >= step_limit:
                    break
                if second_limit is not None and steps > stage_start and timings["train_s"] + (
                        time.perf_counter() - t - (batches.waited_s - waited)) >= second_limit:
                    break
                state, metrics = step_fn(state, batch)
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
            total = sum(float(eval_fn(state.params, b, rows)[0]) for b, rows in self._eval_batches)
            timings["eval_s"] += time.perf_counter() - t
            if not math.isfinite(total):
                raise _Failure(Status.NAN, f"validation loss is {total} after {steps} steps")
            metrics_eval = metrics_from_eval(total, self.dataset.eval_info)
            stage_fitness.append(metrics_eval["perplexity"])
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
            **timings), state.params


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


def _check_training(state, metrics, steps: int, partial: dict) -> float:
    """Record the training loss so far in ``partial`` and return it; fail on a non-finite
    loss, or on any step so far with a non-finite gradient norm (waits for the step: a
    sync point)."""
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
