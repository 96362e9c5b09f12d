"""Shared numerics: safe guards, channel fitting and causal masks; public, since the
compiler, its fusions and export use them as the primitives do.

Primitive code imports these by name (``from primitives.numerics import TINY``), so that
an exported block can copy it with bare names (see :mod:`primitives.source`).

Every primitive is a total function on its domain, finite float inputs of magnitude up to
HUGE (1e15, far beyond any activation that trains): there it never returns NaN or Inf.
Each op's own guard (LOG of 0, DIVIDE by 0, EXP overflow) is in its doc. Products over
many terms (RED_PROD, CUM_PROD) can overflow even inside the domain, so their outputs pass
through :func:`finite` (NaN -> 0, +-Inf -> +-max float). Guarding every op that way
costs about 30% of a train step and half again the compile time, so it is not done:
a composition that overflows gives a non-finite loss, and the evaluator records such a
candidate as failed.
"""

from __future__ import annotations

import jax.numpy as jnp

# Inputs up to this magnitude give finite outputs from every primitive.
HUGE = 1e15
# Smallest magnitude a denominator may take (DIVIDE, RECIP).
DIV_EPS = 1e-12
# Added inside LOG and ABS_ROOT so that their values and gradients at 0 stay finite.
TINY = 1e-30
# EXP clamps its argument here; exp(80) ~ 5.5e34 is finite in float32.
EXP_MAX = 80.0
# The value MASK writes over positions a row may not see. Finite, and exp() of it is 0.
MASK_VALUE = -1e30


def finite(y):
    """Replace NaN by 0 and +-Inf by the largest finite value of the dtype."""
    return jnp.nan_to_num(y, nan=0.0)


def safe_denominator(b):
    """``b`` with magnitudes below DIV_EPS pushed out to +-DIV_EPS (0 goes to +DIV_EPS)."""
    sign = jnp.where(b < 0, -1.0, 1.0).astype(b.dtype)
    return jnp.where(jnp.abs(b) < DIV_EPS, sign * DIV_EPS, b)


def fit_channels(x, width: int):
    """Resize the channel (last) axis of ``x`` to ``width``: the shape-mismatch rule.

    * equal widths: unchanged;
    * one channel: broadcast (a reduction result combines with every channel);
    * wider: truncated to the first ``width`` channels;
    * narrower: tiled cyclically, then truncated (channel c reads channel c mod C).

    The rule never looks along the sequence axis, so it cannot break causality.
    """
    c = x.shape[-1]
    if c == width:
        return x
    if c == 1:
        return jnp.broadcast_to(x, x.shape[:-1] + (width,))
    if c > width:
        return x[..., :width]
    reps = -(-width // c)
    return jnp.tile(x, (1,) * (x.ndim - 1) + (reps,))[..., :width]


def fit_like(x, like):
    """``x`` with the channel width of ``like`` (input 2 of an elementwise op)."""
    return fit_channels(x, like.shape[-1])


def fit_to_seq(x):
    """``x`` with one channel per sequence position, read as a ``[seq, seq]`` matrix."""
    return fit_channels(x, x.shape[1])


def causal_mask(rows: int, cols: int):
    """Boolean ``[rows, cols]``: True where column index <= row index (visible)."""
    return jnp.arange(cols)[None, :] <= jnp.arange(rows)[:, None]
