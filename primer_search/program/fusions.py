"""Fused implementations of well-known subprograms.

The vocabulary has no softmax or ReLU, so programs write them as subprograms (see
:mod:`primer_search.program.patterns`, which the seeds write them with). Interpreted op by op
they compute the right values, but XLA then keeps several ``[batch, seq, seq]`` masks per
head for the backward pass (the gradient of RED_MAX, of the EXP clamp, of MAX's
tie-splitting, of DIVIDE's guard): the Transformer seed trained about 25% slower than a
hand-written Flax model with the same FLOPs. When a subprogram is *exactly* one of these
patterns, the compiler runs the ``jax.nn`` implementation instead.

Fusion changes no value a test can see on finite inputs:

* softmax: ``MASK`` then shift by the row max, ``EXP``, divide by the row sum. Every row
  keeps channel 0, so the row max is finite, ``x - max <= 0`` never reaches the EXP
  clamp, and the row sum is at least 1, never near DIVIDE's guard. ``jax.nn.softmax``
  computes the same expression and stops the (mathematically zero) gradient through the
  max.
* ReLU, ``MAX(x, 0 * x)``: ``jax.nn.relu``. They differ only in the gradient at exactly
  ``x = 0`` (1/2 from MAX's tie-splitting, 0 from relu) and for non-finite ``x``.

Any edit to a pattern (a mutation inside the subprogram) falls back to the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from primer_search.program.builder import ProgramBuilder
from primer_search.program.dna import Subprogram
from primer_search.program.patterns import write_relu, write_softmax
from primitives.numerics import MASK_VALUE, causal_mask

__all__ = ["FUSIONS", "fused"]


def _pattern(write) -> Subprogram:
    p = ProgramBuilder()
    write(p.subprogram())
    return p.build().subprograms[0]


def _softmax(x):
    visible = causal_mask(x.shape[1], x.shape[-1])
    return jax.nn.softmax(jnp.where(visible, x, MASK_VALUE), axis=-1)


# Each pattern's subprogram -> (name, the function that runs it).
FUSIONS: dict[Subprogram, tuple[str, Callable]] = {
    _pattern(write_softmax): ("softmax", _softmax),
    _pattern(write_relu): ("relu", jax.nn.relu),
}


def fused(sub: Subprogram) -> tuple[str, Callable] | None:
    """``(name, fn)`` if ``sub`` is exactly a known pattern; ``fn`` maps its first
    argument ``[batch, seq, C]`` to an output of the same shape."""
    return FUSIONS.get(sub)
