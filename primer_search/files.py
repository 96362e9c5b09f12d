"""Finding and making files for the commands, the API and the notebooks: which store is
"the search I just ran", and a folder that a failing command leaves no trace of.

The store itself (:mod:`primer_search.search.store`) only persists and queries; where
stores live on disk and how an output folder is made are the callers' concerns, kept here.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from primer_search.search.store import Store, StoreError

__all__ = ["new_folder", "newest_store"]


def newest_store(folders: Iterable[str | Path] = (".", "..")) -> Path:
    """The most recently written search store (``*.sqlite``) in ``folders``, for tools
    that look at "the search I just ran" (``latest`` in the CLI, the notebooks): the CLI
    names a store after its config and start time, so no fixed name finds it. SQLite
    files that are not stores are skipped; a :class:`StoreError` names the folders when
    there is none."""
    folders = list(folders)
    found = []
    for folder in folders:
        for path in Path(folder).glob("*.sqlite"):
            try:
                with Store(path, readonly=True):
                    pass
            except (StoreError, sqlite3.Error):
                continue
            mtime = max(p.stat().st_mtime for p in (path, Path(f"{path}-wal")) if p.exists())
            found.append((mtime, str(path.resolve()), path))
    if not found:
        raise StoreError(f"no search store (*.sqlite) in {', '.join(map(repr, map(str, folders)))}; "
                         "run `primer-search search tiny_cpu` first, or set "
                         "PRIMER_SEARCH_STORE to a store's path")
    return max(found)[2]


@contextlib.contextmanager
def new_folder(path: str | Path) -> Iterator[Path]:
    """Around code that writes into folder ``path``: if it raises, the folders it created
    for ``path`` (none that were there before) are removed with what they hold. Yields
    ``path`` as an absolute Path; the folder itself is made by the code inside."""
    path = Path(path).absolute()
    first_new = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
    try:
        yield path
    except BaseException:
        if first_new is not None and first_new.exists():
            shutil.rmtree(first_new, ignore_errors=True)
        raise
