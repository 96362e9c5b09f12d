"""The op vocabulary of primer-search: one spec and one pure JAX function per primitive.

The vocabulary follows Primer (So et al. 2021, arXiv 2109.08668, Table 1); ``C_ADD`` is
added so that normalisers can carry their epsilon, and :mod:`primitives.extended` adds
the mechanisms of later blocks (RWKV, Monarch Mixer, Performer, ALiBi). Importing this
package registers every primitive; look them up with :func:`get` and :func:`names`.

Each primitive is one named function registered with its spec, e.g. in
:mod:`primitives.elementwise`::

    @binary("ADD", commutative=True, doc="a + b")
    def add(a, b):
        return jnp.add(a, b)

The engine runs it through :func:`run`; an exported block copies its source (and the
helpers and constants it uses, found by :mod:`primitives.source`).
"""

# Importing the op modules fills the registry.
from primitives import elementwise as _elementwise  # noqa: F401
from primitives import extended as _extended  # noqa: F401
from primitives import reductions as _reductions  # noqa: F401
from primitives import sequence as _sequence  # noqa: F401
from primitives.registry import binary as binary
from primitives.registry import get as get
from primitives.registry import is_primitive as is_primitive
from primitives.registry import names as names
from primitives.registry import primitive as primitive
from primitives.registry import register as register
from primitives.registry import run as run
from primitives.registry import unary as unary
from primitives.spec import Primitive as Primitive
from primitives.spec import ShapeError as ShapeError
from primitives.spec import Width as Width

__all__ = ["Primitive", "ShapeError", "Width", "binary", "get", "is_primitive", "names",
           "primitive", "register", "run", "unary"]
