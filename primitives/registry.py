"""The op vocabulary: a name -> :class:`Primitive` registry, and the one place that runs a
primitive (fitting inputs to the widths it expects, and guarding its output).

Adding a primitive is adding one ``register(Primitive(...))`` entry in a module of this
package; the shared primitive tests and the causality test pick it up automatically.
"""

from __future__ import annotations

from fractions import Fraction

from primitives import _numerics as num
from primitives.spec import SEQ, Primitive, ShapeError, Width

__all__ = [
    "get",
    "is_primitive",
    "names",
    "parametric_same_width",
    "reduced",
    "register",
    "run",
    "same_width",
    "to_dim",
]

_REGISTRY: dict[str, Primitive] = {}


def register(prim: Primitive) -> Primitive:
    """Add ``prim`` to the vocabulary. Names are unique and upper-case."""
    if prim.name in _REGISTRY:
        raise ValueError(f"primitive {prim.name!r} is registered twice")
    if prim.name != prim.name.upper() or not prim.name.replace("_", "").isalnum():
        raise ValueError(f"primitive name {prim.name!r} must be upper-case letters, digits, _")
    if prim.arity not in (1, 2):
        raise ValueError(f"primitive {prim.name!r}: arity must be 1 or 2, got {prim.arity}")
    _REGISTRY[prim.name] = prim
    return prim


def is_primitive(name: str) -> bool:
    return name in _REGISTRY


def get(name: str) -> Primitive:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(sorted(_REGISTRY))}") from None


def names() -> tuple[str, ...]:
    """All registered op names, in registration order."""
    return tuple(_REGISTRY)


def run(prim: Primitive, params, x1, x2, const: float, out_width: int):
    """Apply ``prim`` to ``[batch, seq, channels]`` inputs, fitting their widths first."""
    if prim.fit_input1_to_seq:
        x1 = num.fit_channels(x1, x1.shape[1])
    if prim.arity == 2 and prim.fit_input2 == "x1":
        x2 = num.fit_channels(x2, x1.shape[-1])
    y = prim.apply(params, x1, x2, const, out_width)
    return num.finite(y) if prim.guard else y


# ---- shape rules shared by several modules ------------------------------------------

def same_width(w1: Width, w2: Width, dim: Fraction) -> Width:
    """The output has input 1's width."""
    return w1


def _no_seq(w1: Width) -> None:
    if w1.kind == SEQ:
        raise ShapeError("an op with trainable parameters cannot read a sequence-width "
                         "(score) state: its parameter shapes would depend on the "
                         "sequence length")


def parametric_same_width(w1: Width, w2: Width, dim: Fraction) -> Width:
    """Input 1's width, which may not be ``seq`` (parameters are sized by it)."""
    _no_seq(w1)
    return w1


def to_dim(w1: Width, w2: Width, dim: Fraction) -> Width:
    """The instruction's dimension size (relative to the unit); input 1 may not be ``seq``."""
    _no_seq(w1)
    return Width.rel(dim)


def reduced(w1: Width, w2: Width, dim: Fraction) -> Width:
    """One channel."""
    return Width.abs(1)
