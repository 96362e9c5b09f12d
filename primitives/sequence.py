"""Primitives that mix sequence positions. Each is causal by construction.

Position ``t`` of any output depends only on positions ``<= t`` of the inputs:

* T_MAT_MUL writes exact zeros above the diagonal of the score matrix it builds;
* MAT_MUL ignores the entries of its first input above the diagonal;
* convolutions are zero-padded on the left only; CUM_SUM and CUM_PROD are prefix scans.

``tests/test_causality.py`` checks this over hundreds of random programs.

Square roots of sizes are taken as ``float(np.sqrt(n))``, a Python float like
``math.sqrt(n)`` (so float32 arithmetic stays float32), because exported code may use no
module but jax, jnp and np.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from primitives.numerics import MASK_VALUE, causal_mask, finite
from primitives.registry import (
    parametric_same_width,
    primitive,
    second_width,
    seq_width,
    to_dim,
    unary,
)

# ---- products over the sequence (the parts attention is built from) -------------------


@primitive("T_MAT_MUL", arity=2, shape=seq_width, mixes_sequence=True, fit_input2="x1",
           doc="causal score matrix a @ b^T / sqrt(channels), zero above the diagonal -> "
               "[B,T,T]")
def t_mat_mul(a, b):
    """s[t, j] = a_t . b_j / sqrt(C) for j <= t, 0 above the diagonal."""
    seq = a.shape[1]
    scores = jnp.einsum("btc,bsc->bts", a, b) / float(np.sqrt(a.shape[-1]))  # (B, T, T)
    return jnp.where(causal_mask(seq, seq), scores, 0.0)


@primitive("MAT_MUL", arity=2, shape=second_width, mixes_sequence=True,
           fit_input1_to_seq=True,
           doc="out_t = sum_{j<=t} a[t,j] b_j (a read as a causal [T,T] matrix)")
def mat_mul(a, b):
    """out_t = sum_{j <= t} a[t, j] * b_j; ``a`` has been fitted to ``seq`` channels.

    ``b`` passes through ``finite`` first: the masked entries of ``a`` are exact zeros,
    and 0 * Inf would be NaN, which would carry a later position's overflow backwards.
    """
    seq = a.shape[1]
    visible = jnp.where(causal_mask(seq, seq), a, 0.0)  # (B, T, T)
    return jnp.einsum("bts,bsc->btc", visible, finite(b))


@unary("MASK", doc="causal mask: entry [t, c] with c > t becomes -1e30, so EXP of it is 0")
def mask(a):
    """Entries with channel index > row index become MASK_VALUE (-1e30)."""
    visible = causal_mask(a.shape[1], a.shape[-1])
    return jnp.where(visible, a, MASK_VALUE)


@unary("CUM_SUM", mixes_sequence=True, doc="prefix sum along the sequence")
def cum_sum(a):
    return jnp.cumsum(a, axis=1)


@unary("CUM_PROD", mixes_sequence=True, guard=True,
       doc="prefix product along the sequence (overflow goes to +-max float)")
def cum_prod(a):
    return jnp.cumprod(a, axis=1)


# ---- dense and convolutional projections --------------------------------------------


def normal(rng, shape, std):
    """Float32 Gaussian draws with standard deviation ``std``."""
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)


def dense_init(rng, in_width, out_width):
    """A kernel with standard deviation 1 / sqrt(fan-in)."""
    return {"kernel": normal(rng, (in_width, out_width), 1.0 / float(np.sqrt(in_width)))}


@unary("CONV_1X1", reads_dim=True, shape=to_dim, init=dense_init,
       doc="dense projection to the instruction's dimension size, no bias")
def dense(a, params):
    return a @ params["kernel"]


def shift_right(x, lag: int):
    """``x`` delayed by ``lag`` positions along the sequence, zero-filled on the left."""
    if lag == 0:
        return x
    pad = jnp.zeros(x.shape[:1] + (lag,) + x.shape[2:], x.dtype)
    return jnp.concatenate([pad, x[:, :-lag]], axis=1)[:, : x.shape[1]]


def causal_conv(a, params):
    """y_t = sum_i x_{t-i} @ W[i] (i = 0 is the current position), zero-padded on the left."""
    taps = params["kernel"]  # (k, C_in, C_out), tap i multiplies lag i
    k = taps.shape[0]
    return jax.lax.conv_general_dilated(
        a, taps[::-1], window_strides=(1,), padding=[(k - 1, 0)],
        dimension_numbers=("NWC", "WIO", "NWC"))


def depthwise_conv(a, params):
    """y_t = sum_i taps[i] * x_{t-i} per channel, zero-padded on the left."""
    taps = params["taps"]  # (k, C)
    out = taps[0] * a
    for lag in range(1, taps.shape[0]):
        out = out + taps[lag] * shift_right(a, lag)
    return out


def conv_init(rng, in_width, out_width, taps):
    """A kernel of ``taps`` positions with standard deviation 1 / sqrt(fan-in)."""
    return {"kernel": normal(rng, (taps, in_width, out_width),
                             1.0 / float(np.sqrt(taps * in_width)))}


def dconv_init(rng, in_width, out_width, taps):
    """Primer's released code starts a width-k DConv with the current position's tap at
    0.5 and every lagged tap at 0.5 / k: (0.5, 1/6, 1/6) for k = 3, mostly the current
    position plus a little smoothing (the taps sum to 0.5 + 0.5 (k - 1) / k, not 1)."""
    start = np.full((taps, in_width), 0.5 / taps, np.float32)
    start[0] = 0.5
    return {"taps": start}


for _k in (3, 7, 15, 31):
    primitive(f"CONV_{_k}X1", arity=1, reads_dim=True, mixes_sequence=True, shape=to_dim,
              init=functools.partial(conv_init, taps=_k),
              doc=f"causal convolution over {_k} positions, to the instruction's dimension "
                  "size")(causal_conv)
for _k in (3, 7, 15, 31):
    primitive(f"DCONV_{_k}X1", arity=1, mixes_sequence=True, shape=parametric_same_width,
              init=functools.partial(dconv_init, taps=_k),
              doc=f"causal depthwise convolution over {_k} positions, one filter per "
                  "channel")(depthwise_conv)
