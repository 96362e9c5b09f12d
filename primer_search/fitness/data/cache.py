"""The on-disk cache of tokenised corpora: where it lives, how entries are keyed and written.

Tokenised arrays (and the LM1B vocabulary) are cached under ``DataConfig.cache_dir``
(default ``$PRIMER_SEARCH_CACHE`` or ``~/.cache/primer-search``), one folder per key, the
key a hash of the corpus identity (package version, or file paths with sizes and
modification times, :func:`file_identity`) and the tokeniser settings. Every file is
written to a temporary name and renamed into place (:func:`atomic_write`); ``meta.json``
is written last and marks an entry complete. An unreadable entry is rebuilt; an
unwritable cache only costs speed.

The cache stores arrays and JSON and knows nothing of corpora or tokenisers: the loaders
in :mod:`primer_search.fitness.data.corpora` decide what a key holds and pass a build function.
Changing the key layout or :data:`CACHE_VERSION` orphans existing entries (they are
rebuilt, never misread).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from primer_search.fitness.data.config import DataConfig

log = logging.getLogger(__name__)

CACHE_VERSION = 1

# What a cache entry holds: named arrays and a JSON-serialisable info dict.
Built = tuple[dict[str, np.ndarray], dict]


def cache_root(cfg: DataConfig) -> Path:
    """The cache folder of ``cfg``: its cache_dir, else $PRIMER_SEARCH_CACHE, else ~/.cache."""
    root = cfg.cache_dir or os.environ.get("PRIMER_SEARCH_CACHE") or "~/.cache/primer-search"
    return Path(root).expanduser()


def atomic_write(path: Path, write: Callable[[object], None]) -> None:
    """Write ``path`` through ``write(binary_file)`` so that readers see all of it or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def cached(root: Path, kind: str, key: dict, build: Callable[[], Built]) -> Built:
    """Arrays and JSON info of the cache entry ``kind``/``key``, built on a miss.

    Arrays come back memory-mapped read-only on a hit and as built on a miss.
    """
    blob = json.dumps({"cache_version": CACHE_VERSION, "kind": kind, **key}, sort_keys=True)
    folder = root / f"{kind}-{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:24]}"
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                      for name in meta["arrays"]}
            log.debug("data cache hit: %s", folder)
            return arrays, meta["info"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("data cache entry %s unreadable (%s); rebuilding", folder, e)
    arrays, info = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            atomic_write(folder / f"{name}.npy",
                         lambda f, a=array: np.save(f, np.ascontiguousarray(a)))
        meta = {"key": json.loads(blob), "arrays": sorted(arrays), "info": info}
        atomic_write(meta_path, lambda f: f.write(json.dumps(meta).encode("utf-8")))
    except OSError as e:
        warnings.warn(f"could not write the data cache {str(folder)!r} ({e}); "
                      f"continuing without it", RuntimeWarning, stacklevel=3)
    return arrays, info


def file_identity(paths: Iterable[Path]) -> list[list]:
    """``[resolved path, size, mtime_ns]`` per file: a cache key that changes with the files."""
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out
