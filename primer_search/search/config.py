"""Search configuration: typed, composed dataclasses filled from TOML with clear errors.

A search config file (``search_configs/*.toml``, shipped in the package)
mirrors :class:`SearchConfig`: top-level
the search's own settings, and tables ``[fitness.data]``, ``[fitness.model]``,
``[fitness.optim]``, ``[fitness.budget]``, ``[evolution]``, ``[evolution.mutation]``.
Every field has a default, so a file names only what it changes. An unknown key or a
value of the wrong type is an error that names it. ``--set a.b.c=value`` overrides one
field (the value is read as TOML, else as a string).

Dict-to-dataclass conversion uses ``dacite`` in strict mode.

A resumed search keeps its word (:func:`resume_overrides`): overrides are merged key by
key into the stored config, and only the keys in :data:`RESUMABLE_KEYS` (limits, workers,
resources, the cluster address) and the final-selection ladder may change. Everything
else defines what a fitness means or what the population is (the fitness task and
budget, the seeds, evolution, hurdles, dedup, the search seed); changing it halfway
would rank candidates scored under different rules against each other, so it is refused
with an error that says how to start a new search from this one's best instead.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import inspect
import os
import tomllib
import types
import typing
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import dacite

from primer_search.fitness.config import FitnessConfig
from primer_search.program.dna import DNA
from primer_search.search.errors import ConfigError, ResumeError
from primer_search.search.evolution import EvolutionConfig
from primer_search.search.ladder import LadderConfig, Rung

__all__ = [
    "RESUMABLE_KEYS",
    "ConfigError",
    "ResumeError",
    "SearchConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "merge",
    "resume_overrides",
    "rung_fitness",
    "seed_dnas",
]




@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """One search: how candidates are scored, how they evolve, and how the work runs."""

    # How one candidate is trained and scored (data, model, optimiser, budget, seed).
    fitness: FitnessConfig = FitnessConfig()
    # Regularized evolution: population, tournament, mutations.
    evolution: EvolutionConfig = EvolutionConfig()
    # Seed blocks of the initial population: names from `primer-search seeds`, or paths
    # to DNA files (for example the program.dna that `primer-search export` writes).
    seeds: tuple[str, ...] = ("transformer",)
    # Attention heads of the seed blocks that have heads (the Primer paper used 8).
    seed_heads: int = 4
    # FFN width of the seed blocks as a multiple of d_model, e.g. 4 or "8/3"; None keeps
    # each seed's own (4 for the Transformer family, 8/3 for the GLU family).
    seed_d_ff: int | float | str | None = None
    # "train": real training (the fitness section); "toy": a cheap stand-in fitness of
    # the program's shape, for testing the search machinery and measuring its overhead.
    evaluator: str = "train"
    # Seconds a toy evaluation sleeps, to stand in for training time.
    toy_sleep_s: float = 0.0
    # Ray workers (processes), each with the resources below.
    workers: int = 1
    # Candidates a worker holds at once. With 2, one trains while the next is built and
    # compiled in another thread, so an accelerator does not wait for the compiler (a
    # candidate trains only while it holds the worker's training lock; memory for two
    # models). On a CPU the compile takes cores from training: keep 1 there.
    candidates_per_worker: int = 1
    # CPU cores and GPUs reserved per worker (Ray resources).
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    # Threads a CPU worker's JAX may use (PJRT_NPROC); 0 leaves JAX's default.
    threads_per_worker: int = 1
    # Where workers may run, beyond CPUs and GPUs. A budget in seconds makes fitness
    # depend on the hardware, so a search on a mixed cluster pins its workers to one kind:
    # accelerator_type is Ray's accelerator type of the GPU (e.g. "H100", "A100"; None:
    # any), and worker_resources are custom Ray resources each worker reserves, e.g.
    # {h100_node = 1} for nodes started with `ray start --resources '{"h100_node": 8}'`.
    accelerator_type: str | None = None
    worker_resources: dict[str, float] = dataclasses.field(default_factory=dict)
    # Stop after this many finished candidates (None: no limit).
    max_candidates: int | None = 100
    # Stop after this many hours (None: no limit).
    max_hours: float | None = None
    # Hard limit on one candidate's evaluation; its worker is killed past it (None: none).
    candidate_timeout_s: float | None = None
    # Times a candidate is retried after its worker died, before it is recorded as failed.
    max_retries: int = 1
    # Hurdles (fitness.budget.stages > 1; the pass rate is fitness.budget.pass_rate): how
    # many candidates must have completed a stage before its hurdle is set, and how many
    # of the most recent ones it is computed from (None: the population size).
    hurdle_min_history: int = 10
    hurdle_window: int | None = None
    # Reuse the fitness of an earlier candidate with the same functional fingerprint.
    dedup: bool = True
    # Candidates proposed and fingerprinted ahead, per worker, while the workers train, so
    # that a worker that finishes finds its next candidate ready. 0: propose only when a
    # worker is free (every proposal then sees every result before it; a resumed search
    # proposes exactly what an uninterrupted one would have).
    prepare_ahead: int = 1
    # Reproducible proposals. With an integer k >= 1, proposal n (counting from 1) sees
    # exactly the results of candidates 1 .. n-k, fed to evolution and the hurdles in
    # proposal order, and waits for a late one; so two runs of one config make the same
    # candidates with the same fitness whatever the timing of results (the trainer is
    # deterministic on a CPU; a budget in seconds is refused, and a time-out still
    # depends on speed). A k of at least workers x (1 + prepare_ahead) keeps every worker
    # busy while results come back in order. None: each proposal sees whatever has come
    # back (the fastest, and not repeatable with more than one worker).
    reproducible_lag: int | None = None
    # Keep the trained weights of the best K candidates beside the store (STORE.weights/),
    # so that `primer-search export` can write them; 0 keeps none.
    keep_weights: int = 10
    # Ray cluster address ("auto" or HOST:PORT); None starts Ray locally, embedded.
    address: str | None = None
    # The search's random seed (proposals); fitness.seed seeds training.
    seed: int = 0
    # Final selection up a ladder of larger settings ([[ladder.rungs]] tables; see
    # primer_search.search.ladder): what `primer-search retrain --ladder` climbs.
    ladder: LadderConfig = LadderConfig()

    def __post_init__(self):
        if self.evaluator not in ("train", "toy"):
            raise ConfigError(f"evaluator must be 'train' or 'toy', got {self.evaluator!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        bad = {k: v for k, v in self.worker_resources.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0}
        if bad:
            raise ConfigError(f"worker_resources must map resource names to amounts >= 0, "
                              f"got {bad}")
        if self.candidates_per_worker < 1:
            raise ConfigError(f"candidates_per_worker must be >= 1, got "
                              f"{self.candidates_per_worker}")
        if self.prepare_ahead < 0:
            raise ConfigError(f"prepare_ahead must be >= 0, got {self.prepare_ahead}")
        if not self.seeds:
            raise ConfigError("seeds must name at least one seed block")
        from primer_search.program import seeds as seed_library

        unknown = [s for s in self.seeds
                   if s not in seed_library.names() and not Path(s).is_file()]
        if unknown:
            raise ConfigError(f"unknown seed blocks {unknown}: expected names ("
                              f"{', '.join(seed_library.names())}) or paths to DNA files")
        if self.seed_heads < 1:
            raise ConfigError(f"seed_heads must be >= 1, got {self.seed_heads}")
        if self.seed_d_ff is not None:
            try:
                ratio = self.seed_d_ff_ratio
            except (ValueError, ZeroDivisionError):
                ratio = Fraction(0)
            if ratio <= 0:
                raise ConfigError(f"seed_d_ff must be a positive number such as 4 or \"8/3\", "
                                  f"got {self.seed_d_ff!r}")
        if self.reproducible_lag is not None:
            if self.reproducible_lag < 1:
                raise ConfigError(f"reproducible_lag must be >= 1 or None, got "
                                  f"{self.reproducible_lag}")
            if self.fitness.budget.seconds is not None:
                raise ConfigError(
                    f"reproducible_lag = {self.reproducible_lag} needs a budget in steps: "
                    f"fitness.budget.seconds = {self.fitness.budget.seconds:g} makes a "
                    "candidate's fitness depend on how fast its worker ran; set it to None")
        if self.hurdle_window is not None and self.hurdle_window < 1:
            raise ConfigError(f"hurdle_window must be >= 1 or None, got {self.hurdle_window}")
        for rung in self.ladder.rungs:
            rung_fitness(self, rung)  # a bad key or value names the rung

    @property
    def seed_d_ff_ratio(self) -> Fraction | None:
        """``seed_d_ff`` as an exact fraction (None: each seed's own)."""
        return None if self.seed_d_ff is None else Fraction(str(self.seed_d_ff))

    @property
    def hurdle_window_size(self) -> int:
        return self.hurdle_window or self.evolution.population_size


def rung_fitness(config: SearchConfig, rung: Rung) -> FitnessConfig:
    """A ladder rung's fitness config: the search's, with the rung's tables merged in key
    by key. A key the fitness config has no field for, or a bad value, is a
    :class:`ConfigError` naming the rung."""
    where = f"ladder rung {rung.name!r}: fitness"
    unknown = unknown_keys(rung.fitness, FitnessConfig, "fitness.")
    if unknown:
        raise ConfigError(f"{where}: " + "; ".join(unknown))
    base = config_to_dict(config)["fitness"]
    try:
        return dacite.from_dict(FitnessConfig, merge(base, rung.fitness), config=_DACITE)
    except (dacite.DaciteError, ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def seed_dnas(config: SearchConfig) -> list[tuple[str, DNA]]:
    """The seed programs of a search: library seeds built with the config's heads and
    FFN width where they take them, and DNA files read as they are."""
    from primer_search.program import seeds as seed_library
    from primer_search.program.validate import load_dna

    out = []
    for name in config.seeds:
        if name not in seed_library.names():
            out.append((name, load_dna(name)))
            continue
        accepts = inspect.signature(seed_library._SEEDS[name]).parameters
        kwargs: dict[str, Any] = {}
        if "heads" in accepts:
            kwargs["heads"] = config.seed_heads
        if "d_ff" in accepts and config.seed_d_ff is not None:
            kwargs["d_ff"] = config.seed_d_ff_ratio
        out.append((name, seed_library.get(name, **kwargs)))
    return out


_DACITE = dacite.Config(strict=True, cast=[tuple])


def config_from_dict(data: dict, source: str = "config") -> SearchConfig:
    try:
        return _build(data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _build(data: dict) -> SearchConfig:
    """``data`` as a SearchConfig, or a ConfigError that says what is wrong (not where)."""
    unknown = unknown_keys(data)
    if unknown:
        raise ConfigError("; ".join(unknown))
    shapes = _shape_errors(data)
    if shapes:
        raise ConfigError("; ".join(shapes))
    try:
        return dacite.from_dict(SearchConfig, data, config=_DACITE)
    except (dacite.DaciteError, ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


def _build_blamed(steps: Sequence[tuple[str, dict]]) -> SearchConfig:
    """The config of the last of ``steps``, (who, data) pairs in which each data is the
    one before it with one more change (the first: a file, then one per override), and
    ``who`` names that change. Its error is blamed on the first step that fails as the
    last does: an override that is wrong names the override, not the file."""
    try:
        return _build(steps[-1][1])
    except ConfigError as e:
        problem = str(e)
    for who, data in steps:
        try:
            _build(data)
        except ConfigError as e:
            if str(e) == problem:
                raise ConfigError(f"{who}: {problem}") from None
    raise ConfigError(f"{steps[-1][0]}: {problem}")


def unknown_keys(data: dict, cls: type = SearchConfig, prefix: str = "") -> list[str]:
    """One message per key of ``data`` that ``cls`` (a config dataclass, searched into its
    nested tables) has no field for: its dotted name, the closest known key and the keys
    that table takes."""
    fields = sorted(f.name for f in dataclasses.fields(cls))
    hints = typing.get_type_hints(cls)
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            table = f"[{prefix[:-1]}]" if prefix else "the top level"
            out.append(f"unknown key {name!r}"
                       + (f" (did you mean {prefix + close[0]!r}?)" if close else "")
                       + f"; {table} takes {', '.join(fields)}")
        elif isinstance(value, dict) and dataclasses.is_dataclass(hints[key]):
            out += unknown_keys(value, hints[key], f"{name}.")
        elif isinstance(value, list) and (item := _item_dataclass(hints[key])):
            for i, entry in enumerate(value):
                if isinstance(entry, dict):
                    out += unknown_keys(entry, item, f"{name}[{i}].")
    return out


def _item_dataclass(hint) -> type | None:
    """X for a field typed ``tuple[X, ...]`` where X is a config dataclass, else None."""
    args = typing.get_args(hint)
    if (typing.get_origin(hint) in (tuple, list) and args
            and dataclasses.is_dataclass(args[0])):
        return args[0]
    return None


def _is_sequence_type(hint) -> bool:
    """Whether a field typed ``hint`` takes only lists (tuple or list, maybe None)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [h for h in typing.get_args(hint) if h is not type(None)]
        return bool(members) and all(_is_sequence_type(h) for h in members)
    return (typing.get_origin(hint) or hint) in (tuple, list)


def _shape_errors(data: dict, cls: type = SearchConfig, prefix: str = "") -> list[str]:
    """One message per key whose field takes a list and whose value is not one: dacite
    casts it to a tuple, and the TypeError of that (``'bool' object is not iterable``)
    names no key."""
    hints = typing.get_type_hints(cls)
    out = []
    for key, value in data.items():
        name, hint = f"{prefix}{key}", hints[key]
        optional = type(None) in typing.get_args(hint)
        if _is_sequence_type(hint) and not isinstance(value, (list, tuple)) and not (
                value is None and optional):
            out.append(f"{name} must be a list, got {value!r}")
        elif isinstance(value, dict) and dataclasses.is_dataclass(hint):
            out += _shape_errors(value, hint, f"{name}.")
    return out


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


def merge(base: dict, overrides: dict) -> dict:
    """``overrides`` merged into ``base`` key by key, at every depth (a copy)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Top-level keys a resume may change: when and where the work runs, not what it means.
RESUMABLE_KEYS = frozenset({
    "max_candidates", "max_hours", "workers", "candidates_per_worker", "cpus_per_worker",
    "gpus_per_worker",
    "threads_per_worker", "candidate_timeout_s", "max_retries", "keep_weights", "address",
    "prepare_ahead",
    "toy_sleep_s"})


def _leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_overrides(stored: dict, overrides: dict, store_path: str = "STORE") -> dict:
    """The stored config with ``overrides`` merged in, or a :class:`ResumeError` naming
    the first key that a resume may not change (see the module doc); an unknown key or
    a value of the wrong type is a :class:`ConfigError`."""
    if "hurdle_quantile" in stored:
        raise ResumeError(
            f"{store_path} was written by an earlier version of primer-search, whose hurdle "
            "stages were equal in length and whose fingerprints and trainer differ; "
            "resuming it would mix candidates judged under different rules. Its rows can "
            "still be read (top, show, export); start a new search from its best: "
            f"`primer-search export {store_path} ID --out DIR`, then `primer-search search "
            "CONFIG --set 'seeds=[\"DIR/program.dna\"]'`")
    merged = merge(stored, overrides)
    steps, data = [(f"{store_path} (stored config)", stored)], stored
    for key, value in _leaves(overrides).items():
        data = merge(data, _nest(key, value))
        steps.append((f"--set {key}={_toml(value)}", data))
    _build_blamed(steps)
    before, after = _leaves(stored), _leaves(merged)
    for key in sorted(after):
        if (key in RESUMABLE_KEYS or key.startswith("ladder.")
                or before.get(key, _MISSING) == after[key]):
            continue
        raise ResumeError(
            f"a resume cannot change {key} (stored {before.get(key, '(unset)')!r}, given "
            f"{after[key]!r}): it defines how candidates are scored or what the population "
            f"is, and the search would compare candidates judged under different rules. "
            f"A resume may change only {', '.join(sorted(RESUMABLE_KEYS))} and the ladder. "
            f"To search under "
            f"new rules, start a new search from this one's best: `primer-search top "
            f"{store_path}` gives its id, `primer-search export {store_path} ID --out DIR` "
            f"writes DIR/program.dna, then `primer-search search CONFIG --set "
            f"'seeds=[\"DIR/program.dna\"]' --set {key}=...`")
    return merged


_MISSING = object()


def _nest(key: str, value: Any) -> dict:
    """``"a.b", 1`` as ``{"a": {"b": 1}}``."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def _toml(value: Any) -> str:
    """A value as ``--set`` takes it (JSON writes TOML's scalars and arrays alike)."""
    import json

    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def shipped_configs() -> dict[str, importlib.resources.abc.Traversable]:
    """The configs that ship with the engine, by name. Their one home is the repository's
    top-level ``search_configs/``; a wheel carries that folder as the package data
    ``primer_search/search_configs/`` (a package-dir mapping in pyproject.toml), and a
    source checkout, installed editable or not at all, reads the folder itself."""
    folder = importlib.resources.files("primer_search") / "search_configs"
    if not folder.is_dir():
        folder = Path(__file__).resolve().parents[2] / "search_configs"
    return {f.name.removesuffix(".toml"): f for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".toml")}


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> SearchConfig:
    """Read a TOML search config with overrides: a path, or the name of a shipped config
    (:func:`shipped_configs`: ``search_configs/NAME.toml``)."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        p = shipped_configs().get(os.fspath(path), p)
    if not p.is_file():
        shipped = sorted(shipped_configs())
        raise ConfigError(f"config file {os.fspath(path)!r} does not exist; expected a TOML "
                          f"file or the name of a shipped config ({', '.join(shipped)})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    steps = [(str(p), data)]
    for i, item in enumerate(overrides):
        steps.append((f"--set {item}", apply_overrides(data, overrides[:i + 1])))
    return _build_blamed(steps)
