"""Copy functions, with the helpers and constants they use, into a standalone module.

An exported block (:mod:`primer_search.export`) must run exactly what the engine runs
without importing the engine. So it carries the *source* of every function it calls: the
primitives its program uses, their initialisers, and the helpers those reach. This module
finds them: it reads each function's source, collects the global names the function
reads, and resolves them in the function's own module:

* a module is allowed only as the exported file imports it: ``jax``, ``jnp`` (jax.numpy)
  and ``np`` (numpy); primitive code therefore imports helpers by name, never through a
  module alias (``from primitives.numerics import TINY``, not ``num.TINY``);
* a plain Python function (not one of jax's, numpy's or flax's own) is copied too,
  recursively, with its decorators left out;
* a number, string, ``None`` or a tuple of them becomes a ``NAME = value`` line;
* anything else (a class, an object) cannot be copied, and the error says where it is used.

Names the function binds itself are its locals; names not found among its globals are
builtins. Copied names must be unique: two different functions (or constants) of one name are an error.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable

__all__ = ["MODULES", "call_source", "standalone_source"]

# The modules copied code may use, under the names the exported file imports them by.
MODULES = {"jax": "jax", "jax.numpy": "jnp", "numpy": "np"}
# Libraries whose functions are reached through MODULES, never copied.
_LIBRARIES = frozenset({"jax", "jaxlib", "numpy", "flax"})
_LITERALS = (bool, int, float, str, type(None))


def _function(fn) -> types.FunctionType:
    """The plain function behind ``fn`` (a function, or a ``functools.partial`` of one)."""
    return fn.func if isinstance(fn, functools.partial) else fn


def call_source(fn, args: Iterable[str]) -> str:
    """Source of a call of ``fn`` on argument expressions ``args``; a ``functools.partial``
    adds its keyword arguments: ``conv_init(rng, 32, 64, taps=3)``."""
    parts = list(args)
    if isinstance(fn, functools.partial):
        parts += [f"{k}={v!r}" for k, v in fn.keywords.items()]
    return f"{_function(fn).__name__}({', '.join(parts)})"


def _is_literal(value) -> bool:
    if isinstance(value, tuple):
        return all(_is_literal(v) for v in value)
    return isinstance(value, _LITERALS)


def _where(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


class _Copier:
    """Collects constants and function sources, dependencies before their users."""

    def __init__(self, reserved: Iterable[str]):
        self.reserved = set(reserved)
        self.constants: dict[str, object] = {}
        self.functions: dict[str, tuple[types.FunctionType, str | None]] = {}

    def _claim(self, name: str, user) -> None:
        if name in self.reserved:
            raise ValueError(f"{_where(user)} uses the name {name!r}, which the exported "
                             "module defines itself; rename it")

    def function(self, fn) -> None:
        fn = _function(fn)
        name = fn.__name__
        if name in self.functions:
            if self.functions[name][0] is not fn:
                other = self.functions[name][0]
                raise ValueError(f"two functions named {name!r} would be copied: "
                                 f"{_where(other)} and {_where(fn)}; rename one")
            return
        if name == "<lambda>" or fn.__qualname__ != name or fn.__closure__:
            raise ValueError(f"{_where(fn)} cannot be copied: only named functions defined at "
                             "module level (no lambdas, no closures) can")
        self._claim(name, fn)
        self.functions[name] = (fn, None)  # placeholder: a recursive reference stops here
        source, node = _definition(fn)
        for used in _names_read(node):
            if used in fn.__globals__:
                self._global(used, fn.__globals__[used], fn)
        del self.functions[name]  # re-inserted after its dependencies
        self.functions[name] = (fn, source)

    def _global(self, name: str, value, user) -> None:
        if isinstance(value, types.ModuleType):
            if MODULES.get(value.__name__) != name:
                allowed = ", ".join(f"{alias} ({module})" for module, alias in MODULES.items())
                raise ValueError(f"{_where(user)} uses the module {value.__name__} as {name!r}; "
                                 f"copied code may use only {allowed}, and must import "
                                 "anything else by name")
        elif (inspect.isfunction(value) or isinstance(value, functools.partial)) and \
                _function(value).__module__.split(".")[0] not in _LIBRARIES:
            if _function(value).__name__ != name:
                raise ValueError(f"{_where(user)} calls {_where(_function(value))} as {name!r}; "
                                 "import it under its own name so the copy can call it")
            self.function(value)
        elif _is_literal(value):
            if name in self.constants and self.constants[name] != value:
                raise ValueError(f"two constants named {name!r} would be copied "
                                 f"({self.constants[name]!r} and {value!r}); rename one")
            self._claim(name, user)
            self.constants[name] = value
        else:
            raise ValueError(f"{_where(user)} uses {name!r}, a {type(value).__name__}, which "
                             "cannot be copied into a standalone module; use jax, jnp or np, "
                             "a module-level function, or a literal constant")


def _definition(fn: types.FunctionType) -> tuple[str, ast.FunctionDef]:
    """``fn``'s source from its ``def`` line on (decorators dropped), and its syntax tree."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise ValueError(f"{_where(fn)} is not defined by a plain def statement")
    return "\n".join(source.splitlines()[node.lineno - 1:]), node


def _names_read(node: ast.FunctionDef) -> list[str]:
    """The global names the definition reads (in its defaults, annotations and body), in
    order: names it binds itself (arguments, assignments, also those of nested functions
    and comprehensions) are its locals. Decorators are not part of the copy, so their
    names are not read."""
    parts = [node.args, *node.body] + ([node.returns] if node.returns else [])
    nodes = [n for part in parts for n in ast.walk(part)]
    local = {n.arg for n in nodes if isinstance(n, ast.arg)}
    local |= {n.id for n in nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    local |= {n.name for n in nodes if isinstance(n, ast.FunctionDef)}
    seen: dict[str, None] = {}
    for n in nodes:
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in local:
            seen.setdefault(n.id)
    return list(seen)


def standalone_source(functions: Iterable[Callable], reserved: Iterable[str] = ()) -> str:
    """Source defining ``functions`` and everything they use (see the module doc): the
    constants first, then each function after the functions it calls.

    ``reserved`` are names the surrounding module defines itself; a copied name that
    collides with one is an error. Raises ``ValueError`` naming the function at fault.
    """
    copier = _Copier(reserved)
    for fn in functions:
        copier.function(fn)
    blocks = []
    if copier.constants:
        blocks.append("\n".join(f"{k} = {v!r}" for k, v in copier.constants.items()))
    blocks += [source for _, source in copier.functions.values()]
    return "\n\n\n".join(blocks)
