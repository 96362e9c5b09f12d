"""Primitives beyond the Primer paper's vocabulary, for the blocks published after it.

The seed zoo (:mod:`primer_search.program.seeds`) must write RWKV, the Monarch Mixer, Performer
and ALiBi attention as programs. Each needs one mechanism that no composition of the
paper's ops gives exactly, so each becomes a primitive, as general as the mechanism
allows, so that a search can use it elsewhere too:

* ``DELAY``: the previous position's state (RWKV's token shift);
* ``DECAY_SUM``: a prefix sum with a decay per position and channel (RWKV's time decay,
  and any gated linear recurrence);
* ``LONG_CONV``: a causal depthwise convolution over the whole sequence with an implicit,
  length-independent filter (the Monarch Mixer's and Hyena's long convolutions);
* ``MONARCH``: a Monarch matrix, two block-diagonal factors and a stride permutation
  (the Monarch Mixer's dimension mixing);
* ``RAND_FEATURES``: FAVOR+'s positive orthogonal random features (Performer);
* ``ALIBI``: a penalty linear in the distance between positions (ALiBi).

Like every primitive's, the functions that compute them (``delay``, ``decay_sum``, ...)
use only jax, jnp and np, so that an exported block can copy them verbatim (see
:mod:`primitives.source`). Sequence-mixing ones are causal by construction;
``tests/test_causality.py`` checks them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from primitives.registry import binary, parametric_same_width, to_dim, unary

# ---- recurrences ----------------------------------------------------------------------


@unary("DELAY", mixes_sequence=True,
       doc="previous position's value, 0 at the first (token shift)")
def delay(x):
    """``y_t = x_{t-1}``, and 0 at the first position (RWKV's token shift)."""
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, : x.shape[1]]


@binary("DECAY_SUM", mixes_sequence=True,
        doc="y_t = exp(-|b_t|) y_{t-1} + a_t: prefix sum with a decay per position and "
            "channel")
def decay_sum(x, w):
    """``y_t = exp(-|w_t|) * y_{t-1} + x_t`` with ``y_{-1} = 0``, per channel.

    A prefix sum whose memory fades by the factor ``exp(-|w_t|)`` at each step; with a
    constant ``w`` it is ``y_t = sum_{s<=t} exp(-|w| (t - s)) x_s``. Computed as a
    parallel prefix scan; position ``t``'s value combines only positions ``<= t``.
    """
    def combine(left, right):
        (a_l, b_l), (a_r, b_r) = left, right
        return a_l * a_r, a_r * b_l + b_r

    _, y = jax.lax.associative_scan(combine, (jnp.exp(-jnp.abs(w)), x), axis=1)
    return y


# ---- long convolution -------------------------------------------------------------------

# Damped oscillations per channel in a LONG_CONV filter.
LONG_CONV_MODES = 4


def long_conv_modes(channels: int):
    """Deterministic start for LONG_CONV's decays and frequencies, each (modes, channels).

    Decay rates are log-spaced from 0.01 (a memory of ~100 positions) to 1 (~1 position);
    frequencies are spread over [0, pi) along channels with the golden ratio, so that
    channels start different."""
    decay = np.logspace(-2, 0, LONG_CONV_MODES)[:, None] * np.ones((1, channels))
    phase = np.arange(LONG_CONV_MODES)[:, None] / LONG_CONV_MODES + \
        np.arange(channels)[None, :] * 0.6180339887
    return np.log(decay).astype(np.float32), (np.pi * (phase % 1.0)).astype(np.float32)


def long_conv_filter(params, length: int):
    """The filter ``h[tau, c] = sum_n a_n sqrt(1 - exp(-2 l_n)) exp(-l_n tau) cos(f_n tau)``
    for lags ``tau = 0 .. length - 1``; ``l_n = exp(log_decay_n)``. The square root gives
    each mode unit energy, so the amplitudes keep the output's scale at any decay."""
    tau = jnp.arange(length, dtype=jnp.float32)[:, None, None]  # (T, 1, 1)
    decay = jnp.exp(jnp.clip(params["log_decay"], -30.0, 30.0))  # (N, C)
    gain = params["amplitude"] * jnp.sqrt(-jnp.expm1(-2.0 * decay))
    modes = gain * jnp.exp(-decay * tau) * jnp.cos(params["frequency"] * tau)  # (T, N, C)
    return modes.sum(axis=1)  # (T, C)


def long_conv_init(rng, in_width, out_width):
    """Random amplitudes around the deterministic decays and frequencies."""
    log_decay, frequency = long_conv_modes(in_width)
    amplitude = rng.standard_normal((LONG_CONV_MODES, in_width), dtype=np.float32)
    return {"amplitude": amplitude / np.float32(np.sqrt(LONG_CONV_MODES)),
            "log_decay": log_decay, "frequency": frequency}


@unary("LONG_CONV", shape=parametric_same_width, mixes_sequence=True, init=long_conv_init,
       doc="causal depthwise convolution over the whole sequence; filter per channel = "
           f"{LONG_CONV_MODES} learned damped cosines (length-independent)")
def long_conv(x, params):
    """``y_t = sum_{tau=0..t} h[tau] * x_{t - tau}`` per channel, zero-padded on the left.

    Computed as one lower-triangular Toeplitz matrix per channel (a batched matmul,
    ``[seq, seq, channels]`` memory): on CPU about 20x faster than XLA's grouped
    convolution with a sequence-long kernel. Entries above the diagonal are exact zeros
    and ``x`` is made finite first, so later positions cannot reach earlier ones (not even
    a NaN through ``0 * Inf``).
    """
    length = x.shape[1]
    h = long_conv_filter(params, length)  # (T, C)
    lag = jnp.arange(length)[:, None] - jnp.arange(length)[None, :]  # t - s
    toeplitz = jnp.where((lag >= 0)[..., None], h[jnp.maximum(lag, 0)], 0.0)  # (T, S, C)
    return jnp.einsum("tsc,bsc->btc", toeplitz, jnp.nan_to_num(x, nan=0.0))


# ---- Monarch matrices -------------------------------------------------------------------

# Blocks per factor of a MONARCH matrix (the Monarch Mixer's default).
MONARCH_BLOCKS = 4


def monarch_sizes(in_width: int, out_width: int) -> tuple[int, int, int]:
    """Block sizes (p, q, r): R is (blocks, p, q), L is (blocks, q, r). The middle width
    ``blocks * q`` is the smaller side, so a MONARCH never costs more than a dense map."""
    b = MONARCH_BLOCKS
    return -(-in_width // b), -(-min(in_width, out_width) // b), -(-out_width // b)


def monarch_init(rng, in_width, out_width):
    """Block factors with standard deviation 1 / sqrt(fan-in of the block)."""
    p, q, r = monarch_sizes(in_width, out_width)
    b = MONARCH_BLOCKS
    return {"kernel_r": (rng.standard_normal((b, p, q), dtype=np.float32) / float(np.sqrt(p))),
            "kernel_l": (rng.standard_normal((b, q, r), dtype=np.float32) / float(np.sqrt(q)))}


@unary("MONARCH", reads_dim=True, reads_width=True, shape=to_dim, init=monarch_init,
       doc=f"Monarch matrix P L P^T R ({MONARCH_BLOCKS} blocks per factor) to the "
           "instruction's dimension size, no bias")
def monarch(x, params, out_width: int):
    """``y = P L P^T R x``: R and L block-diagonal, P the reshape-transpose permutation.

    ``x`` is zero-padded to ``blocks * p`` channels and split into contiguous blocks; R
    maps each block; P^T interleaves the blocks (reshape to (q, blocks), transpose), so
    that each block of L sees a slice of every block of R's output; P undoes the
    interleave on L's output, which is truncated to ``out_width``.
    """
    r_kernel, l_kernel = params["kernel_r"], params["kernel_l"]
    b, p, q = r_kernel.shape
    lead = x.shape[:-1]
    x = jnp.pad(x, [(0, 0)] * len(lead) + [(0, b * p - x.shape[-1])])
    z = jnp.einsum("...kp,kpq->...kq", x.reshape(lead + (b, p)), r_kernel)
    z = jnp.swapaxes(z, -1, -2).reshape(lead + (b, q))  # P^T
    y = jnp.einsum("...kq,kqr->...kr", z, l_kernel)
    y = jnp.swapaxes(y, -1, -2).reshape(lead + (-1,))  # P
    return y[..., :out_width]


# ---- FAVOR+ random features -------------------------------------------------------------


def orthogonal_features(in_width: int, out_width: int, const: float):
    """A fixed (in_width, out_width) matrix whose columns are FAVOR+'s random directions:
    blocks of orthonormal Gaussian directions, each scaled to the length of a Gaussian
    vector (so each column is marginally N(0, I)). The constant's bits seed the draw, so
    a program fixes it; it is a constant of the block, never trained."""
    rng = np.random.default_rng(np.frombuffer(np.float64(const).tobytes(), np.uint32))
    blocks = []
    for _ in range(-(-out_width // in_width)):
        q, _ = np.linalg.qr(rng.standard_normal((in_width, in_width)))
        blocks.append(q.T)
    directions = np.concatenate(blocks)[:out_width]
    lengths = np.linalg.norm(rng.standard_normal((out_width, in_width)), axis=1)
    return (directions * lengths[:, None]).T.astype(np.float32)


@unary("RAND_FEATURES", reads_dim=True, reads_const=True, reads_width=True, shape=to_dim,
       doc="FAVOR+ positive orthogonal random features exp(W x/d^.25 - |x|^2/(2 sqrt d))"
           "/sqrt m; fixed W seeded by the constant, m = dimension size")
def random_features(x, const: float, out_width: int):
    """FAVOR+ positive features ``exp(W^T x' - |x'|^2 / 2) / sqrt(m)`` with
    ``x' = x / d^(1/4)`` (d = x's channels, m = out_width): for two positions,
    ``E[phi(q) . phi(k)] = exp(q . k / sqrt(d))``, the softmax kernel. The exponent is
    clamped at 80 like EXP."""
    d = x.shape[-1]
    w = jnp.asarray(orthogonal_features(d, out_width, const))
    xs = x / d ** 0.25
    exponent = xs @ w - 0.5 * jnp.sum(jnp.square(xs), axis=-1, keepdims=True)
    return jnp.exp(jnp.minimum(exponent, 80.0)) / np.sqrt(out_width)


# ---- ALiBi ------------------------------------------------------------------------------


@unary("ALIBI", reads_const=True,
       doc="a[t, s] - constant * (t - s): ALiBi's linear distance penalty on scores")
def alibi(x, slope: float):
    """``y[t, s] = x[t, s] - slope * (t - s)``: on a score state ``[batch, seq, seq]``,
    ALiBi's penalty on the distance from query t to key s (s is the channel index, so on
    other states it is a fixed bias per position and channel)."""
    t = jnp.arange(x.shape[1], dtype=x.dtype)[:, None]
    s = jnp.arange(x.shape[2], dtype=x.dtype)[None, :]
    return x - slope * (t - s)

