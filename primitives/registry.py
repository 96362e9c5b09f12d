"""The op vocabulary: a name -> :class:`Primitive` registry, and the one recipe that runs a
primitive (fit its inputs to the widths it expects, call its function, guard its output).

Adding a primitive is writing its function in a module of this package under a
registering decorator::

    @unary("SOFTSIGN", doc="a / (1 + |a|)")
    def softsign(a):
        return a / (1.0 + jnp.abs(a))

The shared primitive tests, the causality test and the exporter pick it up from here: the
exported block copies ``softsign``'s source (see :mod:`primitives.source`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from fractions import Fraction

from primitives.numerics import finite, fit_like, fit_to_seq
from primitives.spec import SEQ, Primitive, ShapeError, Width

__all__ = [
    "binary",
    "get",
    "invoke",
    "is_primitive",
    "names",
    "parametric_same_width",
    "primitive",
    "reduced",
    "register",
    "run",
    "same_width",
    "second_width",
    "seq_width",
    "to_dim",
    "unary",
]

_REGISTRY: dict[str, Primitive] = {}


def _check_function(name: str, role: str, fn, n_args: int) -> None:
    """``fn`` must be a named module-level function taking ``n_args`` positional arguments:
    the exporter copies its source and calls it by name."""
    named = fn
    if isinstance(fn, functools.partial):
        if fn.args:
            raise ValueError(f"primitive {name!r}: the {role} partial may bind keyword "
                             f"arguments only, got positional {fn.args!r}")
        named = fn.func
    if (not inspect.isfunction(named) or named.__name__ == "<lambda>"
            or named.__qualname__ != named.__name__):
        raise ValueError(f"primitive {name!r}: the {role} must be a named function defined at "
                         f"module level (its source is exported), got {named!r}")
    try:
        inspect.signature(fn).bind(*range(n_args))
    except TypeError:
        raise ValueError(f"primitive {name!r}: the {role} {named.__name__}"
                         f"{inspect.signature(fn)} must take {n_args} positional "
                         "arguments") from None


def register(prim: Primitive) -> Primitive:
    """Add ``prim`` to the vocabulary. Names are unique and upper-case."""
    if prim.name in _REGISTRY:
        raise ValueError(f"primitive {prim.name!r} is registered twice")
    if prim.name != prim.name.upper() or not prim.name.replace("_", "").isalnum():
        raise ValueError(f"primitive name {prim.name!r} must be upper-case letters, digits, _")
    if prim.arity not in (1, 2):
        raise ValueError(f"primitive {prim.name!r}: arity must be 1 or 2, got {prim.arity}")
    _check_function(prim.name, "function", prim.fn, len(prim.arguments(*[None] * 5)))
    if prim.init is not None:
        _check_function(prim.name, "init", prim.init, 3)
    _REGISTRY[prim.name] = prim
    return prim


def primitive(name: str, **spec) -> Callable:
    """Decorator: register the decorated function as primitive ``name`` (``spec`` holds the
    other :class:`Primitive` fields) and return the function unchanged."""
    def decorate(fn):
        register(Primitive(name=name, fn=fn, **spec))
        return fn
    return decorate


def unary(name: str, *, doc: str, **spec) -> Callable:
    """A one-input op; its output has its input's width unless ``spec`` gives a shape."""
    return primitive(name, arity=1, doc=doc, **{"shape": same_width, **spec})


def binary(name: str, *, doc: str, commutative: bool = False, **spec) -> Callable:
    """A two-input elementwise op: input 2 is fitted to input 1's width, the output has it."""
    return primitive(name, arity=2, shape=same_width, fit_input2="x1",
                     commutative=commutative, doc=doc, **spec)


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


# ---- running a primitive ----------------------------------------------------------------

def invoke(prim: Primitive, x1, x2, const, params, out_width, call: Callable):
    """The one recipe for running ``prim``, written against ``call(fn, *args)``.

    Fits the inputs as the spec says (input 1 to ``seq`` channels, input 2 to input 1's
    width), calls :attr:`Primitive.fn` with the arguments it takes, and passes the output
    through ``finite`` if the spec asks for a guard. :func:`run` evaluates the recipe on
    arrays; the exporter evaluates it on source text, so an exported block runs exactly
    the functions the engine runs.
    """
    if prim.fit_input1_to_seq:
        x1 = call(fit_to_seq, x1)
    if prim.arity == 2 and prim.fit_input2 == "x1":
        x2 = call(fit_like, x2, x1)
    y = call(prim.fn, *prim.arguments(x1, x2, const, params, out_width))
    return call(finite, y) if prim.guard else y


def _evaluate(fn, *args):
    return fn(*args)


def run(prim: Primitive, params, x1, x2, const: float, out_width: int):
    """Apply ``prim`` to ``[batch, seq, channels]`` inputs, fitting their widths first."""
    return invoke(prim, x1, x2, const, params, out_width, _evaluate)


# ---- shape rules shared by several modules ------------------------------------------

def same_width(w1: Width, w2: Width, dim: Fraction) -> Width:
    """The output has input 1's width."""
    return w1


def second_width(w1: Width, w2: Width, dim: Fraction) -> Width:
    """The output has input 2's width."""
    return w2


def seq_width(w1: Width, w2: Width, dim: Fraction) -> Width:
    """One channel per sequence position (a score state)."""
    return Width.seq()


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
