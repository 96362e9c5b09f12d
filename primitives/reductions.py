"""Reductions over the channel axis (Primer, So et al. 2021, Table 1).

Each returns one channel, ``[batch, seq, 1]``; the shape-mismatch rule broadcasts it back
when it meets a wider state, which is how normalisers are written (``x - RED_MEAN(x)``).
A reduction never looks along the sequence axis. On a score state, ``[batch, seq, seq]``,
the entries a row may not see are zero (T_MAT_MUL) or MASK_VALUE (MASK), constants that
carry no information from later positions, so reductions stay causal.
"""

from __future__ import annotations

import jax.numpy as jnp

from primitives.registry import reduced, unary


@unary("RED_MEAN", shape=reduced, doc="mean over channels")
def red_mean(a):
    return jnp.mean(a, axis=-1, keepdims=True)


@unary("RED_SUM", shape=reduced, doc="sum over channels")
def red_sum(a):
    return jnp.sum(a, axis=-1, keepdims=True)


@unary("RED_MIN", shape=reduced, doc="min over channels")
def red_min(a):
    return jnp.min(a, axis=-1, keepdims=True)


@unary("RED_MAX", shape=reduced, doc="max over channels")
def red_max(a):
    return jnp.max(a, axis=-1, keepdims=True)


@unary("RED_PROD", shape=reduced, guard=True,
       doc="product over channels (overflow goes to +-max float)")
def red_prod(a):
    return jnp.prod(a, axis=-1, keepdims=True)
