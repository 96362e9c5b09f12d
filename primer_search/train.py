"""Training and evaluation steps for a language model built around a compiled block.

Pure functions: ``train_step(state, batch) -> (state, metrics)`` and
``eval_step(params, batch) -> summed loss``, jitted by :func:`make_steps`. A batch is an
int32 array ``[batch, seq + 1]``: inputs are ``batch[:, :-1]``, targets ``batch[:, 1:]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from primer_search.model import LanguageModel

__all__ = ["OptimConfig", "TrainState", "make_optimizer", "make_steps", "token_loss"]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (AdamW, linear warmup, then inverse-sqrt decay)."""

    # Peak learning rate, reached at the end of warmup.
    learning_rate: float = 1e-2
    # Steps of linear warmup from 0.
    warmup_steps: int = 30
    # Decoupled weight decay.
    weight_decay: float = 0.01
    # Clip gradients to this global norm (0 turns clipping off).
    clip_norm: float = 1.0
    b1: float = 0.9
    b2: float = 0.98


def _schedule(cfg: OptimConfig) -> Callable:
    warm = max(cfg.warmup_steps, 1)

    def lr(step):
        step = jnp.asarray(step, jnp.float32) + 1.0
        return cfg.learning_rate * jnp.minimum(step / warm, jnp.sqrt(warm / step))

    return lr


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    parts.append(optax.adamw(_schedule(cfg), b1=cfg.b1, b2=cfg.b2,
                             weight_decay=cfg.weight_decay))
    return optax.chain(*parts)


@dataclasses.dataclass(frozen=True)
class TrainState:
    params: Any
    opt_state: Any
    step: jax.Array


jax.tree_util.register_dataclass(TrainState, data_fields=["params", "opt_state", "step"],
                                 meta_fields=[])


def token_loss(model: LanguageModel, params, batch):
    """Per-token cross-entropy ``[batch, seq]`` of next-token prediction."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model.apply(params, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


def make_steps(model: LanguageModel, optimizer: optax.GradientTransformation):
    """Return ``(init_state, train_step, eval_step)``; the steps are jitted.

    ``init_state(seed, batch)`` initialises on the host (see ``Block.init``)."""
    init_optimizer = jax.jit(optimizer.init)

    def init_state(seed, batch) -> TrainState:
        params = model.init(seed, batch[:, :-1])
        return TrainState(params, init_optimizer(params), jnp.zeros((), jnp.int32))

    def loss_fn(params, batch):
        return token_loss(model, params, batch).mean()

    def train_step(state: TrainState, batch):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return TrainState(params, opt_state, state.step + 1), metrics

    def eval_step(params, batch):
        """Summed token loss and token count of one batch."""
        losses = token_loss(model, params, batch)
        return losses.sum(), jnp.asarray(losses.size, jnp.float32)

    return init_state, jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
