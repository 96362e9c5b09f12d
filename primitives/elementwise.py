"""Pointwise primitives: binary, unary and scalar (Primer, So et al. 2021, Table 1).

Binary ops combine input 1 with input 2 after input 2 has been fitted to input 1's
channel width (see ``_numerics.fit_channels``); the output has input 1's width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from primitives import _numerics as num
from primitives.registry import parametric_same_width, register, same_width
from primitives.spec import Primitive


def _binary(name: str, fn, doc: str, commutative: bool = False) -> None:
    register(Primitive(name=name, arity=2, shape=same_width, fit_input2="x1",
                       commutative=commutative, apply=lambda p, a, b, c, w: fn(a, b), doc=doc))


def _unary(name: str, fn, doc: str) -> None:
    register(Primitive(name=name, arity=1, shape=same_width,
                       apply=lambda p, a, b, c, w: fn(a), doc=doc))


_binary("ADD", jnp.add, "a + b", commutative=True)
_binary("DIFFERENCE", jnp.subtract, "a - b")
_binary("MULTIPLY", jnp.multiply, "a * b", commutative=True)
_binary("DIVIDE", lambda a, b: a / num.safe_denominator(b),
        "a / b, with |b| raised to at least 1e-12 (sign kept, 0 counts as positive)")
_binary("MAX", jnp.maximum, "elementwise max(a, b)", commutative=True)
_binary("MIN", jnp.minimum, "elementwise min(a, b)", commutative=True)

_unary("ABS_ROOT", lambda a: jnp.sqrt(jnp.abs(a) + num.TINY),
       "sqrt(|a| + 1e-30): finite value and gradient at 0")
_unary("SQUARE", jnp.square, "a ** 2")
_unary("EXP", lambda a: jnp.exp(jnp.minimum(a, num.EXP_MAX)),
       "exp(min(a, 80)): never overflows float32")
_unary("LOG", lambda a: jnp.log(jnp.abs(a) + num.TINY),
       "log(|a| + 1e-30): defined for 0 and negatives")
_unary("ABS", jnp.abs, "|a|")
_unary("RECIP", lambda a: 1.0 / num.safe_denominator(a),
       "1 / a, with |a| raised to at least 1e-12 (sign kept)")
_unary("SIGN", jnp.sign, "-1, 0 or 1")
_unary("COS", jnp.cos, "cos(a)")
_unary("SIN", jnp.sin, "sin(a)")
_unary("TANH", jnp.tanh, "tanh(a)")
_unary("SIGMOID", jax.nn.sigmoid, "1 / (1 + exp(-a))")

register(Primitive(
    name="C_MUL", arity=1, shape=same_width, reads_const=True,
    apply=lambda p, a, b, c, w: a * c, doc="a * constant"))
register(Primitive(
    name="C_ADD", arity=1, shape=same_width, reads_const=True,
    apply=lambda p, a, b, c, w: a + c,
    doc="a + constant (not in the paper's list; normalisers need their epsilon)"))


def _init_ones(rng, in_width, out_width):
    return {"scale": np.ones((in_width,), np.float32)}


def _init_zeros(rng, in_width, out_width):
    return {"shift": np.zeros((in_width,), np.float32)}


register(Primitive(
    name="SCALE", arity=1, shape=parametric_same_width, init=_init_ones,
    apply=lambda p, a, b, c, w: a * p["scale"],
    doc="a * g, g a learned per-channel vector initialised to 1"))
register(Primitive(
    name="SHIFT", arity=1, shape=parametric_same_width, init=_init_zeros,
    apply=lambda p, a, b, c, w: a + p["shift"],
    doc="a + s, s a learned per-channel vector initialised to 0"))
