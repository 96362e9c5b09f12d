"""Run a search: a store, a pool of Ray workers and the search loop, put together.

:func:`run_search` starts a new search and :func:`resume_search` continues one from its
store. The loop itself (:mod:`primer_search.search.loop`) knows nothing of Ray; the workers are
:class:`primer_search.search.ray_pool.RayPool`'s actors.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from primer_search.fitness.results import EvalResult, Status
from primer_search.search.config import SearchConfig, config_from_dict, config_to_dict, resume_overrides
from primer_search.search.loop import SearchLoop, SearchSummary
from primer_search.search.store import Store

__all__ = ["SearchSummary", "resume_search", "run_search"]

log = logging.getLogger(__name__)

# The loop's hook: (the candidate, its status, its result), once per finished candidate.
OnFinish = Callable[[Any, Status, EvalResult], None]


def _run(config: SearchConfig, store: Store, progress: bool,
         on_finish: OnFinish | None = None) -> SearchSummary:
    """The loop over a Ray pool (Ray is already initialised). With ``progress``: a live
    bar on a terminal, else (a job log, nohup, CI) one line per finished candidate on
    standard error. ``on_finish(cand, status, result)`` is the loop's hook (see
    :class:`~primer_search.search.loop.SearchLoop`), called after the log line."""
    from primer_search.search.ray_pool import RayPool

    lines = _LineLog() if progress and not sys.stderr.isatty() else None
    hooks = [h for h in (lines, on_finish) if h is not None]

    def finished(cand, status, result) -> None:
        for hook in hooks:
            hook(cand, status, result)

    loop = SearchLoop(config, store, RayPool(config), on_finish=finished if hooks else None)
    display = _Progress(loop) if progress and lines is None else None
    if lines:
        lines.start = loop.start
    try:
        return loop.run(on_turn=display.update if display else None)
    finally:
        if display:
            display.close()


class _LineLog:
    """One line per finished candidate: id, parent, status, fitness, best so far, rate,
    mutation. For output that is not a terminal, where a live bar would print nothing
    useful until the end."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.best = math.inf
        self.done = 0
        self.start = time.time()

    def __call__(self, cand, status, result) -> None:
        self.done += 1
        if status != Status.DUPLICATE and not result.status.is_failed():
            self.best = min(self.best, result.fitness)
        hours = max(time.time() - self.start, 1e-9) / 3600
        parent = "-" if cand.parent_id is None else f"#{cand.parent_id}"
        print(f"#{cand.id} parent {parent} {status.value} fitness {result.fitness:.4g} best "
              f"{self.best:.4g} ({self.done} done, {self.done / hours:.0f}/h) {cand.mutation[:80]}",
              file=self.stream, flush=True)


def _prepare_data(config: SearchConfig) -> None:
    """Load the corpus once in this process before any worker starts, so that the
    workers on this machine find its vocabulary and validation set in the cache instead
    of each building them (a subword vocabulary takes tens of seconds). A corpus this
    machine cannot read is an error here when the workers run here too, and only a
    warning when they run on a cluster, whose nodes may hold data that the driver's
    does not."""
    if config.evaluator != "train":
        return
    from primer_search.fitness.data import DataError, load_dataset

    try:
        load_dataset(config.fitness.data)
    except DataError as e:
        if not (config.pool.address or os.environ.get("RAY_ADDRESS")):
            raise
        log.warning("the corpus cannot be read on this machine (%s); the workers will "
                    "read it on their nodes", e)


def run_search(config: SearchConfig, store_path: str | os.PathLike,
               progress: bool = True, on_finish: OnFinish | None = None) -> SearchSummary:
    """Start a new search writing to ``store_path`` (which must not exist);
    ``on_finish(cand, status, result)`` is called once per finished candidate, after the
    store has it."""
    if Path(store_path).exists():
        raise FileExistsError(f"store {os.fspath(store_path)!r} exists; resume it with "
                              "--resume, or choose another path")
    from primer_search.search.ray_pool import init_ray

    _prepare_data(config)  # before writing: a corpus that is not there leaves no store
    init_ray(config)  # before writing: an unreachable cluster leaves no empty store behind
    with Store(store_path, config_to_dict(config)) as store:
        return _run(config, store, progress, on_finish)


def resume_search(store_path: str | os.PathLike, overrides: dict | None = None,
                  progress: bool = True) -> SearchSummary:
    """Continue the search in ``store_path`` with its stored config. ``overrides`` (a
    nested dict) are merged key by key and may change only the resumable sections
    (:func:`primer_search.search.config.resumable_sections`: pool, limits, ladder); anything else is
    refused with a :class:`~primer_search.search.config.ConfigError`. Each resume and its
    overrides are recorded in the store."""
    with Store(store_path) as store:
        data = resume_overrides(store.config, overrides or {}, str(store_path))
        config = config_from_dict(data, source=f"{store_path} (stored config)")
        from primer_search.search.ray_pool import init_ray

        _prepare_data(config)
        init_ray(config)  # before writing: a resume that cannot run is not recorded
        store.record_resume(overrides or {})
        return _run(config, store, progress)


class _Progress:
    """Live progress (rich): candidates done, best fitness, rate, failures."""

    def __init__(self, loop: SearchLoop):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.c = loop
        self.progress = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                 console=Console(stderr=True))  # stdout is for results
        total = loop.cfg.limits.max_candidates
        self.task = self.progress.add_task("search", total=total, info="")
        self.progress.start()
        self.update()

    def update(self) -> None:
        s = self.c.summary()
        hours = max(s.seconds, 1e-9) / 3600
        best = f"{s.best_fitness:.4g} (#{s.best_id})" if s.best_fitness is not None else "-"
        info = (f"best {best}  trained {s.trained}  dup {s.duplicates}  failed {s.failed}  "
                f"{s.finished / hours:.0f}/h")
        self.progress.update(self.task, completed=s.finished, info=info)

    def close(self) -> None:
        self.update()
        self.progress.stop()
