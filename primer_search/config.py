"""Search configuration: typed, composed dataclasses filled from TOML with clear errors.

A search config file (``search_configs/*.toml``) mirrors :class:`SearchConfig`: top-level
controller settings, and tables ``[fitness.data]``, ``[fitness.model]``,
``[fitness.optim]``, ``[fitness.budget]``, ``[evolution]``, ``[evolution.mutation]``.
Every field has a default, so a file names only what it changes. An unknown key or a
value of the wrong type is an error that names it. ``--set a.b.c=value`` overrides one
field (the value is read as TOML, else as a string).

Dict-to-dataclass conversion uses ``dacite`` in strict mode.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dacite

from primer_search.evaluate import FitnessConfig
from primer_search.evolution import EvolutionConfig

__all__ = [
    "ConfigError",
    "SearchConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """One search: how candidates are scored, how they evolve, and how the work runs."""

    # How one candidate is trained and scored (data, model, optimiser, budget, seed).
    fitness: FitnessConfig = FitnessConfig()
    # Regularized evolution: population, tournament, mutations.
    evolution: EvolutionConfig = EvolutionConfig()
    # Seed blocks of the initial population (names from `primer-search seeds`).
    seeds: tuple[str, ...] = ("transformer",)
    # "train": real training (the fitness section); "toy": a cheap stand-in fitness of
    # the program's shape, for testing the search machinery and measuring its overhead.
    evaluator: str = "train"
    # Seconds a toy evaluation sleeps, to stand in for training time.
    toy_sleep_s: float = 0.0
    # Candidates evaluated at once (one Ray worker each).
    workers: int = 1
    # CPU cores and GPUs reserved per worker (Ray resources).
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    # Threads a CPU worker's JAX may use (PJRT_NPROC); 0 leaves JAX's default.
    threads_per_worker: int = 1
    # Stop after this many finished candidates (None: no limit).
    max_candidates: int | None = 100
    # Stop after this many hours (None: no limit).
    max_hours: float | None = None
    # Hard limit on one candidate's evaluation; its worker is killed past it (None: none).
    candidate_timeout_s: float | None = None
    # Times a candidate is retried after its worker died, before it is recorded as failed.
    max_retries: int = 1
    # Hurdles: quantile of earlier candidates a candidate must reach after each stage
    # (fitness.budget.stages > 1), and how many earlier candidates a hurdle needs.
    hurdle_quantile: float = 0.5
    hurdle_min_history: int = 10
    # Reuse the fitness of an earlier candidate with the same functional fingerprint.
    dedup: bool = True
    # Keep the trained weights of the best K candidates beside the store (STORE.weights/),
    # so that `primer-search export` can write them; 0 keeps none.
    keep_weights: int = 10
    # Ray cluster address ("auto" or HOST:PORT); None starts Ray locally, embedded.
    address: str | None = None
    # The search's random seed (proposals); fitness.seed seeds training.
    seed: int = 0

    def __post_init__(self):
        if self.evaluator not in ("train", "toy"):
            raise ConfigError(f"evaluator must be 'train' or 'toy', got {self.evaluator!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if not self.seeds:
            raise ConfigError("seeds must name at least one seed block")
        from primer_search import seeds as seed_library

        unknown = [s for s in self.seeds if s not in seed_library.names()]
        if unknown:
            raise ConfigError(f"unknown seed blocks {unknown}; known: "
                              f"{', '.join(seed_library.names())}")


_DACITE = dacite.Config(strict=True, cast=[tuple])


def config_from_dict(data: dict, source: str = "config") -> SearchConfig:
    try:
        return dacite.from_dict(SearchConfig, data, config=_DACITE)
    except dacite.UnexpectedDataError as e:
        raise ConfigError(f"{source}: unknown key(s) {sorted(e.keys)}") from None
    except (dacite.DaciteError, ValueError, TypeError) as e:
        raise ConfigError(f"{source}: {e}") from None


def config_to_dict(config: SearchConfig) -> dict:
    """Plain JSON-compatible dict (tuples become lists) that config_from_dict reads back."""
    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x
    return plain(dataclasses.asdict(config))


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """``["fitness.budget.steps=50", ...]`` applied to a nested dict (a copy)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
        node[parts[-1]] = _parse_value(value.strip())
    return data


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> SearchConfig:
    """Read a TOML search config (a path, or a name in search_configs/) with overrides."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        bundled = Path(__file__).resolve().parent.parent / "search_configs" / f"{p}.toml"
        if bundled.exists():
            p = bundled
    if not p.is_file():
        raise ConfigError(f"config file {os.fspath(path)!r} does not exist; expected a TOML "
                          "file or a name in search_configs/ (tiny_cpu, gpu_small, primer_lm1b)")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    return config_from_dict(apply_overrides(data, overrides), source=str(p))
