"""JAX's persistent compilation cache, shared by every evaluator on a machine.

XLA compilation is most of a candidate's compile time (84% at width 64 on the CPU). A
program compiled once is found on disk by the next process that compiles it: a retrain
of the same candidate with another seed on another worker, a resumed search, a rerun of
a benchmark. On the 2-core development machine the Primer-EZ seed at the efficacy
benchmark's settings compiled in 5.5 s cold and 1.1 s from the cache in a new process.
A novel candidate gains nothing: its programs are new.

The cache lives in ``<cache root>/xla`` (the data cache's root: ``DataConfig.cache_dir``,
else ``$PRIMER_SEARCH_CACHE``, else ``~/.cache/primer-search``) unless JAX was already
given a cache folder (``JAX_COMPILATION_CACHE_DIR``), which is kept.
``PRIMER_SEARCH_COMPILATION_CACHE=0`` turns it off (benchmarks that time compilation do).
Like any compilation cache it is trusted code: keep it in a folder only you can write.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["OFF_VALUES", "enable"]

OFF_VALUES = ("0", "off", "false", "no")
# Programs that compile faster than this are not written (they would cost more to read).
MIN_COMPILE_S = 0.3


def enable(root: Path) -> str | None:
    """Turn the persistent cache on in this process (in ``root / "xla"`` unless JAX has a
    folder already); return the folder in use, or None when it is turned off."""
    if os.environ.get("PRIMER_SEARCH_COMPILATION_CACHE", "1").strip().lower() in OFF_VALUES:
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    folder = Path(root).expanduser() / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: compile without a cache
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return str(folder)
