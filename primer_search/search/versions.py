"""Config versions: how a search config written by an earlier version reads today.

A config names its version (``version = 2`` at its top). Stores keep the config they were
created with, so an old store's config is read by its version and upgraded here, key by
key, before it is built; nothing in the store is rewritten.

* version 0: a store from before hurdle stages had lengths of their own (its config has
  ``hurdle_quantile``). Readable; not resumable (see ``resume_overrides``).
* version 1: one flat table of 25 keys (``workers``, ``max_candidates``, ``seeds``, ...).
  A config without ``version`` is read as version 1, so a file written for it still
  loads; keys already in their version-2 section are kept over the flat ones.
* version 2: the flat keys grouped into sections (``[pool]``, ``[limits]``,
  ``[seeding]``, ``[hurdles]``) beside ``[fitness]``, ``[evolution]`` and ``[ladder]``.

Plain dicts only: no dataclass, no JAX.
"""

from __future__ import annotations

import copy

__all__ = ["CONFIG_VERSION", "MOVED_IN_VERSION_2", "config_version", "moved_key_hint",
           "upgrade"]

CONFIG_VERSION = 2

# Version 1's flat key -> its version-2 home (section, key).
MOVED_IN_VERSION_2: dict[str, tuple[str, str]] = {
    **{k: ("pool", k) for k in (
        "workers", "candidates_per_worker", "cpus_per_worker", "gpus_per_worker",
        "threads_per_worker", "accelerator_type", "worker_resources", "address",
        "prepare_ahead", "toy_sleep_s")},
    **{k: ("limits", k) for k in (
        "max_candidates", "max_hours", "candidate_timeout_s", "max_retries",
        "keep_weights")},
    "seeds": ("seeding", "blocks"),
    "seed_heads": ("seeding", "heads"),
    "seed_d_ff": ("seeding", "d_ff"),
    "hurdle_min_history": ("hurdles", "min_history"),
    "hurdle_window": ("hurdles", "window"),
}


def config_version(data: dict) -> int:
    """The version a config dict was written for: 0 for the hurdle_quantile era, its
    ``version`` key, else 1."""
    if "hurdle_quantile" in data:
        return 0
    version = data.get("version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def upgrade(data: dict) -> dict:
    """``data`` (a copy) as a version-2 config dict. A version-2 dict is returned as it
    is (its ``version`` checked when it is built); an earlier one has its flat keys moved
    into their sections and gains ``version = 2``."""
    out = copy.deepcopy(data)
    if config_version(data) >= 2:
        return out
    for old, (section, key) in MOVED_IN_VERSION_2.items():
        if old in out:
            value = out.pop(old)
            table = out.setdefault(section, {})
            if isinstance(table, dict):
                table.setdefault(key, value)
    out["version"] = CONFIG_VERSION
    return out


def moved_key_hint(key: str) -> str | None:
    """For a version-1 key used where version 2 is read: where it lives now."""
    if key not in MOVED_IN_VERSION_2:
        return None
    section, new = MOVED_IN_VERSION_2[key]
    return f"since config version 2 it is '{section}.{new}'"
