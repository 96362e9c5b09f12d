"""The search: which candidates to score, where, and what is kept.

``evolution`` (regularized evolution, a pure ask/tell object), ``fingerprint``
(functional dedup), ``store`` (the SQLite record of every candidate), ``loop`` (propose,
dedup, dispatch, record, feed back: no Ray), ``pool`` (what workers are asked and
answer, and an in-process pool), ``ray_pool`` (Ray actors: the only module that imports
Ray), ``config`` (the search configuration) and ``controller`` (puts a store, a pool and
the loop together: ``run_search``, ``resume_search``).

Submodules are imported by name; importing this package imports none of them.
"""

import sys
import types


class _SearchPackage(types.ModuleType):
    """``primer_search.search`` names both this package and the function that runs a
    search (:func:`primer_search.api.search`). Python binds a package's attribute to the
    subpackage as soon as any module of it is imported, so a function of that name on
    ``primer_search`` would be replaced; instead the package itself is callable."""

    def __call__(self, *args, **kwargs):
        from primer_search.api import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _SearchPackage
