"""Faults: what a search and a retrain do when the disk fills, a store is damaged, a
second writer arrives, a worker or the driver is killed, or a config is nonsense.

Each fault is injected where it happens (the write that fails, the process that is
killed, the bytes that are wrong), and each test checks the same three things: the
command stops or goes on with one clear line, no candidate that finished is lost, and no
row is invented (ids stay 1..N with no gaps, every one finished once).
"""

import errno
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from toys import TOY_LOOP, seed_store

from primer_search.cli import main
from primer_search.fitness.toy import ToyEvaluator
from primer_search.program import seeds
from primer_search.retrain import retrain
from primer_search.search import loop as loop_module
from primer_search.search.config import (
    ConfigError,
    SearchConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from primer_search.search.dispatch import run_jobs
from primer_search.search.loop import SearchLoop, weights_folder
from primer_search.search.pool import Done, InProcessPool, Job, ProcessPool
from primer_search.search.store import Store, StoreError

TOY = [*TOY_LOOP, "dedup=false", "pool.prepare_ahead=0"]


def toy_config(*overrides) -> SearchConfig:
    return load_config("tiny_cpu", TOY + list(overrides))


def search(store: Store, cfg: SearchConfig, pool=None):
    pool = pool or InProcessPool(ToyEvaluator(cfg.pool.toy_sleep_s))
    return SearchLoop(cfg, store, pool).run()


def snapshot(path) -> dict:
    """Every finished row of a store: id -> (status, result, finish order)."""
    with Store(path, readonly=True) as store:
        return {c.id: (c.status, c.result, c.kind, c.parent_id, c.seed)
                for c in store.all() if c.status != "pending"}


def check_whole(path, n: int, kind: str = "search") -> None:
    """No row invented, none lost: ids 1..n of ``kind``, every one finished once, and
    SQLite finds the file sound."""
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with Store(path, readonly=True) as store:
        rows = [c for c in store.all() if c.kind == kind]
        assert len(rows) == n and store.pending() == []
        seqs = [c.id for c in store.finished(kind)]
        assert sorted(seqs) == [c.id for c in rows] and len(set(seqs)) == n
    if kind == "search":
        assert [c.id for c in rows] == list(range(1, n + 1))


def one_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("primer-search: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---- a resume never invents a search ---------------------------------------------------

def test_a_missing_resume_path_creates_no_file_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--set", "limits.max_candidates=40"]):
        assert main(["search", "--resume", "nosuch.sqlite", "--quiet", *extra]) == 1
        one_error_line(capsys.readouterr().err, "nosuch.sqlite", "does not exist")
    assert list(tmp_path.iterdir()) == []
    for command in (["top", "nosuch.sqlite"], ["show", "nosuch.sqlite", "1"],
                    ["retrain", "nosuch.sqlite"]):
        assert main(command) == 1
        one_error_line(capsys.readouterr().err, "nosuch.sqlite")
    assert list(tmp_path.iterdir()) == []


# ---- one writer per store ----------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from primer_search.fitness.toy import ToyEvaluator
    from primer_search.search.config import config_to_dict, load_config
    from primer_search.search.loop import SearchLoop
    from primer_search.search.pool import InProcessPool
    from primer_search.search.store import Store

    cfg = load_config("tiny_cpu", sys.argv[2:])
    with Store(sys.argv[1], config_to_dict(cfg)) as store:
        SearchLoop(cfg, store, InProcessPool(ToyEvaluator(cfg.pool.toy_sleep_s))).run()
""")


def wait_for(predicate, what: str, proc=None, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def finished_count(path, kind: str = "search") -> int:
    if not path.exists():
        return 0
    with Store(path, readonly=True) as store:
        return store.count(kind=kind) - store.count("pending", kind=kind)


def test_a_second_writer_is_refused_while_the_first_runs_and_accepted_after_sigkill(
        tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    overrides = [*TOY, "pool.toy_sleep_s=0.2", "limits.max_candidates=30"]
    first = subprocess.Popen([sys.executable, "-c", WRITER, str(path), *overrides],
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: finished_count(path) >= 3, "3 finished candidates", first)
        # The reproduction: a resume of the same file while the first writes.
        assert main(["search", "--resume", str(path), "--quiet", "--set",
                     "limits.max_candidates=40"]) == 1
        one_error_line(capsys.readouterr().err, str(path), f"pid {first.pid}",
                       "one writer at a time")
        assert main(["retrain", str(path), "--top", "2", "--seeds", "1"]) == 1
        one_error_line(capsys.readouterr().err, f"pid {first.pid}")
        assert main(["top", str(path)]) == 0            # readers are never blocked
        capsys.readouterr()
        with Store(path, readonly=True) as store:
            assert store.resumes() == [] and store.count(kind="retrain") == 0
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    before = snapshot(path)
    with Store(path) as store:                          # accepted at once
        cfg = config_from_dict(store.config)
        summary = search(store, cfg)
    assert summary.finished == 30
    check_whole(path, 30)
    after = snapshot(path)
    assert {cid: after[cid] for cid in before} == before   # nothing finished is lost


# ---- the disk fills up -------------------------------------------------------------------

def test_disk_full_while_the_store_is_written(tmp_path):
    """SQLite's own page limit makes a real SQLITE_FULL at the write: the search stops
    with a StoreError that says so, the transaction is rolled back, and a resume
    continues to the limit with every earlier result intact."""
    path = tmp_path / "s.sqlite"
    cfg = toy_config("limits.max_candidates=40")
    with Store(path, config_to_dict(cfg)) as store:
        search(store, toy_config("limits.max_candidates=10"))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StoreError, match="a write failed.*full") as e:
            search(store, cfg)
        assert str(path) in str(e.value) and "resume" in str(e.value)
    before = snapshot(path)
    assert 10 <= len(before) < 40
    with Store(path) as store:
        assert search(store, cfg).finished == 40
    check_whole(path, 40)
    after = snapshot(path)
    assert {cid: after[cid] for cid in before} == before


class _WeightsPool(InProcessPool):
    """The toy fitness, answering with weights: the bytes of the candidate's id."""

    def wait(self, timeout_s):
        return [(slot, Done(o.cid, o.result, weights=weights_of(o.cid), worker=o.worker))
                if isinstance(o, Done) else (slot, o) for slot, o in super().wait(timeout_s)]


def weights_of(cid: int) -> bytes:
    return str(cid).encode() * 4096


def test_disk_full_while_a_weights_file_is_written(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    cfg = toy_config("limits.max_candidates=30", "limits.keep_weights=3")
    real_open, writes = open, []

    class FullDisk:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def filling_open(file, mode="r", *args, **kw):
        f = real_open(file, mode, *args, **kw)
        writes.append(file)
        return FullDisk(f) if len(writes) > 4 else f

    monkeypatch.setattr(loop_module, "open", filling_open, raising=False)
    with Store(path, config_to_dict(cfg)) as store:
        with pytest.raises(StoreError, match="could not be written.*No space left") as e:
            search(store, cfg, _WeightsPool(ToyEvaluator()))
        assert "its result is in the store" in str(e.value)
    monkeypatch.undo()
    folder = weights_folder(path)
    assert not list(folder.glob("*.tmp"))               # no partial file left
    for kept in folder.glob("*.msgpack"):               # every kept file is whole
        assert kept.read_bytes() == weights_of(int(kept.stem))
    before = snapshot(path)
    with Store(path) as store:
        assert search(store, cfg, _WeightsPool(ToyEvaluator())).finished == 30
        best = {c.id for c in store.top(3)}
    check_whole(path, 30)
    after = snapshot(path)
    assert {cid: after[cid] for cid in before} == before
    assert {int(p.stem) for p in folder.glob("*.msgpack")} <= best


# ---- a damaged store ---------------------------------------------------------------------

def _damage(data: bytes, how: str) -> bytes:
    rng = random.Random(how)
    if how == "truncated to half":
        return data[:len(data) // 2]
    if how == "truncated to 100 bytes":
        return data[:100]
    if how == "garbage":
        return rng.randbytes(len(data))
    if how == "garbage over the middle":
        mid = len(data) // 2
        return data[:mid] + rng.randbytes(8192) + data[mid + 8192:]
    if how == "empty":
        return b""
    raise ValueError(how)


DAMAGES = ("truncated to half", "truncated to 100 bytes", "garbage",
           "garbage over the middle", "empty")


@pytest.fixture(scope="module")
def sound_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sound") / "s.sqlite"
    cfg = toy_config("limits.max_candidates=60")
    with Store(path, config_to_dict(cfg)) as store:
        search(store, cfg)
    return path


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_store_is_one_clear_line(tmp_path, capsys, sound_store, how):
    path = tmp_path / "d.sqlite"
    path.write_bytes(_damage(sound_store.read_bytes(), how))
    damaged = path.read_bytes()
    # Writers refuse it and write nothing; readers either read what is sound or stop
    # with one line. Never a traceback.
    for command in (["search", "--resume", str(path), "--quiet"],
                    ["retrain", str(path), "--top", "2", "--seeds", "1"]):
        assert main(command) == 1, command
        one_error_line(capsys.readouterr().err, str(path))
    for command in (["top", str(path)], ["show", str(path), "30"],
                    ["lineage", str(path), "50"], ["top", str(path), "--json"]):
        code = main(command)
        captured = capsys.readouterr()
        assert code in (0, 1), command
        if code:
            one_error_line(captured.err, str(path))
        assert "Traceback" not in captured.err
    assert path.read_bytes() == damaged                   # nothing wrote to it


# ---- retraining: a hung run, a killed worker, a killed driver ------------------------------

def _toy_store(path, *overrides) -> None:
    """A toy store holding three finished seed candidates (1, 2, 3)."""
    seed_store(path, [*TOY, *overrides],
               [("transformer", 10.0), ("primer_ez", 11.0), ("transformer", 12.0)])


class HangingEvaluator(ToyEvaluator):
    """The toy fitness, except that seed 1 never ends (a training run that hangs)."""

    def evaluate(self, dna, hurdles=(), *, seed=None, budget=None, gate=None):
        if seed == 1:
            time.sleep(3600)
        return super().evaluate(dna, hurdles, seed=seed, budget=budget, gate=gate)


def hanging_evaluator(*_):
    return HangingEvaluator(0.05)


def test_a_hung_retraining_run_ends_as_timeout_and_the_others_finish(tmp_path):
    path = tmp_path / "r.sqlite"
    _toy_store(path)
    pool = ProcessPool((), name="retrain", factory=hanging_evaluator)
    rows = retrain(path, top=2, seeds=2, pool=pool, timeout_s=1.0)
    pool.close()
    with Store(path, readonly=True) as store:
        runs = {(c.parent_id, c.seed): c for c in store.finished("retrain")}
    assert sorted(runs) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert {k: c.status for k, c in runs.items()} == {
        (1, 0): "ok", (1, 1): "timeout", (2, 0): "ok", (2, 1): "timeout"}
    assert "time limit of 1 s" in runs[1, 1].result.reason
    assert all(r.runs == 2 and math.isnan(r.std_fitness) for r in rows)
    check_whole(path, 4, kind="retrain")


def test_run_jobs_replaces_a_worker_past_the_timeout():
    """The same with a scripted pool and a fake clock: no waiting."""
    from test_loop import ScriptedPool

    class Ticking:
        now = 0.0

        def __call__(self):
            self.now += 1.0
            return self.now

    clock = Ticking()
    pool = ScriptedPool(2, clock, script={1: ["hang"]})
    dna = seeds.get("transformer")
    out = run_jobs(pool, [Job(cid, dna) for cid in range(4)], timeout_s=30.0, clock=clock)
    assert sorted(out) == [0, 1, 2, 3]
    assert out[1].result.status == "timeout"
    assert [out[c].result.status for c in (0, 2, 3)] == ["ok"] * 3
    assert len(pool.replaced) == 1


def test_a_worker_killed_during_retraining_is_retried_and_nothing_is_lost(tmp_path):
    path = tmp_path / "r.sqlite"
    _toy_store(path, "pool.toy_sleep_s=0.4")
    cfg = toy_config("pool.toy_sleep_s=0.4")
    pool = ProcessPool((cfg.fitness, "toy", 0.4), name="retrain")
    killed = []

    def killer():
        wait_for(lambda: finished_count(path, "retrain") >= 1, "a first retrained run")
        time.sleep(0.1)                                  # into the next run
        killed.append(pool.pid)
        os.kill(pool.pid, signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        rows = retrain(path, top=3, seeds=2, pool=pool)
    finally:
        thread.join()
        pool.close()
    assert killed and all(r.runs == 2 for r in rows) and len(rows) == 3
    with Store(path, readonly=True) as store:
        runs = store.finished("retrain")
    assert {c.status for c in runs} == {"ok"}
    assert sorted((c.parent_id, c.seed) for c in runs) == [(p, s) for p in (1, 2, 3)
                                                          for s in (0, 1)]
    check_whole(path, 6, kind="retrain")


RETRAIN = "import sys; from primer_search.cli import main; sys.exit(main(sys.argv[1:]))"


def test_sigkill_of_the_driver_during_retrain_then_a_rerun_finishes_only_what_is_missing(
        tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    _toy_store(path, "pool.toy_sleep_s=0.3")
    driver = subprocess.Popen([sys.executable, "-c", RETRAIN, "retrain", str(path), "--top",
                               "3", "--seeds", "2"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: finished_count(path, "retrain") >= 2, "2 retrained runs", driver)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    assert driver.returncode == -signal.SIGKILL
    before = snapshot(path)
    done_before = {cid for cid, row in before.items() if row[2] == "retrain"}
    assert 2 <= len(done_before) < 6
    with Store(path, readonly=True) as store:
        rows_before = store.count(kind="retrain")
    assert main(["retrain", str(path), "--top", "3", "--seeds", "2", "--json"]) == 0
    capsys.readouterr()
    after = snapshot(path)
    assert {cid: after[cid] for cid in before} == before   # nothing finished is redone
    with Store(path, readonly=True) as store:
        runs = store.finished("retrain")
        # The pending row the driver left is reused: the rerun adds only what was missing.
        assert store.count(kind="retrain") == 6 >= rows_before
    assert sorted((c.parent_id, c.seed) for c in runs) == [(p, s) for p in (1, 2, 3)
                                                          for s in (0, 1)]
    check_whole(path, 6, kind="retrain")


# ---- config fuzz -------------------------------------------------------------------------

def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}")
    return out


KEYS = _leaves(config_to_dict(SearchConfig()))
SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
NAMES = st.sampled_from(KEYS) | st.text(
    st.characters(min_codepoint=97, max_codepoint=122) | st.just("_"), min_size=1,
    max_size=10)


def _nest(key: str, value, into: dict) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        child = into.get(part)
        into = into.setdefault(part, {}) if isinstance(child, dict) or child is None else {}
    into[leaf] = value


def _names_a_key(message: str, keys) -> bool:
    return any(part in message for key in keys for part in key.split("."))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=4))
@example([("evolution.mutation.weights", [None])])    # found by this fuzz: a list of lists
@example([("ladder.rungs", [{"name": "a", "candidates": [None]}])])
def test_config_fuzz_is_a_config_error_naming_the_key_never_a_traceback(items):
    data: dict = {}
    for key, value in items:
        _nest(key, value, data)
    try:
        config_from_dict(data)
    except ConfigError as e:
        assert _names_a_key(str(e), [k for k, _ in items]), (data, str(e))


TOML_VALUES = st.sampled_from(["1", "-3", "0.5", "1e400", "nan", "inf", "true", "'x'",
                               "\"8/3\"", "[]", "[1, 'a']", "{a = 1}", "''", "1979-05-27",
                               "[[1]]", "{}", "0x1f", "'toy'", "'train'"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS) | NAMES, TOML_VALUES), min_size=1,
                max_size=4))
def test_set_overrides_and_toml_files_fuzz_never_a_traceback(tmp_path_factory, items):
    overrides = [f"{key}={value}" for key, value in items]
    try:
        config_from_dict(apply_overrides({}, overrides))
    except ConfigError as e:
        assert _names_a_key(str(e), [k for k, _ in items]), (overrides, str(e))
    folder = tmp_path_factory.mktemp("toml")
    text = "\n".join(f"{key} = {value}" for key, value in items)  # dotted keys are TOML too
    (folder / "c.toml").write_text(text)
    try:
        load_config(folder / "c.toml")
    except ConfigError as e:
        assert "c.toml" in str(e) or _names_a_key(str(e), [k for k, _ in items]), (text, e)
    shutil.rmtree(folder)
