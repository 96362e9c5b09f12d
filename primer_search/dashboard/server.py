"""The dashboard's web server: a Starlette app of JSON endpoints and static files, served
by uvicorn.

    GET /                               the page (static/index.html)
    GET /static/...                     its script, style and Chart.js (shipped, no CDN)
    GET /api/stores                     the stores shown: index, name, path
    GET /api/stores/{i}/overview?token= one store's overview (data.overview); with the
                                        token of the last answer, {"unchanged": true}
                                        while no candidate was added or finished
    GET /api/stores/{i}/candidates/{id} one candidate: program, diff to parent, lineage

Only GET routes exist. Each request opens the store read-only and closes it again
(:func:`primer_search.dashboard.data.open_readonly`), so the page follows a running
search, a store that is replaced or removed shows an error line instead of stale rows,
and nothing is ever written. The page polls the overview about every 1.5 s.

Bound to a loopback address (the default, 127.0.0.1), the server answers only requests
that name a loopback host, so that a web page elsewhere cannot read it through DNS
rebinding.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from primer_search.dashboard import data
from primer_search.search.store import StoreError

__all__ = ["STATIC", "create_app", "listen", "serve"]

STATIC = Path(__file__).parent / "static"
NO_STORE = {"Cache-Control": "no-store"}


def _json(payload, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=NO_STORE)


class _Stores:
    """The stores shown, and each one's last overview with the token it was read at."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = [Path(p) for p in paths]
        self.names = data.display_names(self.paths)
        self._cache: dict[int, tuple[list, dict]] = {}
        self._lock = threading.Lock()

    def path(self, i: int) -> Path:
        if not 0 <= i < len(self.paths):
            raise LookupError(f"no store {i} (there are {len(self.paths)})")
        return self.paths[i]

    def overview(self, i: int, token: str | None) -> dict:
        with data.open_readonly(self.path(i)) as store:
            now = list(store.change_token())
            with self._lock:
                cached = self._cache.get(i)
            if cached is None or cached[0] != now:
                cached = (now, data.overview(store, self.names[i]))
                with self._lock:
                    self._cache[i] = cached
        if token is not None and token == ",".join(map(str, now)):
            return {"unchanged": True, "token": now}
        return cached[1]

    def candidate(self, i: int, cid: int) -> dict:
        with data.open_readonly(self.path(i)) as store:
            return data.candidate_detail(store, cid)


def create_app(paths: Sequence[str | Path], *, allowed_hosts: Sequence[str] = ("*",)) -> Starlette:
    """The dashboard of the stores at ``paths`` (checked by the caller: see
    :func:`serve`). ``allowed_hosts``: the Host headers answered."""
    stores = _Stores(paths)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    def list_stores(request: Request):
        return _json([{"index": i, "name": n, "path": str(p.resolve())}
                      for i, (n, p) in enumerate(zip(stores.names, stores.paths))])

    def overview(request: Request):
        try:
            return _json(stores.overview(request.path_params["i"],
                                         request.query_params.get("token")))
        except LookupError as e:
            return _json({"error": str(e)}, 404)
        except (StoreError, OSError) as e:
            return _json({"error": str(e)}, 503)

    def candidate(request: Request):
        try:
            return _json(stores.candidate(request.path_params["i"], request.path_params["cid"]))
        except LookupError as e:
            return _json({"error": str(e)}, 404)
        except StoreError as e:
            status = 404 if "is not in store" in str(e) else 503
            return _json({"error": str(e)}, status)
        except OSError as e:
            return _json({"error": str(e)}, 503)

    # Sync endpoints run in Starlette's thread pool: each opens its own connection.
    routes = [
        Route("/", index),
        Route("/api/stores", list_stores),
        Route("/api/stores/{i:int}/overview", overview),
        Route("/api/stores/{i:int}/candidates/{cid:int}", candidate),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes,
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port); an ``OSError`` that says
    which address could not be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(paths: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8765,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Check every store, listen, call ``on_ready(url)``, and serve until interrupted
    (Ctrl-C). A path that is not a readable store is a :class:`StoreError` before
    anything listens; an address that cannot be had, an ``OSError``."""
    import uvicorn

    checked = [data.check_store(p) for p in paths]
    allowed = (["localhost", "127.0.0.1", "[::1]", f"[{host}]" if ":" in host else host]
               if _is_loopback(host) else ["*"])
    app = create_app(checked, allowed_hosts=allowed)
    sock = listen(host, port)
    try:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                               lifespan="off"))
        if on_ready is not None:
            on_ready(url_of(sock))
        server.run(sockets=[sock])
    finally:
        sock.close()
