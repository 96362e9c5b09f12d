"""Search configuration: typed, composed dataclasses filled from TOML with clear errors.

A search config file (``search_configs/*.toml``, shipped in the package) mirrors
:class:`SearchConfig`: a few top-level keys (``version``, ``evaluator``, ``seed``,
``dedup``, ``reproducible_lag``) and one table per concern, each a small frozen
dataclass: ``[fitness.*]`` (how one candidate is scored), ``[evolution]``, ``[seeding]``
(the seed blocks), ``[hurdles]``, ``[pool]`` (the workers and their resources),
``[limits]`` (when to stop, time-outs, kept weights) and ``[[ladder.rungs]]``. Every
field has a default, so a file names only what it changes. An unknown key or a value of
the wrong type is an error that names it; a key of version 1's flat layout says where
it lives now. ``--set a.b.c=value`` overrides one field (the value is read as TOML, else
as a string). Configs of earlier versions, as old stores hold them, are read through
:mod:`primer_search.search.versions`.

Dict-to-dataclass conversion uses ``dacite`` in strict mode.

A resumed search keeps its word (:func:`resume_overrides`): overrides are merged key by
key into the stored config, and only the sections whose class says ``resumable``
(``pool``, ``limits`` and the final-selection ``ladder``: when and where the work runs)
may change. Everything else defines what a fitness means or what the population is (the
fitness task and budget, the seeds, evolution, hurdles, dedup, the search seed); changing
it halfway would rank candidates scored under different rules against each other, so it
is refused with an error that says how to start a new search from this one's best
instead.
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
from typing import Any, ClassVar

import dacite

from primer_search.fitness.config import FitnessConfig
from primer_search.program.dna import DNA
from primer_search.search.errors import ConfigError, ResumeError
from primer_search.search.evolution import EvolutionConfig
from primer_search.search.ladder import LadderConfig, Rung
from primer_search.search.versions import (
    CONFIG_VERSION,
    MOVED_IN_VERSION_2,
    config_version,
    moved_key_hint,
    upgrade,
)

__all__ = [
    "ConfigError",
    "HurdlesConfig",
    "LimitsConfig",
    "PoolConfig",
    "SeedingConfig",
    "ResumeError",
    "SearchConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "merge",
    "resume_overrides",
    "resumable_sections",
    "rung_fitness",
    "section_resumable",
    "seed_dnas",
    "shipped_configs",
]




class _Section:
    """A section of the search config. ``resumable``: whether a resume may change its
    keys (they say when and where the work runs, not what a candidate's fitness means)."""

    resumable: ClassVar[bool] = False


@dataclasses.dataclass(frozen=True)
class PoolConfig(_Section):
    """The workers: how many, with which resources, on which cluster ([pool])."""

    resumable: ClassVar[bool] = True

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
    # Ray cluster address ("auto" or HOST:PORT); None starts Ray locally, embedded.
    address: str | None = None
    # Candidates proposed and fingerprinted ahead, per worker, while the workers train, so
    # that a worker that finishes finds its next candidate ready. 0: propose only when a
    # worker is free (every proposal then sees every result before it; a resumed search
    # proposes exactly what an uninterrupted one would have).
    prepare_ahead: int = 1
    # Seconds a toy evaluation (evaluator = "toy") sleeps, to stand in for training time.
    toy_sleep_s: float = 0.0

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError(f"pool.workers must be >= 1, got {self.workers}")
        bad = {k: v for k, v in self.worker_resources.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0}
        if bad:
            raise ConfigError(f"pool.worker_resources must map resource names to amounts "
                              f">= 0, got {bad}")
        if self.candidates_per_worker < 1:
            raise ConfigError(f"pool.candidates_per_worker must be >= 1, got "
                              f"{self.candidates_per_worker}")
        if self.prepare_ahead < 0:
            raise ConfigError(f"pool.prepare_ahead must be >= 0, got {self.prepare_ahead}")


@dataclasses.dataclass(frozen=True)
class LimitsConfig(_Section):
    """When the search stops, how long a candidate may take, and what is kept ([limits])."""

    resumable: ClassVar[bool] = True

    # Stop after this many finished candidates (None: no limit).
    max_candidates: int | None = 100
    # Stop after this many hours (None: no limit).
    max_hours: float | None = None
    # Hard limit on one candidate's evaluation; its worker is killed past it (None: none).
    candidate_timeout_s: float | None = None
    # Times a candidate is retried after its worker died, before it is recorded as failed.
    max_retries: int = 1
    # Keep the trained weights of the best K candidates beside the store (STORE.weights/),
    # so that `primer-search export` can write them; 0 keeps none.
    keep_weights: int = 10


@dataclasses.dataclass(frozen=True)
class SeedingConfig(_Section):
    """The seed blocks of the initial population ([seeding])."""

    # Seed blocks: names from `primer-search seeds`, or paths to DNA files (for example
    # the program.dna that `primer-search export` writes) or to programs written as text.
    blocks: tuple[str, ...] = ("transformer",)
    # Attention heads of the seed blocks that have heads (the Primer paper used 8).
    heads: int = 4
    # FFN width of the seed blocks as a multiple of d_model, e.g. 4 or "8/3"; None keeps
    # each seed's own (4 for the Transformer family, 8/3 for the GLU family).
    d_ff: int | float | str | None = None

    def __post_init__(self):
        if not self.blocks:
            raise ConfigError("seeding.blocks must name at least one seed block")
        from primer_search.program import seeds as seed_library

        unknown = [s for s in self.blocks
                   if s not in seed_library.names() and not Path(s).is_file()]
        if unknown:
            raise ConfigError(f"unknown seed blocks {unknown}: expected names ("
                              f"{', '.join(seed_library.names())}) or paths to DNA files")
        if self.heads < 1:
            raise ConfigError(f"seeding.heads must be >= 1, got {self.heads}")
        if self.d_ff is not None:
            try:
                ratio = self.d_ff_ratio
            except (ValueError, ZeroDivisionError):
                ratio = Fraction(0)
            if ratio <= 0:
                raise ConfigError(f"seeding.d_ff must be a positive number such as 4 or "
                                  f"\"8/3\", got {self.d_ff!r}")

    @property
    def d_ff_ratio(self) -> Fraction | None:
        """``d_ff`` as an exact fraction (None: each seed's own)."""
        return None if self.d_ff is None else Fraction(str(self.d_ff))


@dataclasses.dataclass(frozen=True)
class HurdlesConfig(_Section):
    """Where hurdles are set (fitness.budget.stages > 1; the pass rate is
    fitness.budget.pass_rate) ([hurdles])."""

    # How many candidates must have completed a stage before its hurdle is set.
    min_history: int = 10
    # How many of the most recent candidates a hurdle is computed from (None: the
    # population size).
    window: int | None = None

    def __post_init__(self):
        if self.window is not None and self.window < 1:
            raise ConfigError(f"hurdles.window must be >= 1 or None, got {self.window}")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """One search: how candidates are scored, how they evolve, and how the work runs."""

    # The config's format (see primer_search.search.versions): files without it are read
    # as version 1, whose flat keys are moved into the sections below.
    version: int = CONFIG_VERSION
    # How one candidate is trained and scored (data, model, optimiser, budget, seed).
    fitness: FitnessConfig = FitnessConfig()
    # Regularized evolution: population, tournament, mutations.
    evolution: EvolutionConfig = EvolutionConfig()
    # The seed blocks of the initial population.
    seeding: SeedingConfig = SeedingConfig()
    # Where hurdles are set.
    hurdles: HurdlesConfig = HurdlesConfig()
    # The workers. A resume may change this section.
    pool: PoolConfig = PoolConfig()
    # When to stop, how long a candidate may take, what is kept. A resume may change it.
    limits: LimitsConfig = LimitsConfig()
    # "train": real training (the fitness section); "toy": a cheap stand-in fitness of
    # the program's shape, for testing the search machinery and measuring its overhead.
    evaluator: str = "train"
    # The search's random seed (proposals); fitness.seed seeds training.
    seed: int = 0
    # Reuse the fitness of an earlier candidate with the same functional fingerprint.
    dedup: bool = True
    # Reproducible proposals. With an integer k >= 1, proposal n (counting from 1) sees
    # exactly the results of candidates 1 .. n-k, fed to evolution and the hurdles in
    # proposal order, and waits for a late one; so two runs of one config make the same
    # candidates with the same fitness whatever the timing of results (the trainer is
    # deterministic on a CPU; a budget in seconds is refused, and a time-out still
    # depends on speed). A k of at least workers x (1 + prepare_ahead) keeps every worker
    # busy while results come back in order. None: each proposal sees whatever has come
    # back (the fastest, and not repeatable with more than one worker).
    reproducible_lag: int | None = None
    # Final selection up a ladder of larger settings ([[ladder.rungs]] tables; see
    # primer_search.search.ladder): what `primer-search retrain --ladder` climbs. A
    # resume may change it.
    ladder: LadderConfig = LadderConfig()

    def __post_init__(self):
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"version must be {CONFIG_VERSION} (this engine's config "
                              f"format), got {self.version!r}")
        if self.evaluator not in ("train", "toy"):
            raise ConfigError(f"evaluator must be 'train' or 'toy', got {self.evaluator!r}")
        if self.reproducible_lag is not None:
            if self.reproducible_lag < 1:
                raise ConfigError(f"reproducible_lag must be >= 1 or None, got "
                                  f"{self.reproducible_lag}")
            if self.fitness.budget.seconds is not None:
                raise ConfigError(
                    f"reproducible_lag = {self.reproducible_lag} needs a budget in steps: "
                    f"fitness.budget.seconds = {self.fitness.budget.seconds:g} makes a "
                    "candidate's fitness depend on how fast its worker ran; set it to None")
        for rung in self.ladder.rungs:
            rung_fitness(self, rung)  # a bad key or value names the rung

    @property
    def hurdle_window_size(self) -> int:
        return self.hurdles.window or self.evolution.population_size


def section_resumable(name: str) -> bool:
    """Whether a resume may change the keys of the search config's section ``name``."""
    hint = typing.get_type_hints(SearchConfig).get(name)
    return bool(getattr(hint, "resumable", False))


def resumable_sections() -> list[str]:
    """The sections of the search config that a resume may change."""
    return [f.name for f in dataclasses.fields(SearchConfig) if section_resumable(f.name)]


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
    for name in config.seeding.blocks:
        if name not in seed_library.names():
            out.append((name, load_dna(name)))
            continue
        accepts = inspect.signature(seed_library._SEEDS[name]).parameters
        kwargs: dict[str, Any] = {}
        if "heads" in accepts:
            kwargs["heads"] = config.seeding.heads
        if "d_ff" in accepts and config.seeding.d_ff is not None:
            kwargs["d_ff"] = config.seeding.d_ff_ratio
        out.append((name, seed_library.get(name, **kwargs)))
    return out


_DACITE = dacite.Config(strict=True, cast=[tuple])


def config_from_dict(data: dict, source: str = "config") -> SearchConfig:
    try:
        return _build(data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _build(data: dict) -> SearchConfig:
    """``data`` as a SearchConfig, or a ConfigError that says what is wrong (not where).
    A config of an earlier version is upgraded first (:mod:`~primer_search.search.versions`)."""
    # A version-1 key's error names its new home; say how the file wrote it as well.
    flat = {} if config_version(data) >= 2 else {
        ".".join(home): old for old, home in MOVED_IN_VERSION_2.items() if old in data}

    def refuse(problem: str) -> ConfigError:
        named = [f"'{old}' in this version-1 config is {new}" for new, old in flat.items()
                 if new in problem]
        return ConfigError(problem + (f" ({'; '.join(named)})" if named else ""))

    data = upgrade(data)
    unknown = unknown_keys(data)
    if unknown:
        raise refuse("; ".join(unknown))
    shapes = _shape_errors(data)
    if shapes:
        raise refuse("; ".join(shapes))
    try:
        return dacite.from_dict(SearchConfig, data, config=_DACITE)
    except (dacite.DaciteError, ValueError, TypeError) as e:
        raise refuse(str(e)) from None


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
            moved = None if prefix else moved_key_hint(str(key))
            close = [prefix + c for c in difflib.get_close_matches(str(key), fields, n=1)]
            if not (moved or close or prefix):    # a misspelt version-1 key: its new home
                close = [".".join(MOVED_IN_VERSION_2[c]) for c in
                         difflib.get_close_matches(str(key), MOVED_IN_VERSION_2, n=1)]
            table = f"[{prefix[:-1]}]" if prefix else "the top level"
            out.append(f"unknown key {name!r}"
                       + (f" ({moved})" if moved else
                          f" (did you mean {close[0]!r}?)" if close else "")
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
    """One message per key whose field takes a list and whose value is not one, searched
    into nested tables, lists of tables and lists of lists: dacite casts such a value to
    a tuple, and the TypeError of that (``'bool' object is not iterable``) names no key."""
    hints = typing.get_type_hints(cls)
    out = []
    for key, value in data.items():
        out += _value_shape_errors(f"{prefix}{key}", hints[key], value)
    return out


def _value_shape_errors(name: str, hint, value) -> list[str]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return []
        members = [h for h in typing.get_args(hint) if h is not type(None)]
        if len(members) != 1:
            return []
        hint = members[0]
    if dataclasses.is_dataclass(hint):
        return _shape_errors(value, hint, f"{name}.") if isinstance(value, dict) else []
    if not _is_sequence_type(hint):
        return []
    if not isinstance(value, (list, tuple)):
        return [f"{name} must be a list, got {value!r}"]
    args = typing.get_args(hint)
    if not args:
        return []
    if len(args) == 2 and args[1] is Ellipsis or typing.get_origin(hint) is list:
        items = [args[0]] * len(value)
    else:   # a tuple of fixed length: one type a position
        items = list(args)[:len(value)]
    out = []
    for i, (item_hint, item) in enumerate(zip(items, value)):
        out += _value_shape_errors(f"{name}[{i}]", item_hint, item)
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


def _leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_overrides(stored: dict, overrides: dict, store_path: str = "STORE") -> dict:
    """The stored config (upgraded to this version, :func:`~primer_search.search.versions.upgrade`)
    with ``overrides`` merged in, or a :class:`ResumeError` naming the first key that a
    resume may not change: any key outside the resumable sections
    (:func:`resumable_sections`); an unknown key or a value of the wrong type is a
    :class:`ConfigError`."""
    if config_version(stored) == 0:
        raise ResumeError(
            f"{store_path} was written by an earlier version of primer-search, whose hurdle "
            "stages were equal in length and whose fingerprints and trainer differ; "
            "resuming it would mix candidates judged under different rules. Its rows can "
            "still be read (top, show, export); start a new search from its best: "
            f"`primer-search export {store_path} ID --out DIR`, then `primer-search search "
            "CONFIG --set 'seeding.blocks=[\"DIR/program.dna\"]'`")
    stored = upgrade(stored)
    merged = merge(stored, overrides)
    steps, data = [(f"{store_path} (stored config)", stored)], stored
    for key, value in _leaves(overrides).items():
        data = merge(data, _nest(key, value))
        steps.append((f"--set {key}={_toml(value)}", data))
    _build_blamed(steps)
    before, after = _leaves(stored), _leaves(merged)
    sections = resumable_sections()
    for key in sorted(after):
        if section_resumable(key.split(".")[0]) or before.get(key, _MISSING) == after[key]:
            continue
        raise ResumeError(
            f"a resume cannot change {key} (stored {before.get(key, '(unset)')!r}, given "
            f"{after[key]!r}): it defines how candidates are scored or what the population "
            f"is, and the search would compare candidates judged under different rules. "
            f"A resume may change only the sections {', '.join(sections)}. To search under "
            f"new rules, start a new search from this one's best: `primer-search top "
            f"{store_path}` gives its id, `primer-search export {store_path} ID --out DIR` "
            f"writes DIR/program.dna, then `primer-search search CONFIG --set "
            f"'seeding.blocks=[\"DIR/program.dna\"]' --set {key}=...`")
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
