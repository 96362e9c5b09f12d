"""The search store: one SQLite file per search, every candidate a row.

The search loop writes every candidate to the store when it is proposed (:meth:`Store.add`,
status ``pending``) and every result before it acts on it (:meth:`Store.finish`,
:meth:`Store.mark_duplicate`). Each write is its own transaction, committed before the
method returns, so a process killed at any moment leaves the file in the state before or
after a write, never in between. On resume:

* :meth:`Store.finished` gives every completed evaluation in the order the population saw
  them (an explicit, gap-free ``finish_seq`` counter, not timestamps), to replay them;
* :meth:`Store.pending` gives the candidates that were in flight, to queue them again
  under their existing ids; a finished candidate can never be finished again, so a
  completed evaluation is neither lost nor repeated.

A store has one writer at a time and any number of readers:

* a writer (``Store(path, config)`` creates or reopens, ``Store(path)`` reopens only)
  holds the store's lease (:mod:`primer_search.search.lease`) while it is open, and a
  second writer is refused with a message naming the holder; a writer that brings no
  config never creates a store (a resume of a path that holds none creates nothing);
* while a writer has it open the file is in WAL mode: readers (the CLI, notebooks;
  ``Store(path, readonly=True)`` or any SQLite client) read committed rows without
  blocking it, and never take or wait for the lease. A writer that closes leaves one
  file (journal mode DELETE), which a reader opens without creating any;
* a new store is written whole, under a temporary name, and linked into place: its path
  is absent or a complete store, never an empty database;
* an SQLite error while writing (a full disk) is a :class:`StoreError` naming the store,
  and the transaction is rolled back; reading a damaged file is a :class:`StoreError`
  too, and a writer refuses a file that fails SQLite's ``quick_check``.

Schema (``SCHEMA_VERSION`` 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)       -- format, schema_version, config, created_at,
                                                 -- writer (the last writer's host, pid, start)
    resumes(seq INTEGER PRIMARY KEY, at REAL, overrides TEXT)  -- each resume, its --set
    candidates(
        id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- increasing, never reused
        parent_id    INTEGER REFERENCES candidates(id),
        mutation     TEXT NOT NULL,
        kind         TEXT NOT NULL,            -- 'search' | 'retrain'
        dna          BLOB NOT NULL,            -- DNA.to_bytes() (msgpack)
        dna_text     TEXT NOT NULL,            -- str(dna) at insert time
        dna_hash     TEXT NOT NULL,
        fingerprint  TEXT,
        seed         INTEGER NOT NULL,
        status       TEXT NOT NULL,            -- 'pending', an EvalResult status, 'duplicate'
        fitness      REAL,                     -- NULL while pending (and for NaN); inf stored as inf
        result       TEXT,                     -- EvalResult as strict JSON; NULL while pending
        duplicate_of INTEGER REFERENCES candidates(id),
        worker       TEXT,
        node         TEXT,
        created_at   REAL NOT NULL,
        finished_at  REAL,
        finish_seq   INTEGER UNIQUE            -- 1, 2, 3 ... in finishing order; NULL while pending
    )

``fitness`` is a plain REAL column for sorting and SQL queries (SQLite keeps ``inf``
exactly; NaN becomes NULL). The exact value, like every other metric, lives in ``result``,
which is strict JSON (non-finite floats are written as the strings ``"inf"``, ``"-inf"``,
``"nan"``, so SQLite's ``json_extract`` and any JSON reader accept it) and is decoded back
to an identical :class:`EvalResult`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Self

from primer_search.fitness.results import EvalResult, Status
from primer_search.program.dna import DNA
from primer_search.search.lease import LeaseError, WriterLease

__all__ = ["KINDS", "SCHEMA_VERSION", "Candidate", "Store", "StoreError"]

SCHEMA_VERSION = 1
FORMAT = "primer-search/store"
KINDS = ("search", "retrain")
BUSY_TIMEOUT_S = 30.0


class StoreError(ValueError):
    """A store cannot be opened, or an operation on it is not allowed."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One row of the store, typed."""

    id: int
    parent_id: int | None
    mutation: str
    kind: str
    dna: DNA
    dna_text: str
    dna_hash: str
    fingerprint: str | None
    status: Status
    fitness: float | None
    result: EvalResult | None
    duplicate_of: int | None
    seed: int
    worker: str | None
    node: str | None
    created_at: float
    finished_at: float | None


# ---- EvalResult <-> strict JSON ----------------------------------------------------------

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_FLOAT_FIELDS = frozenset(f.name for f in dataclasses.fields(EvalResult) if "float" in str(f.type))
_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(EvalResult))


def _encode_float(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _decode_float(x):
    return _NONFINITE[x] if isinstance(x, str) and x in _NONFINITE else x


def _result_to_json(result: EvalResult) -> str:
    d = result.to_dict()
    for name in _FLOAT_FIELDS:
        v = d.get(name)
        d[name] = [_encode_float(x) for x in v] if isinstance(v, list) else _encode_float(v)
    return json.dumps(d, allow_nan=False, separators=(",", ":"))


def _result_from_json(text: str) -> EvalResult:
    d = json.loads(text)
    for name in _FLOAT_FIELDS & d.keys():
        v = d[name]
        d[name] = [_decode_float(x) for x in v] if isinstance(v, list) else _decode_float(v)
    # Tolerate fields written by another version of EvalResult that this one lacks.
    return EvalResult.from_dict({k: v for k, v in d.items() if k in _RESULT_FIELDS})


def _normalise_config(config: dict, path) -> dict:
    if not isinstance(config, dict):
        raise StoreError(f"store {path}: config must be a dict, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise StoreError(f"store {path}: config is not JSON-serialisable ({e})") from None


def _config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(old.keys() | new.keys()):
            name = f"{prefix}{key}"
            if key not in old or key not in new:
                out.append(name)
            else:
                out.extend(_config_diff(old[key], new[key], f"{name}."))
        return out
    return [] if old == new else [prefix[:-1] or "<config>"]


_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE candidates (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id    INTEGER REFERENCES candidates(id),
    mutation     TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('search', 'retrain')),
    dna          BLOB NOT NULL,
    dna_text     TEXT NOT NULL,
    dna_hash     TEXT NOT NULL,
    fingerprint  TEXT,
    seed         INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    fitness      REAL,
    result       TEXT,
    duplicate_of INTEGER REFERENCES candidates(id),
    worker       TEXT,
    node         TEXT,
    created_at   REAL NOT NULL,
    finished_at  REAL,
    finish_seq   INTEGER UNIQUE,
    CHECK ((status = 'pending') = (finish_seq IS NULL)),
    CHECK ((status = 'pending') = (result IS NULL))
);
CREATE INDEX candidates_status ON candidates(status);
CREATE INDEX candidates_fitness ON candidates(fitness);
CREATE INDEX candidates_fingerprint ON candidates(fingerprint);
CREATE INDEX candidates_parent ON candidates(parent_id);
CREATE INDEX candidates_kind_status ON candidates(kind, status);
"""

# Tables added after schema version 1 was first written; created on open if missing.
_ADDED_TABLES = {
    "resumes": """
CREATE TABLE IF NOT EXISTS resumes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        REAL NOT NULL,
    overrides TEXT NOT NULL
)""",
    # The budget a retrain row trained under ("3000 steps"), so that retraining the same
    # candidates longer adds runs instead of finding the shorter ones done.
    "retrains": """
CREATE TABLE IF NOT EXISTS retrains (
    candidate_id INTEGER PRIMARY KEY REFERENCES candidates(id),
    budget       TEXT NOT NULL
)""",
    # The fitness settings a budget's runs trained under (a ladder rung's, by its label),
    # so that a rung whose settings were edited is not found done by its old runs.
    "budget_settings": """
CREATE TABLE IF NOT EXISTS budget_settings (
    budget  TEXT PRIMARY KEY,
    fitness TEXT NOT NULL
)""",
}

_COLUMNS = ("id, parent_id, mutation, kind, dna, dna_text, dna_hash, fingerprint, status, "
            "result, duplicate_of, seed, worker, node, created_at, finished_at")


class Store:
    """One search's candidates in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, config: dict | None = None, *,
                 readonly: bool = False, idle_immutable: bool = False):
        """``readonly``: read only (SQLite ``mode=ro``), never take the lease or write.
        ``idle_immutable`` (with ``readonly``): a store in WAL mode that no writer has
        open (no ``-wal`` file beside it, which a writer keeps while it is open; another
        SQLite client can leave a store so) is opened ``immutable``, so that reading it
        creates no ``-wal`` or ``-shm`` file as a ``mode=ro`` reader otherwise would. Such a
        connection does not see a writer that starts later: for readers that open the
        store afresh for each read (the dashboard)."""
        self.path = Path(path)
        self.readonly = readonly
        self._idle_immutable = readonly and idle_immutable
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._lease: WriterLease | None = None
        self._wal = False
        new_config = None if config is None else _normalise_config(config, self.path)
        try:
            if not readonly:
                self._lease = self._take_lease(new_config)
                if not self.path.exists():
                    self._create(new_config)
                elif self.path.stat().st_size == 0:   # stores are created whole
                    raise StoreError(f"{self.path} is not a primer-search store (empty "
                                     "database); nothing was written to it")
            self._conn = self._connect()
            self.config = self._check(new_config)
        except sqlite3.Error as e:
            self.close()
            raise StoreError(f"cannot open {self.path} as a primer-search store "
                             f"({type(e).__name__}: {e})") from None
        except BaseException:
            self.close()
            raise

    # ---- opening ---------------------------------------------------------------------

    def _take_lease(self, config: dict | None) -> WriterLease:
        """The writer's lease (:mod:`primer_search.search.lease`). Only a writer that
        brings a config may create a store: a resume (config None) of a path that holds
        none creates nothing, not even the lease's file."""
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"store {self.path} exists and is not a file")
        if not self.path.exists():
            if config is None:
                raise StoreError(f"store {self.path} does not exist (a resume never creates "
                                 "a store; check the path, or start a new search from a "
                                 "CONFIG)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return WriterLease(self.path)
        except LeaseError as e:
            raise StoreError(str(e)) from None

    def _create(self, config: dict) -> None:
        """Write a new store whole: the schema and meta are committed under a temporary
        name and the file is then linked into place, so that ``self.path`` is either
        absent or a complete store, never an empty database a reader could open."""
        tmp = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}")
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                for sql in _ADDED_TABLES.values():
                    conn.execute(sql)
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                    ("format", FORMAT),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("config", json.dumps(config, sort_keys=True)),
                    ("created_at", repr(time.time())),
                ])
                conn.execute("COMMIT")
            finally:
                conn.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)   # fails if the path appeared meanwhile
            except FileExistsError:
                raise StoreError(f"store {self.path} appeared while this one was being "
                                 "created; it was left as it is") from None
            except OSError:               # a file system without hard links
                if self.path.exists():
                    raise StoreError(f"store {self.path} appeared while this one was being "
                                     "created; it was left as it is") from None
                os.rename(tmp, self.path)
            _fsync_dir(self.path.parent)
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path} could not be created ({e})") from None
        finally:
            for leftover in (tmp, Path(f"{tmp}-journal")):
                leftover.unlink(missing_ok=True)

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.is_file():
                raise StoreError(f"store {self.path} does not exist (opening read-only never "
                                 "creates one)")
            uri = self.path.resolve().as_uri() + "?mode=ro"
            if self._idle_immutable and _idle_in_wal_mode(self.path):
                uri += "&immutable=1"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _start_writing(self) -> None:
        """Switch a writer's connection to WAL, once the file has been found sound."""
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"store {self.path}: could not switch to WAL mode "
                             f"(journal mode is {mode!r})")
        self._wal = True
        # FULL: a committed result survives power loss too; writes are rare.
        self._conn.execute("PRAGMA synchronous = FULL")

    def _read_meta(self) -> dict[str, str] | None:
        tables = {r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables - {"sqlite_sequence"}:
                raise StoreError(f"{self.path} is an SQLite file but not a primer-search store "
                                 f"(no meta table; tables: {', '.join(sorted(tables))})")
            return None
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _check_meta(self, meta: dict[str, str]) -> dict:
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.path} is not a primer-search store (format "
                             f"{meta.get('format')!r}, expected {FORMAT!r})")
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise StoreError(f"store {self.path} has schema version {version!r}; this version "
                             f"of primer-search reads schema version {SCHEMA_VERSION}")
        try:
            stored = json.loads(meta["config"])
        except (KeyError, ValueError) as e:
            raise StoreError(f"store {self.path}: unreadable config in meta table ({e})") from None
        return stored

    def _check(self, config: dict | None) -> dict:
        meta = self._read_meta()
        if meta is None:
            # Stores are created whole (see _create): an empty database is not one.
            raise StoreError(f"{self.path} is not a primer-search store (empty database)")
        stored = self._check_meta(meta)
        if config is not None and config != stored:
            keys = _config_diff(stored, config)
            raise StoreError(f"store {self.path} was created with a different config; "
                             f"differing keys: {', '.join(keys)} (resume with the same config, "
                             "or pass config=None to use the stored one)")
        if not self.readonly:
            # A writer appends to what it finds: a damaged file is refused, not extended.
            problems = [r[0] for r in self._conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise StoreError(f"store {self.path} is damaged ({'; '.join(problems)}); "
                                 "nothing was written to it")
            self._start_writing()
            missing = [sql for name, sql in _ADDED_TABLES.items() if not self._has_table(name)]
            with self._write() as conn:
                for sql in missing:
                    conn.execute(sql)
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('writer', ?)",
                             (json.dumps(self._lease.holder, sort_keys=True),))
        return stored

    # ---- transactions ----------------------------------------------------------------

    def _write(self):
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only")
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return _Transaction(self._conn, self._lock, self.path)

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"store {self.path} cannot be read ({type(e).__name__}: "
                                 f"{e}); the file is damaged or not a complete store") from None

    # ---- writing ---------------------------------------------------------------------

    def add(self, *, dna: DNA, parent_id: int | None, mutation: str, dna_hash: str,
            fingerprint: str | None = None, kind: str = "search", seed: int = 0,
            budget: str | None = None) -> int:
        """Insert a pending candidate (committed immediately); return its id. A
        ``retrain`` row names the ``budget`` it trains under (in the same transaction)."""
        if not isinstance(dna, DNA):
            raise StoreError(f"add: dna must be a DNA, got {type(dna).__name__}")
        if kind not in KINDS:
            raise StoreError(f"add: kind must be one of {KINDS}, got {kind!r}")
        if (budget is not None) != (kind == "retrain"):
            raise StoreError(f"add: a retrain row names its budget and a search row does "
                             f"not; got kind {kind!r} with budget {budget!r}")
        blob, text = dna.to_bytes(), str(dna)
        with self._write() as conn:
            if parent_id is not None and not conn.execute(
                    "SELECT 1 FROM candidates WHERE id = ?", (parent_id,)).fetchone():
                raise StoreError(f"add: parent candidate {parent_id} is not in store {self.path}")
            cur = conn.execute(
                "INSERT INTO candidates (parent_id, mutation, kind, dna, dna_text, dna_hash, "
                "fingerprint, seed, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (parent_id, str(mutation), kind, blob, text, str(dna_hash), fingerprint,
                 int(seed), Status.PENDING, time.time()))
            if budget is not None:
                conn.execute("INSERT INTO retrains (candidate_id, budget) VALUES (?, ?)",
                             (cur.lastrowid, str(budget)))
            return cur.lastrowid

    def set_fingerprint(self, cid: int, fingerprint: str | None) -> None:
        """Record the fingerprint of pending ``cid``, computed after it was added."""
        with self._write() as conn:
            cur = conn.execute("UPDATE candidates SET fingerprint = ? WHERE id = ? AND status = ?",
                               (fingerprint, cid, Status.PENDING))
            if cur.rowcount != 1:
                raise StoreError(f"set_fingerprint: candidate {cid} is not a pending candidate "
                                 f"of store {self.path}")

    def _finish(self, conn, cid: int, status: str, result: EvalResult, duplicate_of,
                worker, node) -> None:
        row = conn.execute("SELECT status FROM candidates WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise StoreError(f"candidate {cid} is not in store {self.path}")
        if row[0] != Status.PENDING:
            raise StoreError(f"candidate {cid} is already finished (status {row[0]!r}); a "
                             "completed evaluation is never overwritten")
        seq = conn.execute("SELECT COALESCE(MAX(finish_seq), 0) + 1 FROM candidates").fetchone()[0]
        fitness = None if math.isnan(result.fitness) else float(result.fitness)
        conn.execute(
            "UPDATE candidates SET status = ?, fitness = ?, result = ?, duplicate_of = ?, "
            "worker = ?, node = ?, finished_at = ?, finish_seq = ? WHERE id = ?",
            (status, fitness, _result_to_json(result), duplicate_of, worker, node, time.time(),
             seq, cid))

    @staticmethod
    def _check_result(result: EvalResult, where: str) -> None:
        if not isinstance(result, EvalResult):
            raise StoreError(f"{where}: result must be an EvalResult, got "
                             f"{type(result).__name__}")
        if not result.status.is_evaluation():
            raise StoreError(f"{where}: {result.status.value!r} is not an evaluation status")

    def finish(self, cid: int, result: EvalResult, *, worker: str | None = None,
               node: str | None = None) -> None:
        """Record the result of a pending candidate, in one transaction."""
        self._check_result(result, f"finish({cid})")
        with self._write() as conn:
            self._finish(conn, cid, result.status, result, None, worker, node)

    def mark_duplicate(self, cid: int, of: int, result: EvalResult) -> None:
        """Finish pending ``cid`` with status ``duplicate``, reusing candidate ``of``'s result.

        ``result`` is recorded as this candidate's result (normally ``of``'s own). ``of``
        must be finished; if it is itself a duplicate, the link goes to its original.
        """
        self._check_result(result, f"mark_duplicate({cid}, of={of})")
        with self._write() as conn:
            row = conn.execute("SELECT status, duplicate_of FROM candidates WHERE id = ?",
                               (of,)).fetchone()
            if row is None:
                raise StoreError(f"mark_duplicate({cid}): candidate {of} is not in store "
                                 f"{self.path}")
            if row[0] == Status.PENDING:
                raise StoreError(f"mark_duplicate({cid}): candidate {of} is still pending; "
                                 "only a finished result can be reused")
            original = row[1] if row[0] == Status.DUPLICATE else of
            if original == cid:
                raise StoreError(f"mark_duplicate({cid}): a candidate cannot duplicate itself")
            self._finish(conn, cid, Status.DUPLICATE, result, original, None, None)

    # ---- reading ---------------------------------------------------------------------

    @staticmethod
    def _candidate(row: tuple) -> Candidate:
        (cid, parent_id, mutation, kind, blob, dna_text, dna_hash, fingerprint, status,
         result_json, duplicate_of, seed, worker, node, created_at, finished_at) = row
        result = None if result_json is None else _result_from_json(result_json)
        return Candidate(
            id=cid, parent_id=parent_id, mutation=mutation, kind=kind,
            dna=DNA.from_bytes(blob), dna_text=dna_text, dna_hash=dna_hash,
            fingerprint=fingerprint, status=Status(status),
            fitness=None if result is None else result.fitness, result=result,
            duplicate_of=duplicate_of, seed=seed, worker=worker, node=node,
            created_at=created_at, finished_at=finished_at)

    def _select(self, where: str = "", params: tuple = (), order: str = "id",
                limit: int | None = None) -> list[Candidate]:
        sql = f"SELECT {_COLUMNS} FROM candidates"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self._query(sql, params):
            try:
                out.append(self._candidate(row))
            except (ValueError, TypeError, KeyError) as e:   # DNAError is a ValueError
                raise StoreError(f"store {self.path}: candidate {row[0]} cannot be decoded "
                                 f"({e}); the file is damaged") from None
        return out

    def get(self, cid: int) -> Candidate:
        rows = self._select("id = ?", (cid,))
        if not rows:
            raise StoreError(f"candidate {cid} is not in store {self.path}")
        return rows[0]

    def pending(self, kind: str = "search") -> list[Candidate]:
        """Unfinished candidates of ``kind`` (those in flight at a crash), in id order. A
        search resumes its own; a retrain finds its own by budget (:meth:`retrain_rows`)."""
        return self._select("kind = ? AND status = ?", (kind, Status.PENDING))

    def ids(self, kind: str = "search") -> list[int]:
        """The ids of every candidate of ``kind``, finished or not, in id order: for a
        search, the order its proposals were made in."""
        return [r[0] for r in self._query(
            "SELECT id FROM candidates WHERE kind = ? ORDER BY id", (kind,))]

    def finished(self, kind: str = "search") -> list[Candidate]:
        """Finished candidates of ``kind`` (duplicates included) in finishing order."""
        return self._select("kind = ? AND status != ?", (kind, Status.PENDING), order="finish_seq")

    def all(self) -> list[Candidate]:
        return self._select()

    def count(self, status: str | None = None, kind: str = "search") -> int:
        if status is None:
            sql, params = "SELECT COUNT(*) FROM candidates WHERE kind = ?", (kind,)
        else:
            sql = "SELECT COUNT(*) FROM candidates WHERE kind = ? AND status = ?"
            params = (kind, status)
        return self._query(sql, params)[0][0]

    def top(self, n: int = 10, kind: str = "search") -> list[Candidate]:
        """The ``n`` best finished candidates, duplicates excluded, ranked as evolution
        ranks them (:func:`primer_search.fitness.hurdles.rank_key`): finite fitness only, more
        hurdle stages completed first, then lower fitness."""
        return self._select(
            "kind = ? AND status NOT IN (?, ?) AND fitness IS NOT NULL "
            "AND fitness > -9e999 AND fitness < 9e999",
            (kind, Status.PENDING, Status.DUPLICATE),
            order="json_array_length(result, '$.stage_fitness') DESC, fitness, finish_seq",
            limit=max(0, n))

    def retrain_rows(self, budget: str | None = None) -> list[Candidate]:
        """The ``retrain`` rows (any status) that trained under ``budget``; every one
        when it is None."""
        if budget is None:
            return self._select("kind = 'retrain'")
        if not self._has_table("retrains"):  # a store opened read-only from before budgets
            return []
        return self._select("kind = 'retrain' AND id IN (SELECT candidate_id FROM retrains "
                            "WHERE budget = ?)", (budget,))

    def retrain_budgets(self) -> list[str]:
        """Every budget (or ladder rung label) that retrain rows trained under."""
        if not self._has_table("retrains"):
            return []
        return [b for (b,) in self._query(
            "SELECT DISTINCT budget FROM retrains WHERE budget IS NOT NULL ORDER BY budget")]

    def seed_copies(self) -> list[Candidate]:
        """The first trained copy of each seed block in the search (its mutation is
        exactly ``seed:NAME``, not a mutated seed), in id order."""
        first: dict[str, Candidate] = {}
        for c in self._select("kind = 'search' AND mutation LIKE 'seed:%' AND status = ? "
                              "AND instr(mutation, ';') = 0", (Status.OK,)):
            first.setdefault(c.mutation, c)
        return list(first.values())

    def retrain_budget(self, cid: int) -> str | None:
        """The budget the ``retrain`` row ``cid`` trained under (None: not recorded)."""
        if not self._has_table("retrains"):
            return None
        rows = self._query("SELECT budget FROM retrains WHERE candidate_id = ?", (cid,))
        return rows[0][0] if rows else None

    def retrain_runs(self, budget: str | None = None) -> list[tuple[int | None, str | None, float]]:
        """Every finished ``retrain`` row as (the retrained candidate, its budget label,
        its fitness), in id order; only ``budget``'s when it is given. The budget is None
        for rows written before budgets were recorded. Their statistics are
        :func:`primer_search.stats.summarise_retrains`'s."""
        # A store opened read-only from before budgets were recorded has no retrains table.
        joined = self._has_table("retrains")
        if budget is not None and not joined:
            return []
        where = "" if budget is None else "AND r.budget = ? "
        params = (Status.PENDING, Status.DUPLICATE) + (() if budget is None else (budget,))
        sql = ("SELECT c.parent_id, r.budget, c.result FROM candidates c LEFT JOIN retrains r "
               "ON r.candidate_id = c.id " if joined else
               "SELECT c.parent_id, NULL, c.result FROM candidates c ")
        return [(parent_id, row_budget, _result_from_json(result_json).fitness)
                for parent_id, row_budget, result_json in self._query(
                    sql + f"WHERE c.kind = 'retrain' AND c.status NOT IN (?, ?) {where}"
                    "ORDER BY c.id", params)]

    def lineage(self, cid: int) -> list[Candidate]:
        """``cid``, its parent, grandparent ... up to a root (a candidate with no parent)."""
        chain = [self.get(cid)]
        seen = {cid}
        while chain[-1].parent_id is not None:
            pid = chain[-1].parent_id
            if pid in seen:   # impossible through add(); guards a hand-edited file
                raise StoreError(f"store {self.path}: lineage of {cid} has a cycle at {pid}")
            seen.add(pid)
            chain.append(self.get(pid))
        return chain

    def summaries(self, kind: str = "search") -> list[dict[str, Any]]:
        """Every candidate of ``kind`` without its program, in id order, for readers
        that show many rows often (the dashboard): decoding no DNA, it is several times
        faster than :meth:`all`. Keys: ``id``, ``parent_id``, ``mutation``, ``status``
        (a :class:`Status`), ``fitness``, ``result`` (an :class:`EvalResult` or None),
        ``duplicate_of``, ``worker``, ``node``, ``created_at``, ``finished_at``,
        ``finish_seq``."""
        out = []
        for (cid, parent_id, mutation, status, result_json, duplicate_of, worker, node,
             created_at, finished_at, finish_seq) in self._query(
                "SELECT id, parent_id, mutation, status, result, duplicate_of, worker, node, "
                "created_at, finished_at, finish_seq FROM candidates WHERE kind = ? ORDER BY id",
                (kind,)):
            try:
                result = None if result_json is None else _result_from_json(result_json)
                out.append({"id": cid, "parent_id": parent_id, "mutation": mutation,
                            "status": Status(status),
                            "fitness": None if result is None else result.fitness,
                            "result": result, "duplicate_of": duplicate_of, "worker": worker,
                            "node": node, "created_at": created_at, "finished_at": finished_at,
                            "finish_seq": finish_seq})
            except (ValueError, TypeError, KeyError) as e:
                raise StoreError(f"store {self.path}: candidate {cid} cannot be decoded "
                                 f"({e}); the file is damaged") from None
        return out

    def change_token(self) -> tuple[int, int, int]:
        """``(rows, last id, last finish_seq)``: changes whenever a candidate is added or
        finished, so that a reader polling the store can tell that nothing did."""
        count, last_id, last_seq = self._query(
            "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(MAX(finish_seq), 0) "
            "FROM candidates")[0]
        return count, last_id, last_seq

    def reusable_by_fingerprint(self, fingerprint: str) -> Candidate | None:
        """The earliest finished ``search`` candidate with this fingerprint whose result a
        functional duplicate may take (:meth:`Status.is_reusable`: not a duplicate
        itself, and not a failure of the moment such as a time-out)."""
        reusable = [s.value for s in Status if s.is_reusable()]
        marks = ", ".join("?" * len(reusable))
        rows = self._select(f"fingerprint = ? AND kind = 'search' AND status IN ({marks})",
                            (fingerprint, *reusable), order="finish_seq", limit=1)
        return rows[0] if rows else None

    # ---- resumes ---------------------------------------------------------------------

    def record_resume(self, overrides: dict) -> None:
        """Note that the search was resumed, with the overrides it was given."""
        with self._write() as conn:
            conn.execute("INSERT INTO resumes (at, overrides) VALUES (?, ?)",
                         (time.time(), json.dumps(overrides, sort_keys=True)))

    def resumes(self) -> list[dict]:
        """Every resume so far, oldest first: ``{"at": unix time, "overrides": dict}``."""
        if not self._has_table("resumes"):
            return []
        return [{"at": at, "overrides": json.loads(text)} for at, text in self._query(
            "SELECT at, overrides FROM resumes ORDER BY seq")]

    def budget_settings(self, budget: str) -> dict | None:
        """The fitness settings (as JSON loads them) that ``budget``'s runs trained under,
        as :meth:`record_budget_settings` first wrote them; None if never recorded."""
        if not self._has_table("budget_settings"):
            return None
        rows = self._query("SELECT fitness FROM budget_settings WHERE budget = ?", (budget,))
        return json.loads(rows[0][0]) if rows else None

    def record_budget_settings(self, budget: str, fitness: dict) -> None:
        """Record the fitness settings of ``budget``'s runs; the first record stays."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO budget_settings (budget, fitness) VALUES (?, ?)",
                         (budget, json.dumps(fitness, sort_keys=True)))

    def _has_table(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)))

    # ---- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the file; a writer leaves it as one file (journal mode DELETE, when no
        reader has it open), so that a reader of a closed store creates no ``-wal`` or
        ``-shm`` file, and then releases its lease."""
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                if self._wal:
                    try:
                        conn.execute("PRAGMA busy_timeout = 0")  # never wait for readers
                        conn.execute("PRAGMA journal_mode = DELETE")
                    except sqlite3.Error:
                        pass  # a reader has it open, or the file is damaged: stays WAL
                conn.close()
        finally:
            lease, self._lease = self._lease, None
            if lease is not None:
                lease.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "readwrite"
        return f"Store({str(self.path)!r}, {mode})"


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception), under a lock.

    An SQLite error (a full disk, an I/O error, a damaged file) becomes a
    :class:`StoreError` that names the store: the transaction was rolled back, so the
    file holds every earlier write and none of this one."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock, path: Path):
        self.conn, self.lock, self.path = conn, lock, path

    def _failed(self, e: sqlite3.Error) -> StoreError:
        return StoreError(f"store {self.path}: a write failed ({type(e).__name__}: {e}); the "
                          "store keeps every write before it and none of this one: fix the "
                          "cause (free disk space) and resume")

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self.lock.release()
            raise self._failed(e) from e
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolls back an unfinished transaction itself

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error as e:
                    self._rollback()
                    raise self._failed(e) from e
                except BaseException:
                    self._rollback()
                    raise
            else:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._failed(exc) from exc
        finally:
            self.lock.release()


def _idle_in_wal_mode(path: Path) -> bool:
    """The file's header says WAL mode (read and write versions 2) and there is no
    ``-wal`` file, so no writer has it open."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return header[18:20] == b"\x02\x02" and not Path(f"{path}-wal").exists()


def _fsync_dir(folder: Path) -> None:
    """Make a new directory entry durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
