"""Reductions over the channel axis (Primer, So et al. 2021, Table 1).

Each returns one channel, ``[batch, seq, 1]``; the shape-mismatch rule broadcasts it back
when it meets a wider state, which is how normalisers are written (``x - RED_MEAN(x)``).
A reduction never looks along the sequence axis. On a score state, ``[batch, seq, seq]``,
the entries a row may not see are zero (T_MAT_MUL) or MASK_VALUE (MASK), constants that
carry no information from later positions, so reductions stay causal.
"""

from __future__ import annotations

import jax.numpy as jnp

from primitives.registry import reduced, register
from primitives.spec import Primitive


def _reduction(name: str, fn, doc: str, guard: bool = False) -> None:
    register(Primitive(name=name, arity=1, shape=reduced, guard=guard,
                       apply=lambda p, a, b, c, w: fn(a, axis=-1, keepdims=True), doc=doc))


_reduction("RED_MEAN", jnp.mean, "mean over channels")
_reduction("RED_SUM", jnp.sum, "sum over channels")
_reduction("RED_MIN", jnp.min, "min over channels")
_reduction("RED_MAX", jnp.max, "max over channels")
_reduction("RED_PROD", jnp.prod, "product over channels (overflow goes to +-max float)",
           guard=True)
