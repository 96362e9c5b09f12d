"""Primitives that mix sequence positions. Each is causal by construction.

Position ``t`` of any output depends only on positions ``<= t`` of the inputs:

* T_MAT_MUL writes exact zeros above the diagonal of the score matrix it builds;
* MAT_MUL ignores the entries of its first input above the diagonal;
* convolutions are zero-padded on the left only; CUM_SUM and CUM_PROD are prefix scans.

``tests/test_causality.py`` checks this over hundreds of random programs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from primitives import _numerics as num
from primitives.registry import parametric_same_width, register, same_width, to_dim
from primitives.spec import Primitive, Width

# ---- products over the sequence (the parts attention is built from) -------------------


def _t_mat_mul(p, a, b, c, w):
    """s[t, j] = a_t . b_j / sqrt(C) for j <= t, 0 above the diagonal."""
    seq = a.shape[1]
    scores = jnp.einsum("btc,bsc->bts", a, b) / math.sqrt(a.shape[-1])  # (B, T, T)
    return jnp.where(num.causal_mask(seq, seq), scores, 0.0)


def _mat_mul(p, a, b, c, w):
    """out_t = sum_{j <= t} a[t, j] * b_j; ``a`` has been fitted to ``seq`` channels.

    ``b`` passes through ``finite`` first: the masked entries of ``a`` are exact zeros,
    and 0 * Inf would be NaN, which would carry a later position's overflow backwards.
    """
    seq = a.shape[1]
    visible = jnp.where(num.causal_mask(seq, seq), a, 0.0)  # (B, T, T)
    return jnp.einsum("bts,bsc->btc", visible, num.finite(b))


register(Primitive(
    name="T_MAT_MUL", arity=2, mixes_sequence=True, fit_input2="x1",
    shape=lambda w1, w2, dim: Width.seq(), apply=_t_mat_mul,
    doc="causal score matrix a @ b^T / sqrt(channels), zero above the diagonal -> [B,T,T]"))
register(Primitive(
    name="MAT_MUL", arity=2, mixes_sequence=True, fit_input1_to_seq=True,
    shape=lambda w1, w2, dim: w2, apply=_mat_mul,
    doc="out_t = sum_{j<=t} a[t,j] b_j (a read as a causal [T,T] matrix)"))


def _mask(p, a, b, c, w):
    """Entries with channel index > row index become MASK_VALUE (-1e30)."""
    visible = num.causal_mask(a.shape[1], a.shape[-1])
    return jnp.where(visible, a, num.MASK_VALUE)


register(Primitive(
    name="MASK", arity=1, shape=same_width, apply=_mask,
    doc="causal mask: entry [t, c] with c > t becomes -1e30, so EXP of it is 0"))
register(Primitive(
    name="CUM_SUM", arity=1, shape=same_width, mixes_sequence=True,
    apply=lambda p, a, b, c, w: jnp.cumsum(a, axis=1), doc="prefix sum along the sequence"))
register(Primitive(
    name="CUM_PROD", arity=1, shape=same_width, mixes_sequence=True, guard=True,
    apply=lambda p, a, b, c, w: jnp.cumprod(a, axis=1),
    doc="prefix product along the sequence (overflow goes to +-max float)"))

# ---- dense and convolutional projections --------------------------------------------


def _normal(rng, shape, std):
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)


def _dense_init(rng, in_width, out_width):
    return {"kernel": _normal(rng, (in_width, out_width), 1.0 / math.sqrt(in_width))}


register(Primitive(
    name="CONV_1X1", arity=1, reads_dim=True, shape=to_dim, init=_dense_init,
    apply=lambda p, a, b, c, w: a @ p["kernel"],
    doc="dense projection to the instruction's dimension size, no bias"))


def shift_right(x, lag: int):
    """``x`` delayed by ``lag`` positions along the sequence, zero-filled on the left."""
    if lag == 0:
        return x
    pad = jnp.zeros(x.shape[:1] + (lag,) + x.shape[2:], x.dtype)
    return jnp.concatenate([pad, x[:, :-lag]], axis=1)[:, : x.shape[1]]


def _causal_conv(p, a, b, c, w):
    """y_t = sum_i x_{t-i} @ W[i] (i = 0 is the current position), zero-padded on the left."""
    taps = p["kernel"]  # (k, C_in, C_out), tap i multiplies lag i
    k = taps.shape[0]
    return jax.lax.conv_general_dilated(
        a, taps[::-1], window_strides=(1,), padding=[(k - 1, 0)],
        dimension_numbers=("NWC", "WIO", "NWC"))


def _depthwise_conv(p, a, b, c, w):
    """y_t = sum_i taps[i] * x_{t-i} per channel, zero-padded on the left."""
    taps = p["taps"]  # (k, C)
    out = taps[0] * a
    for lag in range(1, taps.shape[0]):
        out = out + taps[lag] * shift_right(a, lag)
    return out


def _conv_init(k: int):
    def init(rng, in_width, out_width):
        return {"kernel": _normal(rng, (k, in_width, out_width), 1.0 / math.sqrt(k * in_width))}
    return init


def _dconv_init(k: int):
    """Primer's released code starts a width-k DConv with the current position's tap at
    0.5 and every lagged tap at 0.5 / k: (0.5, 1/6, 1/6) for k = 3, mostly the current
    position plus a little smoothing (the taps sum to 0.5 + 0.5 (k - 1) / k, not 1)."""
    def init(rng, in_width, out_width):
        taps = np.full((k, in_width), 0.5 / k, np.float32)
        taps[0] = 0.5
        return {"taps": taps}
    return init


for _k in (3, 7, 15, 31):
    register(Primitive(
        name=f"CONV_{_k}X1", arity=1, reads_dim=True, mixes_sequence=True, shape=to_dim,
        init=_conv_init(_k), apply=_causal_conv,
        doc=f"causal convolution over {_k} positions, to the instruction's dimension size"))
for _k in (3, 7, 15, 31):
    register(Primitive(
        name=f"DCONV_{_k}X1", arity=1, mixes_sequence=True, shape=parametric_same_width,
        init=_dconv_init(_k), apply=_depthwise_conv,
        doc=f"causal depthwise convolution over {_k} positions, one filter per channel"))
