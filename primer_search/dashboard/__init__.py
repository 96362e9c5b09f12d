"""``primer-search dashboard``: a local web page of one or more search stores, live while a
search writes them, read-only.

:mod:`~primer_search.dashboard.data` computes what the page shows from a store (plain
dicts, no web code); :mod:`~primer_search.dashboard.server` serves it with Starlette and
uvicorn (the ``dashboard`` extra: ``pip install 'primer-search[dashboard]'``), and
``static/`` holds the page, its script and the Chart.js build it draws with (shipped with
the package: no build step, no CDN). Nothing here imports JAX or Ray.
"""

__all__ = ["create_app", "serve"]


def __getattr__(name):
    # The server needs the extra's packages; what reads stores (data) does not.
    if name in __all__:
        from primer_search.dashboard import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
