"""The shared suite every primitive runs: shapes, dtypes, finiteness, and definitions."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import primitives
from primitives import numerics as num
from primitives import registry
from primitives.source import standalone_source
from primitives.spec import SEQ, Primitive, ShapeError, Width

B, T, C = 2, 8, 6
OUT_WIDTH = 5

ADVERSARIAL = {
    "zeros": np.zeros((B, T, C), np.float32),
    "huge": np.full((B, T, C), num.HUGE, np.float32),
    "huge_mixed": num.HUGE * np.where(np.arange(B * T * C).reshape(B, T, C) % 2, 1, -1).astype(np.float32),
    "tiny": np.full((B, T, C), 1e-30, np.float32),
    "negative": -np.abs(np.random.default_rng(0).normal(size=(B, T, C))).astype(np.float32) * 100,
    "normal": np.random.default_rng(1).normal(size=(B, T, C)).astype(np.float32),
}


def _params(prim, width_in=C):
    if not prim.has_params:
        return None
    return prim.init(np.random.default_rng(0), width_in, OUT_WIDTH)


def _run(prim, x1, x2, const=1.5):
    return primitives.run(prim, _params(prim, x1.shape[-1]), jnp.asarray(x1), jnp.asarray(x2),
                          const, OUT_WIDTH)


def _expected_width(prim, w1, w2, t=T):
    w = prim.shape(Width.abs(w1), Width.abs(w2), 1)
    if w.kind == SEQ:
        return t
    if w.kind == "rel":  # CONV to dim: resolved by the caller as OUT_WIDTH here
        return OUT_WIDTH
    return int(w.value)


@pytest.mark.parametrize("name", primitives.names())
@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_shape_dtype_finite(name, case):
    prim = primitives.get(name)
    x1 = ADVERSARIAL[case]
    x2 = ADVERSARIAL["normal"][..., :3]  # a narrower input 2 exercises the fitting rule
    y = _run(prim, x1, x2)
    assert y.dtype == jnp.float32
    assert y.shape == (B, T, _expected_width(prim, C, 3)), (name, y.shape)
    assert np.isfinite(np.asarray(y)).all(), f"{name} on {case} is not finite"


@pytest.mark.parametrize("name", primitives.names())
def test_gradients_finite_on_ordinary_inputs(name):
    prim = primitives.get(name)
    x1 = jnp.asarray(ADVERSARIAL["normal"])
    x2 = jnp.asarray(ADVERSARIAL["normal"][::-1])

    def f(a, b):
        return _run(prim, a, b).sum()

    ga, gb = jax.grad(f, argnums=(0, 1))(x1, x2)
    assert np.isfinite(np.asarray(ga)).all() and np.isfinite(np.asarray(gb)).all()


@pytest.mark.parametrize("name", primitives.names())
def test_spec_is_consistent(name):
    prim = primitives.get(name)
    assert prim.name == name
    assert prim.arity in (1, 2)
    assert "in1" in prim.reads()
    assert ("in2" in prim.reads()) == (prim.arity == 2)
    assert prim.doc
    if prim.has_params:
        # Parameter shapes may not depend on the sequence length.
        with pytest.raises(ShapeError):
            prim.shape(Width.seq(), Width.seq(), 1)


@pytest.mark.parametrize("name", [n for n in primitives.names() if primitives.get(n).mixes_sequence])
def test_sequence_mixing_ops_are_causal(name):
    prim = primitives.get(name)
    rng = np.random.default_rng(2)
    x1 = rng.normal(size=(B, T, T)).astype(np.float32)
    x2 = rng.normal(size=(B, T, T)).astype(np.float32)
    y = np.asarray(_run(prim, x1, x2))
    for t in range(T - 1):
        x1b, x2b = x1.copy(), x2.copy()
        x1b[:, t + 1:] = rng.normal(size=x1b[:, t + 1:].shape)
        x2b[:, t + 1:] = rng.normal(size=x2b[:, t + 1:].shape)
        yb = np.asarray(_run(prim, x1b, x2b))
        np.testing.assert_array_equal(y[:, : t + 1], yb[:, : t + 1])


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="registered twice"):
        primitives.register(primitives.get("ADD"))
    with pytest.raises(KeyError, match="NOPE"):
        primitives.get("NOPE")


# ---- definitions, against numpy --------------------------------------------------------

a = ADVERSARIAL["normal"]
b = ADVERSARIAL["normal"][::-1] + 0.1
DEFINITIONS = {
    "ADD": a + b, "DIFFERENCE": a - b, "MULTIPLY": a * b, "DIVIDE": a / b,
    "MAX": np.maximum(a, b), "MIN": np.minimum(a, b),
    "ABS_ROOT": np.sqrt(np.abs(a)), "SQUARE": a ** 2, "EXP": np.exp(a),
    "LOG": np.log(np.abs(a)), "ABS": np.abs(a), "RECIP": 1 / a, "SIGN": np.sign(a),
    "COS": np.cos(a), "SIN": np.sin(a), "TANH": np.tanh(a), "SIGMOID": 1 / (1 + np.exp(-a)),
    "C_MUL": a * 1.5, "C_ADD": a + 1.5, "SCALE": a, "SHIFT": a,
    "RED_MEAN": a.mean(-1, keepdims=True), "RED_SUM": a.sum(-1, keepdims=True),
    "RED_MIN": a.min(-1, keepdims=True), "RED_MAX": a.max(-1, keepdims=True),
    "RED_PROD": a.prod(-1, keepdims=True),
    "CUM_SUM": np.cumsum(a, 1), "CUM_PROD": np.cumprod(a, 1),
}


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_definition(name):
    y = _run(primitives.get(name), a, b)
    np.testing.assert_allclose(np.asarray(y), DEFINITIONS[name], rtol=1e-5, atol=1e-6)


def test_safe_definitions_at_zero():
    z = np.zeros((1, 2, 3), np.float32)
    assert np.asarray(_run(primitives.get("LOG"), z, z)).min() == pytest.approx(math.log(1e-30), rel=1e-4)
    assert np.asarray(_run(primitives.get("DIVIDE"), z + 1, z)).max() == pytest.approx(1e12, rel=1e-4)
    assert np.asarray(_run(primitives.get("EXP"), z + 1e6, z)).max() == pytest.approx(math.exp(80), rel=1e-4)


def test_fit_channels_rule():
    x = jnp.arange(3.0).reshape(1, 1, 3)
    assert num.fit_channels(x, 3) is x
    np.testing.assert_array_equal(num.fit_channels(x, 2), [[[0, 1]]])
    np.testing.assert_array_equal(num.fit_channels(x, 7), [[[0, 1, 2, 0, 1, 2, 0]]])
    np.testing.assert_array_equal(num.fit_channels(x[..., :1], 4), [[[0, 0, 0, 0]]])


def test_attention_products():
    rng = np.random.default_rng(3)
    q, k, v = (rng.normal(size=(B, T, C)).astype(np.float32) for _ in range(3))
    s = np.asarray(_run(primitives.get("T_MAT_MUL"), q, k))
    ref = np.einsum("btc,bsc->bts", q, k) / math.sqrt(C)
    tril = np.tril(np.ones((T, T), bool))
    np.testing.assert_allclose(s, np.where(tril, ref, 0), rtol=1e-5, atol=1e-6)
    p = rng.normal(size=(B, T, T)).astype(np.float32)
    out = np.asarray(_run(primitives.get("MAT_MUL"), p, v))
    np.testing.assert_allclose(out, np.einsum("bts,bsc->btc", np.where(tril, p, 0), v), rtol=1e-5, atol=1e-5)
    masked = np.asarray(_run(primitives.get("MASK"), p, p))
    assert (masked[:, ~tril] == num.MASK_VALUE).all() and (masked[:, tril] == p[:, tril]).all()


@pytest.mark.parametrize("k", [3, 7, 15, 31])
def test_convolutions(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(B, 40, C)).astype(np.float32)
    pad = np.concatenate([np.zeros((B, k - 1, C), np.float32), x], 1)
    dconv = primitives.get(f"DCONV_{k}X1")
    taps = rng.normal(size=(k, C)).astype(np.float32)
    y = primitives.run(dconv, {"taps": jnp.asarray(taps)}, jnp.asarray(x), jnp.asarray(x), 0.0, C)
    ref = sum(taps[i] * pad[:, k - 1 - i: k - 1 - i + 40] for i in range(k))
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)
    # Primer's released code: tap 0 is 0.5, each lagged tap 0.5 / k ((0.5, 1/6, 1/6) at 3).
    init = dconv.init(np.random.default_rng(0), C, C)["taps"]
    expected = np.full((k, C), 0.5 / k, np.float32)
    expected[0] = 0.5
    np.testing.assert_array_equal(init, expected)
    if k == 3:
        np.testing.assert_allclose(init[:, 0], [0.5, 1 / 6, 1 / 6], rtol=1e-6)
    conv = primitives.get(f"CONV_{k}X1")
    w = rng.normal(size=(k, C, 4)).astype(np.float32)
    y = primitives.run(conv, {"kernel": jnp.asarray(w)}, jnp.asarray(x), jnp.asarray(x), 0.0, 4)
    ref = sum(pad[:, k - 1 - i: k - 1 - i + 40] @ w[i] for i in range(k))
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4)


# ---- registration: every primitive is a named function the exporter can copy -------------

@pytest.mark.parametrize("name", primitives.names())
def test_source_stands_alone(name):
    """The function and initialiser copy into a module that imports only jax, jnp, np."""
    prim = primitives.get(name)
    fns = [prim.fn] + ([prim.init] if prim.has_params else [])
    namespace = {"jax": jax, "jnp": jnp, "np": np}
    exec(standalone_source(fns), namespace)  # noqa: S102 - the engine's own source
    assert namespace[prim.fn.__name__] is not prim.fn
    x1, x2 = jnp.asarray(ADVERSARIAL["normal"]), jnp.asarray(ADVERSARIAL["normal"][::-1])
    params = _params(prim)
    copy = dataclasses.replace(prim, fn=namespace[prim.fn.__name__])
    np.testing.assert_array_equal(primitives.run(copy, params, x1, x2, 1.5, OUT_WIDTH),
                                  primitives.run(prim, params, x1, x2, 1.5, OUT_WIDTH))


def _dense_like(a, params):
    return a @ params["kernel"]


def test_registration_refuses_what_cannot_be_exported(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    spec = dict(arity=1, shape=registry.same_width, doc="test")
    with pytest.raises(ValueError, match="named function defined at module level"):
        primitives.register(Primitive(name="LAMBDA", fn=lambda a: a, **spec))
    with pytest.raises(ValueError, match="must take 1 positional arguments"):
        primitives.register(Primitive(name="NO_PARAMS", fn=_dense_like, **spec))
    with pytest.raises(ValueError, match="keyword arguments only"):
        primitives.register(Primitive(name="BAD_INIT", fn=_dense_like,
                                      init=functools.partial(_dense_like, 1), **spec))


def test_copied_code_may_use_only_jax_jnp_and_np():
    with pytest.raises(ValueError, match="uses the module math"):
        standalone_source([_uses_math])
    with pytest.raises(ValueError, match="uses 'Width', a type"):
        standalone_source([_uses_a_class])


def _uses_math(a):
    return a * math.pi


def _uses_a_class(a):
    return Width.rel(1)
