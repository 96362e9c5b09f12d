"""Search and read results from Python: what ``primer-search search``, ``top``, ``show``
and ``lineage`` do, as functions a notebook or a script calls.

    import primer_search

    summary = primer_search.search("tiny_cpu", store="run.sqlite",
                                   overrides=["limits.max_candidates=40"],
                                   on_result=lambda row: print(row["id"], row["fitness"]))
    results = primer_search.open_store("run.sqlite")
    df = results.candidates()                 # a pandas DataFrame, one row per candidate
    best = results.best()                     # the best candidate's row
    print(results.program(best["id"]))        # its DNA, as code

Nothing heavy is imported until a function runs: :func:`search` loads the trainer and
Ray, :func:`open_store` only the store, and :meth:`Results.candidates` pandas (the
``dataframe`` extra: ``pip install 'primer-search[dataframe]'``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: importing them loads what a reader does not need
    import pandas

    from primer_search.program.dna import DNA
    from primer_search.search.config import SearchConfig
    from primer_search.search.loop import SearchSummary
    from primer_search.search.store import Candidate

__all__ = ["COLUMNS", "Results", "open_store", "search"]

# The columns of Results.candidates() and the keys of a row, in order.
COLUMNS = ("id", "parent", "status", "fitness", "perplexity", "word_perplexity",
           "bits_per_byte", "train_loss", "recall_accuracy", "recall_loss", "recall_steps",
           "recall_s", "context_use", "stages", "stage_perplexity", "position_loss", "steps",
           "params", "step_ms", "tokens_per_s", "compile_s", "train_s", "eval_s", "mutation",
           "kind", "duplicate_of", "reason", "worker", "created_at", "finished_at")


def search(config_or_name: SearchConfig | str | os.PathLike, store: str | os.PathLike | None = None,
           overrides: Iterable[str] = (), on_result: Callable[[dict], None] | None = None,
           progress: bool = False) -> SearchSummary:
    """Run a new search, as ``primer-search search`` does, and return its summary.

    ``config_or_name`` is a :class:`~primer_search.search.config.SearchConfig`, a TOML file
    or the name of a shipped config (``tiny_cpu``, ...); ``overrides`` are ``--set``
    strings such as ``"fitness.budget.steps=50"``. ``store`` is the SQLite file to create
    (default: ``NAME-DATE-TIME.sqlite`` here). ``on_result(row)`` is called once per
    finished candidate, after the store has it, with the row :meth:`Results.candidates`
    would show for it (a dict keyed by :data:`COLUMNS`). ``progress`` shows the command's
    live display on standard error.
    """
    from primer_search.search.config import (
        SearchConfig,
        apply_overrides,
        config_from_dict,
        config_to_dict,
        load_config,
    )
    from primer_search.search.controller import run_search

    overrides = list(overrides)
    if isinstance(config_or_name, SearchConfig):
        config, stem = config_or_name, "search"
        if overrides:
            config = config_from_dict(apply_overrides(config_to_dict(config), overrides),
                                      source="config with overrides")
    else:
        config, stem = load_config(config_or_name, overrides), Path(config_or_name).stem
    store = store or time.strftime(f"{stem}-%Y%m%d-%H%M%S.sqlite")
    if on_result is None:
        return run_search(config, store, progress=progress)
    reader = _RowReader(store, on_result)
    try:
        return run_search(config, store, progress=progress, on_finish=reader)
    finally:
        reader.close()


class _RowReader:
    """The loop's ``on_finish`` hook: reads the finished candidate back from the store
    (a reader beside the search's writer) and hands its row to ``on_result``."""

    def __init__(self, path, on_result: Callable[[dict], None]):
        self.path, self.on_result, self.store = path, on_result, None

    def __call__(self, cand, status, result) -> None:
        from primer_search.search.store import Store

        if self.store is None:
            self.store = Store(self.path, readonly=True)
        self.on_result(candidate_row(self.store.get(cand.id)))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def open_store(path: str | os.PathLike = "latest") -> Results:
    """The results of the search in ``path``, read-only (a search may be writing it).
    ``"latest"`` (the default, unless a file has that name) is the newest search store
    in this folder or the one above, as after ``primer-search search``."""
    if os.fspath(path) == "latest" and not Path(path).exists():
        from primer_search.files import newest_store

        path = newest_store((".", ".."))
    results = Results(path)
    with results._open():  # a missing or damaged store fails here, not later
        pass
    return results


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def candidate_row(c: Candidate) -> dict[str, Any]:
    """One candidate as a flat dict keyed by :data:`COLUMNS`: its place in the search,
    its status and fitness, and its metrics (NaN, or 0 for counts, where a candidate
    has none: pending, or a task that did not run)."""
    r = c.result
    metric = (lambda name: _nan(getattr(r, name))) if r else (lambda name: math.nan)
    return {
        "id": c.id, "parent": c.parent_id, "status": str(c.status), "fitness": _nan(c.fitness),
        "perplexity": metric("perplexity"), "word_perplexity": metric("word_perplexity"),
        "bits_per_byte": metric("bits_per_byte"), "train_loss": metric("train_loss"),
        "recall_accuracy": metric("recall_accuracy"), "recall_loss": metric("recall_loss"),
        "recall_steps": r.recall_steps if r else 0, "recall_s": metric("recall_s"),
        "context_use": metric("context_use"),
        "stages": r.stages_completed if r else 0,
        "stage_perplexity": tuple(r.stage_perplexity) if r else (),
        "position_loss": tuple(r.position_loss) if r else (),
        "steps": r.steps if r else 0, "params": r.num_params if r else 0,
        "step_ms": 1000 * r.step_time_s if r else math.nan,
        "tokens_per_s": metric("tokens_per_s"), "compile_s": metric("compile_s"),
        "train_s": metric("train_s"), "eval_s": metric("eval_s"),
        "mutation": c.mutation, "kind": c.kind, "duplicate_of": c.duplicate_of,
        "reason": r.reason if r else "", "worker": c.worker,
        "created_at": c.created_at, "finished_at": c.finished_at,
    }


def _frame(rows: list[dict]) -> pandas.DataFrame:
    """Rows as a DataFrame; ids stay integers where a parent or an original is missing."""
    pd = _pandas()
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({"parent": "Int64", "duplicate_of": "Int64"})


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("Results.candidates() and lineage() return pandas DataFrames, and "
                          "pandas is not installed: pip install 'primer-search[dataframe]' "
                          "(or pandas>=2); the rows as dicts need no pandas: "
                          "Results.rows()") from None
    return pandas


class Results:
    """A search's store, read-only: its candidates as rows or a DataFrame, the best, a
    lineage, a program. Each call reads the store afresh, so a search that is still
    running shows what it has finished so far."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Results({os.fspath(self.path)!r})"

    def _open(self):
        from primer_search.search.store import Store

        return Store(self.path, readonly=True)

    @property
    def config(self) -> dict:
        """The config the search was started with, read by its version (a store written
        before config version 2 has its flat keys in their sections here)."""
        from primer_search.search.versions import upgrade

        with self._open() as store:
            return upgrade(store.config)

    def rows(self, kind: str = "search") -> list[dict[str, Any]]:
        """Every candidate of ``kind`` (``search``, or ``retrain`` for retraining runs)
        as a dict keyed by :data:`COLUMNS`, in id order."""
        with self._open() as store:
            return [candidate_row(c) for c in store.all() if c.kind == kind]

    def candidates(self, kind: str = "search") -> pandas.DataFrame:
        """:meth:`rows` as a pandas DataFrame indexed by id (needs pandas)."""
        return _frame(self.rows(kind)).set_index("id", drop=False)

    def best(self) -> dict[str, Any] | None:
        """The best finished candidate's row, ranked as ``primer-search top`` ranks (more
        hurdle stages first, then lower fitness; duplicates and failures excluded);
        None while nothing has finished."""
        with self._open() as store:
            top = store.top(1)
        return candidate_row(top[0]) if top else None

    def top(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` best rows, as ``primer-search top`` lists them."""
        with self._open() as store:
            return [candidate_row(c) for c in store.top(n)]

    def lineage(self, cid: int) -> pandas.DataFrame:
        """Candidate ``cid``, its parent, ... up to its seed, as a DataFrame (needs pandas)."""
        with self._open() as store:
            chain = store.lineage(cid)
        return _frame([candidate_row(c) for c in chain])

    def plot(self, figure: str = "fitness", ax=None, cid: int | None = None):
        """Draw one of the figures ``primer-search plot`` writes (see
        :func:`primer_search.plots.figures`: ``fitness``, ``population``, ``outcomes``,
        ``pareto_step_time``, ``pareto_params``, ``lineage`` of ``cid`` or of the best,
        ``tasks``) into ``ax`` (default: a new figure); returns the Axes. Needs matplotlib."""
        from primer_search import plots

        drawn = plots.figures(self.path, lineage_of=cid)
        if figure not in drawn:
            raise ValueError(f"no figure {figure!r} for {self.path}; expected one of "
                             f"{', '.join(drawn)}")
        if ax is None:
            _, ax = plots.plt.subplots(figsize=(9, 4))
        drawn[figure](ax)
        return ax

    def export(self, cid: int, out: str | os.PathLike, retrained: bool = False,
               d_model: int | None = None) -> dict[str, Path]:
        """Export candidate ``cid`` as a standalone Flax module in folder ``out``, as
        ``primer-search export STORE ID`` does (with the weights the store kept for it, or
        with ``retrained`` those of its best retraining run); returns the written paths by
        kind (``source``, ``dna``, ``weights``, ``config``, ...). Needs JAX and Flax."""
        import warnings

        from primer_search.export import export_candidate

        done = export_candidate(self.path, cid, out, retrained=retrained, d_model=d_model)
        for note in done.notes:
            warnings.warn(note, stacklevel=2)
        return done.paths

    def program(self, cid: int) -> DNA:
        """Candidate ``cid``'s program (``print`` it to read it as code)."""
        with self._open() as store:
            return store.get(cid).dna
