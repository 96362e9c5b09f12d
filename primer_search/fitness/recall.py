"""The recall task: multi-query associative recall (MQAR), and how tasks combine.

Perplexity after a few hundred steps cannot see in-context recall: at the budgets one
machine affords, a block that replaces attention by a short convolution over positions
reaches a lower perplexity than the Transformer, yet cannot look anything up beyond a
few tokens back. Zoology (Arora et al. 2023) finds that most of the perplexity gap
between attention and gated convolutions at scale is associative recall, and measures it
with MQAR, which this module generates.

A sequence of length ``L`` (the language-model rows' ``seq_len + 1``) is::

    k1 v1 k2 v2 ... kP vP  [filler ...]  kq1 vq1  [filler ...]  kq2 vq2 ...  filler ...

``P`` pairs with distinct keys (values drawn with replacement), then ``Q`` of the keys
again, in a shuffled order, each followed by its value. Under ``placement = "compact"``
the queries follow the pairs at once; under ``"spread"`` each query takes a slot of the
rest of the sequence, with the slot's gap after the pairs drawn from a power law. Token
ids: 0 is the filler, ``1 .. K`` the keys, ``K + 1 .. K + V`` the values. Only the targets
that are a query's value count (``weights`` is 1 there and 0 elsewhere), so a model
learns the task only by recalling; its accuracy at chance is ``1 / V``.

Everything here is numpy and seeded: the training stream from the training seed, the
evaluation set from a fixed seed shared by every candidate. No JAX.
"""

from __future__ import annotations

import math

import numpy as np

from primer_search.fitness.config import RecallConfig

__all__ = ["EVAL_SEED", "RecallData", "combine", "mqar_batch"]

# Seed of the fixed evaluation sequences (any training seed gives the same set).
EVAL_SEED = 0x5EC411


def mqar_batch(rng: np.random.Generator, config: RecallConfig, batch_size: int,
               length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens [batch, length] int32, weights [batch, length - 1] float32)``: rows of
    MQAR as the module doc describes; ``weights[b, t]`` is 1 where target ``t`` (the token
    at ``t + 1``) is a query's value."""
    P, Q, K, V = config.pairs, config.num_queries, config.num_keys, config.num_values
    if length < config.length_needed():
        raise ValueError(f"MQAR rows of {length} tokens cannot hold {P} pairs and {Q} "
                         f"queries (need {config.length_needed()})")
    B = batch_size
    rows = np.arange(B)[:, None]
    keys = rng.random((B, K)).argsort(axis=1)[:, :P].astype(np.int32) + 1
    values = rng.integers(0, V, (B, P), dtype=np.int32) + K + 1
    tokens = np.zeros((B, length), np.int32)
    tokens[:, 0:2 * P:2] = keys
    tokens[:, 1:2 * P:2] = values
    asked = rng.random((B, P)).argsort(axis=1)[:, :Q]       # which pairs, in which order
    slots = (length - 2 * P) // 2
    if config.placement == "compact":
        where = np.broadcast_to(np.arange(Q), (B, Q))
    else:
        p = (np.arange(slots) + 1.0) ** -config.gap_exponent
        p /= p.sum()
        # Q distinct slots per row, drawn with the power law's weights (Gumbel top-k).
        scores = np.log(p)[None, :] - np.log(-np.log(rng.random((B, slots))))
        where = np.sort(np.argsort(-scores, axis=1)[:, :Q], axis=1)
        order = rng.random((B, Q)).argsort(axis=1)           # queries in shuffled order
        asked = np.take_along_axis(asked, order, axis=1)
    position = 2 * P + 2 * where                              # each query key's position
    tokens[rows, position] = keys[rows, asked]
    tokens[rows, position + 1] = values[rows, asked]
    weights = np.zeros((B, length - 1), np.float32)
    weights[rows, position] = 1.0
    return tokens, weights


class RecallData:
    """The recall task's batches for one configuration and shape: a seeded training
    stream and a fixed evaluation set of ``eval_sequences`` rows (whole batches)."""

    def __init__(self, config: RecallConfig, batch_size: int, length: int):
        self.config, self.batch_size, self.length = config, batch_size, length
        rng = np.random.default_rng(EVAL_SEED)
        count = math.ceil(config.eval_sequences / batch_size)
        self.eval_batches = [mqar_batch(rng, config, batch_size, length) for _ in range(count)]

    def train_batches(self, seed: int, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The first ``steps`` training batches for ``seed`` (a few hundred KB; made at
        once so that no step waits for one)."""
        rng = np.random.default_rng([seed, 1])
        return [mqar_batch(rng, self.config, self.batch_size, self.length)
                for _ in range(steps)]


def combine(config: RecallConfig, perplexity: float, recall_loss: float | None) -> float:
    """One fitness (lower is better) from the language-model perplexity and the recall
    task's validation loss (nats per answer; None: no recall task).

    ``"weighted"``: ``perplexity * exp(weight * L + hinge_weight * max(0, L - hinge))``
    with ``L`` the recall loss and ``hinge = hinge_fraction * ln(num_values)`` (a
    fraction of the loss at chance). Without the hinge (``hinge_weight = 0``) it is the
    exponential of ``lm_loss + weight * L``. The hinge separates two questions: whether a
    block recalls at all (a block whose only mixing is local sits at chance, above the
    hinge, and pays ``hinge_weight`` per nat on top) and how well (every nat below the
    hinge counts ``weight``, small enough that the seed-to-seed noise of recall among
    blocks that all keep attention does not outweigh their language modelling). The
    docs' recall pages (docs/concepts/recall.md) have the measurements behind the shipped
    weights. ``"report"``:
    the perplexity alone."""
    if recall_loss is None or not config.enabled or config.combine == "report":
        return perplexity
    hinge = config.hinge_fraction * math.log(config.num_values)
    exponent = config.weight * recall_loss + config.hinge_weight * max(0.0, recall_loss - hinge)
    try:
        return perplexity * math.exp(exponent)
    except OverflowError:
        return math.inf
