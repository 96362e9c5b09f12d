"""Pointwise primitives: binary, unary and scalar (Primer, So et al. 2021, Table 1).

Binary ops combine input 1 with input 2 after input 2 has been fitted to input 1's
channel width (see ``numerics.fit_channels``); the output has input 1's width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from primitives.numerics import EXP_MAX, TINY, safe_denominator
from primitives.registry import binary, parametric_same_width, unary

# ---- binary -----------------------------------------------------------------------------


@binary("ADD", commutative=True, doc="a + b")
def add(a, b):
    return jnp.add(a, b)


@binary("DIFFERENCE", doc="a - b")
def difference(a, b):
    return jnp.subtract(a, b)


@binary("MULTIPLY", commutative=True, doc="a * b")
def multiply(a, b):
    return jnp.multiply(a, b)


@binary("DIVIDE", doc="a / b, with |b| raised to at least 1e-12 (sign kept, 0 counts as "
                      "positive)")
def divide(a, b):
    return a / safe_denominator(b)


@binary("MAX", commutative=True, doc="elementwise max(a, b)")
def maximum(a, b):
    return jnp.maximum(a, b)


@binary("MIN", commutative=True, doc="elementwise min(a, b)")
def minimum(a, b):
    return jnp.minimum(a, b)


# ---- unary ------------------------------------------------------------------------------


@unary("ABS_ROOT", doc="sqrt(|a| + 1e-30): finite value and gradient at 0")
def abs_root(a):
    return jnp.sqrt(jnp.abs(a) + TINY)


@unary("SQUARE", doc="a ** 2")
def square(a):
    return jnp.square(a)


@unary("EXP", doc="exp(min(a, 80)): never overflows float32")
def exp(a):
    return jnp.exp(jnp.minimum(a, EXP_MAX))


@unary("LOG", doc="log(|a| + 1e-30): defined for 0 and negatives")
def log(a):
    return jnp.log(jnp.abs(a) + TINY)


@unary("ABS", doc="|a|")
def absolute(a):
    return jnp.abs(a)


@unary("RECIP", doc="1 / a, with |a| raised to at least 1e-12 (sign kept)")
def recip(a):
    return 1.0 / safe_denominator(a)


@unary("SIGN", doc="-1, 0 or 1")
def sign(a):
    return jnp.sign(a)


@unary("COS", doc="cos(a)")
def cos(a):
    return jnp.cos(a)


@unary("SIN", doc="sin(a)")
def sin(a):
    return jnp.sin(a)


@unary("TANH", doc="tanh(a)")
def tanh(a):
    return jnp.tanh(a)


@unary("SIGMOID", doc="1 / (1 + exp(-a))")
def sigmoid(a):
    return jax.nn.sigmoid(a)


# ---- with a constant --------------------------------------------------------------------


@unary("C_MUL", reads_const=True, doc="a * constant")
def c_mul(a, c):
    return a * c


@unary("C_ADD", reads_const=True,
       doc="a + constant (not in the paper's list; normalisers need their epsilon)")
def c_add(a, c):
    return a + c


# ---- with learned per-channel vectors ---------------------------------------------------


def ones_init(rng, in_width, out_width):
    """A gain of 1 per channel."""
    return {"scale": np.ones((in_width,), np.float32)}


def zeros_init(rng, in_width, out_width):
    """A shift of 0 per channel."""
    return {"shift": np.zeros((in_width,), np.float32)}


@unary("SCALE", shape=parametric_same_width, init=ones_init,
       doc="a * g, g a learned per-channel vector initialised to 1")
def scale(a, params):
    return a * params["scale"]


@unary("SHIFT", shape=parametric_same_width, init=zeros_init,
       doc="a + s, s a learned per-channel vector initialised to 0")
def shift(a, params):
    return a + params["shift"]
