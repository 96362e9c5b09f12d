"""Definitions of the primitives in ``primitives/extended.py``, against plain numpy loops.

The shared suite (test_primitives.py) already runs them through shapes, finiteness,
gradients and per-op causality; these tests pin down what each one computes.
"""

import math

import numpy as np
import pytest

import primitives
from primitives import extended

rng = np.random.default_rng(0)
B, T, C = 2, 12, 8
X = rng.normal(size=(B, T, C)).astype(np.float32)


def run(name, x1, x2=None, const=0.0, width=C, params=None):
    prim = primitives.get(name)
    if params is None and prim.has_params:
        params = prim.init(np.random.default_rng(1), x1.shape[-1], width)
    y = primitives.run(prim, params, x1, x1 if x2 is None else x2, const, width)
    return np.asarray(y), params


def test_delay_is_the_previous_position():
    y, _ = run("DELAY", X)
    np.testing.assert_array_equal(y[:, 0], 0)
    np.testing.assert_array_equal(y[:, 1:], X[:, :-1])


def test_decay_sum_is_the_recurrence():
    w = rng.normal(size=(B, T, C)).astype(np.float32)
    y, _ = run("DECAY_SUM", X, w)
    ref = np.zeros_like(X)
    state = np.zeros((B, C), np.float32)
    for t in range(T):
        state = np.exp(-np.abs(w[:, t])) * state + X[:, t]
        ref[:, t] = state
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # A one-channel decay (a reduction, or a learned constant) applies to every channel.
    y1, _ = run("DECAY_SUM", X, w[..., :1])
    y_full, _ = run("DECAY_SUM", X, np.broadcast_to(w[..., :1], X.shape))
    np.testing.assert_allclose(y1, y_full, rtol=1e-6)


def test_long_conv_is_a_causal_convolution_with_its_filter():
    y, p = run("LONG_CONV", X)
    decay = np.exp(p["log_decay"])
    gain = p["amplitude"] * np.sqrt(1 - np.exp(-2 * decay))
    tau = np.arange(T)[:, None, None]
    h = (gain * np.exp(-decay * tau) * np.cos(p["frequency"] * tau)).sum(1)  # (T, C)
    ref = np.zeros_like(X)
    for t in range(T):
        for lag in range(t + 1):
            ref[:, t] += h[lag] * X[:, t - lag]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    # The filter reaches the whole sequence: the first position moves the last one.
    x2 = X.copy()
    x2[:, 0] += 1.0
    assert np.abs(run("LONG_CONV", x2, params=p)[0][:, -1] - y[:, -1]).min() > 0


def dense_monarch(p, in_width, out_width):
    """The dense matrix of P L P^T R, built entry by entry from its definition."""
    r, l_ = np.asarray(p["kernel_r"]), np.asarray(p["kernel_l"])
    b, pb, q = r.shape
    R = np.zeros((b * pb, b * q))
    L = np.zeros((b * q, b * l_.shape[2]))
    for k in range(b):
        R[k * pb:(k + 1) * pb, k * q:(k + 1) * q] = r[k]
        L[k * q:(k + 1) * q, k * l_.shape[2]:(k + 1) * l_.shape[2]] = l_[k]
    def perm(rows, cols):  # the reshape (rows, cols) -> transpose -> flatten permutation
        P = np.zeros((rows * cols, rows * cols))
        for i in range(rows):
            for j in range(cols):
                P[i * cols + j, j * rows + i] = 1
        return P
    # Row vectors: y = x R P1 L P2.
    M = R @ perm(b, q) @ L @ perm(b, l_.shape[2])
    return M[:in_width, :out_width]


@pytest.mark.parametrize("in_width,out_width", [(16, 16), (16, 64), (64, 16), (10, 7)])
def test_monarch_is_its_matrix_and_cheaper_than_dense(in_width, out_width):
    x = rng.normal(size=(B, T, in_width)).astype(np.float32)
    y, p = run("MONARCH", x, width=out_width)
    M = dense_monarch(p, in_width, out_width)
    np.testing.assert_allclose(y, x @ M, rtol=1e-4, atol=1e-4)
    n_params = sum(v.size for v in p.values())
    if min(in_width, out_width) >= 16:
        assert n_params < in_width * out_width
        # ... and still mixes every input channel into every output channel.
        assert (np.abs(M) > 0).all()


def test_random_features_estimate_the_softmax_kernel():
    # 64 query-key pairs of their own draw (the module's generator would make the pairs,
    # and so one pair's error, depend on which tests ran before in this process). One
    # fixed feature draw errs by up to about 40% on an unlucky pair, but is unbiased
    # over pairs and follows the kernel closely.
    d, m, n = 16, 8192, 64
    own = np.random.default_rng(100)
    q = own.normal(size=(1, n, d)).astype(np.float32) * 0.7
    k = own.normal(size=(1, n, d)).astype(np.float32) * 0.7
    fq, _ = run("RAND_FEATURES", q, const=3.0, width=m)
    fk, _ = run("RAND_FEATURES", k, const=3.0, width=m)
    assert (fq > 0).all() and fq.shape == (1, n, m)
    estimate = (fq * fk).sum(-1)[0]
    exact = np.exp((q * k).sum(-1)[0] / math.sqrt(d))
    ratio = estimate / exact
    assert abs(ratio.mean() - 1) < 0.05 and np.median(np.abs(ratio - 1)) < 0.1, ratio
    assert np.corrcoef(np.log(estimate), np.log(exact))[0, 1] > 0.95
    # The directions of one block are orthogonal; the constant fixes the draw.
    w = extended.orthogonal_features(d, 2 * d, 3.0)
    block = w[:, :d] / np.linalg.norm(w[:, :d], axis=0)
    np.testing.assert_allclose(block.T @ block, np.eye(d), atol=1e-5)
    np.testing.assert_array_equal(w, extended.orthogonal_features(d, 2 * d, 3.0))
    assert not np.allclose(w, extended.orthogonal_features(d, 2 * d, 4.0))


def test_alibi_penalises_distance():
    scores = rng.normal(size=(B, T, T)).astype(np.float32)
    y, _ = run("ALIBI", scores, const=0.25, width=T)
    t, s = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    np.testing.assert_allclose(y, scores - 0.25 * (t - s), rtol=1e-6, atol=1e-6)
