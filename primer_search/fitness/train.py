"""Training and evaluation steps for a language model built around a compiled block.

Pure functions: ``train_step(state, batch, weights) -> (state, metrics)`` and
``eval_step(params, batch, weights) -> (loss by position, correct)``, jitted by
:func:`make_steps`. A batch is an int32 array ``[batch, seq + 1]``: inputs are
``batch[:, :-1]``, targets ``batch[:, 1:]``. ``weights`` ``[batch, seq]`` says which
targets count: all of them for language modelling, only the answers for the recall task
(:mod:`primer_search.fitness.recall`), so one compiled step serves both tasks.

The optimiser is AdamW with global-norm clipping, a linear warm-up and one of four
decays (:data:`SCHEDULES`). Weight decay applies to projection matrices and the
embedding only, not to norm scales, biases, convolution taps or other per-channel
vectors (:func:`decay_mask`), as most LM trainers do.

A step whose gradient norm is not finite is counted in ``TrainState.bad_grad_steps``:
global-norm clipping turns such a gradient into a zero (or NaN) update, so the model
silently stops learning while its loss looks ordinary. The evaluator fails such a
candidate instead of scoring it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from primer_search.fitness.config import OptimConfig
from primer_search.fitness.model import LanguageModel

__all__ = ["TrainState", "decay_mask", "learning_rate_schedule", "make_optimizer", "make_steps",
           "token_loss", "zero_start"]

def learning_rate_schedule(cfg: OptimConfig, total_steps: int | None,
                           d_model: int | None = None) -> Callable:
    """``step -> rate`` (step counts from 0). ``total_steps`` is where "linear", "cosine"
    and "wsd" reach ``end_fraction``; with None they hold the peak after warm-up.
    ``d_model`` sets the peak when ``cfg.learning_rate`` is None."""
    warm = max(cfg.warmup(total_steps), 1)
    peak, end = cfg.peak_rate(d_model), cfg.end_fraction
    kind = cfg.schedule
    if kind in ("linear", "cosine", "wsd") and total_steps is None:
        kind = "constant"
    # Where the decay starts: after warm-up, or at the cooldown for "wsd".
    start = warm
    if kind == "wsd":
        start = max(warm, round(total_steps * (1.0 - cfg.cooldown_fraction)))
    span = max((total_steps or 0) - start, 1)

    def lr(step):
        step = jnp.asarray(step, jnp.float32) + 1.0
        up = jnp.minimum(step / warm, 1.0)
        if kind == "constant":
            return peak * up
        if kind == "rsqrt":
            return peak * jnp.minimum(step / warm, jnp.sqrt(warm / step))
        done = jnp.clip((step - start) / span, 0.0, 1.0)   # 0 where the decay starts, 1 at the end
        if kind in ("linear", "wsd"):
            fall = 1.0 - done
        else:
            fall = 0.5 * (1.0 + jnp.cos(jnp.pi * done))
        return peak * up * (end + (1.0 - end) * fall)

    return lr


def decay_mask(params) -> Any:
    """True for the leaves weight decay applies to: dense and convolution kernels
    (``kernel``, ``kernel_*``) and the token embedding. Norm scales, shifts (biases),
    depthwise taps, long-convolution filters and the final norm are not decayed."""
    def decays(path, _):
        name = str(getattr(path[-1], "key", path[-1]))
        return name == "embed" or name == "kernel" or name.startswith("kernel_")
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: OptimConfig, total_steps: int | None = None,
                   d_model: int | None = None) -> optax.GradientTransformation:
    """The optimiser ``cfg`` names (AdamW or Adafactor) for a run of ``total_steps``
    (None: unknown, e.g. a budget in seconds) of a model of width ``d_model`` (needed
    when ``cfg.learning_rate`` is None)."""
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    schedule = learning_rate_schedule(cfg, total_steps, d_model)
    mask = decay_mask if cfg.decay == "matrices" else None
    if cfg.optimizer == "adafactor":
        # The paper's Adafactor: the learning rate is absolute (not scaled by each
        # parameter's norm), updates are clipped at RMS 1 and there is no momentum.
        parts.append(optax.adafactor(schedule, multiply_by_parameter_scale=False,
                                     clipping_threshold=1.0, momentum=None,
                                     weight_decay_rate=cfg.weight_decay or None,
                                     weight_decay_mask=mask if cfg.weight_decay else None))
    else:
        parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2,
                                 weight_decay=cfg.weight_decay, mask=mask))
    return zero_start(optax.chain(*parts))


def zero_start(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` with an ``init`` that makes its state on the host from shapes alone.

    Every state leaf of the optimisers :func:`make_optimizer` builds starts at zero (step
    counts, Adam's moments, Adafactor's factored moments; ``tests/test_trainer.py`` checks
    it against their own ``init``), so the state needs only its shapes, which
    ``jax.eval_shape`` gives without compiling anything. Jitting ``tx.init`` instead
    costs an XLA compile for every new parameter structure, that is for nearly every
    candidate of a search (``benchmarks/compile_and_step.py`` times the ``init`` phase)."""
    def init(params):
        shapes = jax.eval_shape(tx.init, params)
        return jax.device_put(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes))

    return optax.GradientTransformation(init, tx.update)


@dataclasses.dataclass(frozen=True)
class TrainState:
    params: Any
    opt_state: Any
    step: jax.Array
    # Steps so far whose gradient norm was NaN or Inf (their update did not train).
    bad_grad_steps: jax.Array


jax.tree_util.register_dataclass(
    TrainState, data_fields=["params", "opt_state", "step", "bad_grad_steps"], meta_fields=[])


def token_loss(model: LanguageModel, params, batch):
    """Per-token cross-entropy ``[batch, seq]`` of next-token prediction."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model.apply(params, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


# XLA options for the CPU, measured with benchmarks/compile_and_step.py on the search's
# models (see compiler_options). Each applies only where this XLA knows it and XLA_FLAGS
# does not set it.
CPU_COMPILER_OPTIONS = {
    # LLVM optimisation level 1 instead of 3: compiles 10-25% faster, steps as fast.
    "xla_backend_optimization_level": 1,
    # XLA's elemental loop emitters instead of its newer MLIR fusion emitters: about 40%
    # less compile time for a train step, steps 0-20% slower (same losses).
    "xla_cpu_use_fusion_emitters": False,
}


def compiler_options() -> dict:
    """XLA options the trainer compiles its steps with: on the CPU those of
    :data:`CPU_COMPILER_OPTIONS` that this XLA accepts and ``XLA_FLAGS`` leaves alone;
    on other platforms none (their defaults)."""
    if jax.default_backend() != "cpu":
        return {}
    user = os.environ.get("XLA_FLAGS", "")
    return {k: v for k, v in CPU_COMPILER_OPTIONS.items()
            if k not in user and _accepted(k, v)}


@functools.cache
def _accepted(option: str, value) -> bool:
    """Whether XLA compiles with ``option`` (an XLA that renamed or dropped it refuses
    every compile that names it)."""
    try:
        jax.jit(lambda x: x + 1).lower(jnp.zeros(2)).compile({option: value})
    except Exception:  # noqa: BLE001 -- any refusal means: leave it out
        return False
    return True


def make_steps(model: LanguageModel, optimizer: optax.GradientTransformation):
    """Return ``(init_state, train_step, eval_step)``; the steps are jitted.

    ``init_state(seed, batch)`` initialises on the host (see ``Block.init``), and calls
    ``optimizer.init`` as it is: :func:`make_optimizer`'s optimisers start from zeros
    without compiling (:func:`zero_start`); another runs op by op."""
    def init_state(seed, batch) -> TrainState:
        params = model.init(seed, batch[:, :-1])
        # Two arrays, not one: the train step donates its state, buffer by buffer.
        return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32),
                          jnp.zeros((), jnp.int32))

    def loss_fn(params, batch, weights):
        losses = token_loss(model, params, batch)
        if weights is None:
            return losses.mean()
        return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)

    def train_step(state: TrainState, batch, weights=None):
        """One step on the mean loss of the targets ``weights`` counts (None: all)."""
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, weights)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        bad = state.bad_grad_steps + (~jnp.isfinite(grad_norm)).astype(jnp.int32)
        metrics = {"loss": loss, "grad_norm": grad_norm}
        return TrainState(params, opt_state, state.step + 1, bad), metrics

    def eval_step(params, batch, weights):
        """The weighted token loss summed over the batch at each position ``[seq]``, and
        how many of the weighted targets the model ranks first. A padded last batch of an
        evaluation set has zero weights in its padding rows."""
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = model.apply(params, inputs)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
        return (losses * weights).sum(axis=0), (correct * weights).sum()

    return init_state, jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
