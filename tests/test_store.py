"""The store: rows round-trip exactly, queries order as the search needs, readers read
while a search writes, and a search killed at any moment loses nothing it finished."""

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from primer_search.fitness.hurdles import rank_key
from primer_search.fitness.results import EvalResult, Status
from primer_search.program import seeds
from primer_search.program.random_programs import random_dna
from primer_search.search.store import SCHEMA_VERSION, Candidate, Store, StoreError
from primer_search.stats import summarise_retrains

CONFIG = {"population": 16, "tournament": 4, "budget": {"steps": 300, "stages": 2},
          "seed": 0}


@pytest.fixture(scope="module")
def transformer():
    return seeds.get("transformer")


def dna_of(i):
    return random_dna(random.Random(i))


def ok(fitness, **kw):
    return EvalResult(fitness=fitness, status=Status.OK, steps=kw.pop("steps", 300),
                      stage_fitness=kw.pop("stage_fitness", (fitness * 2, fitness)), **kw)


FAILED = EvalResult(fitness=math.inf, status=Status.NAN, reason="loss became NaN at step 7",
                    steps=7, compile_s=0.5, train_s=0.25)


def add(store, i, parent_id=None, **kw):
    kw.setdefault("mutation", f"mutation {i}")
    kw.setdefault("dna_hash", f"hash{i}")
    return store.add(dna=dna_of(i), parent_id=parent_id, **kw)


# ---- round trips -----------------------------------------------------------------------

def test_add_finish_get_round_trips_every_field(tmp_path, transformer):
    result = EvalResult(fitness=12.5, status=Status.OK, reason="", steps=3, train_loss=2.5,
                        valid_loss=2.53, perplexity=12.5, word_perplexity=12.5,
                        bits_per_byte=1.0 / 3.0, tokens_per_s=12345.678, step_time_s=0.01,
                        num_params=4242, compile_s=1.5, train_s=2.25, eval_s=0.125,
                        stage_fitness=(20.0, 12.5))
    with Store(tmp_path / "s.db", CONFIG) as store:
        assert store.config == CONFIG and store.path == tmp_path / "s.db"
        t0 = time.time()
        a = store.add(dna=transformer, parent_id=None, mutation="seed:transformer",
                      dna_hash="h-a", fingerprint="fp-a", seed=7)
        b = store.add(dna=dna_of(1), parent_id=a, mutation="insert sub0[3]: ADD(h1, h2)",
                      dna_hash="h-b")
        assert b > a
        pending = store.get(a)
        assert pending == Candidate(
            id=a, parent_id=None, mutation="seed:transformer", kind="search",
            dna=transformer, dna_text=str(transformer), dna_hash="h-a", fingerprint="fp-a",
            status="pending", fitness=None, result=None, duplicate_of=None, seed=7,
            worker=None, node=None, created_at=pending.created_at, finished_at=None)
        assert t0 <= pending.created_at <= time.time()
        store.finish(a, result, worker="worker-3", node="node-1")
        store.finish(b, FAILED)

    with Store(tmp_path / "s.db", readonly=True) as store:   # survives reopening
        ca, cb = store.get(a), store.get(b)
    assert ca.dna == transformer and ca.dna_text == str(transformer)
    assert ca.result == result and ca.fitness == 12.5 and ca.status == "ok"
    assert ca.result.stage_fitness == (20.0, 12.5)
    assert (ca.worker, ca.node, ca.seed, ca.fingerprint) == ("worker-3", "node-1", 7, "fp-a")
    assert ca.created_at <= ca.finished_at <= time.time()
    assert cb.parent_id == a and cb.dna == dna_of(1) and cb.fingerprint is None
    assert cb.status == "nan" and cb.fitness == math.inf and cb.result == FAILED
    assert math.isnan(cb.result.valid_loss)          # NaN metrics survive too


def test_non_finite_floats_are_strict_json_and_exact(tmp_path):
    weird = EvalResult(fitness=-math.inf, status=Status.ERROR, reason="nan",
                       stage_fitness=(math.inf, -0.0, 1e-300, 0.1 + 0.2), train_loss=-math.inf)
    with Store(tmp_path / "s.db", {}) as store:
        cid = add(store, 0)
        store.finish(cid, weird)
        got = store.get(cid).result
    assert got.reason == "nan" and got.fitness == -math.inf and got.train_loss == -math.inf
    assert got.stage_fitness == (math.inf, -0.0, 1e-300, 0.1 + 0.2)
    assert math.copysign(1.0, got.stage_fitness[1]) == -1.0
    conn = sqlite3.connect(tmp_path / "s.db")
    text, fitness = conn.execute("SELECT result, fitness FROM candidates").fetchone()
    assert "Infinity" not in text and "NaN" not in text     # strict JSON
    assert conn.execute("SELECT json_extract(result, '$.fitness') FROM candidates"
                        ).fetchone() == ("-inf",)
    assert fitness == -math.inf
    conn.close()


# ---- queries ---------------------------------------------------------------------------

def test_pending_finished_top_and_count(tmp_path):
    with Store(tmp_path / "s.db", CONFIG) as store:
        ids = [add(store, i) for i in range(7)]
        store.finish(ids[3], ok(30.0))
        store.finish(ids[0], FAILED)
        store.finish(ids[5], ok(10.0))
        store.mark_duplicate(ids[1], of=ids[5], result=store.get(ids[5]).result)
        store.finish(ids[2], EvalResult(fitness=50.0, status=Status.HURDLE, steps=150,
                                        stage_fitness=(50.0,)))
        assert [c.id for c in store.pending()] == [ids[4], ids[6]]
        assert [c.id for c in store.finished()] == [ids[3], ids[0], ids[5], ids[1], ids[2]]
        assert [c.id for c in store.all()] == ids
        # Best finite first; failed (inf), duplicates and pending rows never appear.
        assert [c.id for c in store.top()] == [ids[5], ids[3], ids[2]]
        assert [c.id for c in store.top(2)] == [ids[5], ids[3]]
        assert store.count() == 7
        assert store.count("pending") == 2 and store.count("duplicate") == 1
        assert store.count("ok") == 2 and store.count("nan") == 1
        assert store.count(kind="retrain") == 0
        dup = store.get(ids[1])
        assert dup.status == "duplicate" and dup.duplicate_of == ids[5]
        assert dup.fitness == 10.0 and dup.result == ok(10.0)


def test_mark_duplicate_of_a_duplicate_links_the_original(tmp_path):
    with Store(tmp_path / "s.db", {}) as store:
        a, b, c, d = (add(store, i) for i in range(4))
        with pytest.raises(StoreError, match=f"candidate {a} is still pending"):
            store.mark_duplicate(b, of=a, result=ok(5.0))
        store.finish(a, ok(5.0))
        store.mark_duplicate(b, of=a, result=ok(5.0))
        store.mark_duplicate(c, of=b, result=ok(5.0))
        assert store.get(c).duplicate_of == a
        with pytest.raises(StoreError, match="already finished"):
            store.mark_duplicate(b, of=a, result=ok(5.0))
        with pytest.raises(StoreError, match="candidate 99 is not in store"):
            store.mark_duplicate(d, of=99, result=ok(5.0))
        assert store.get(d).status == "pending"


def test_lineage_walks_to_the_root(tmp_path):
    with Store(tmp_path / "s.db", {}) as store:
        root = add(store, 0, mutation="seed:transformer")
        other = add(store, 1, mutation="seed:primer_ez")
        child = add(store, 2, parent_id=root)
        grandchild = add(store, 3, parent_id=child)
        add(store, 4, parent_id=other)
        great = add(store, 5, parent_id=grandchild)
        assert [c.id for c in store.lineage(great)] == [great, grandchild, child, root]
        assert [c.id for c in store.lineage(root)] == [root]
        with pytest.raises(StoreError, match="parent candidate 77"):
            add(store, 6, parent_id=77)


def test_reusable_by_fingerprint_finds_the_earliest_finished_original(tmp_path):
    with Store(tmp_path / "s.db", {}) as store:
        a = add(store, 0, fingerprint="F")
        b = add(store, 1, fingerprint="F")
        c = add(store, 2, fingerprint="F")
        add(store, 3, fingerprint="G")
        assert store.reusable_by_fingerprint("F") is None                   # all pending
        store.finish(b, ok(9.0))
        store.finish(a, ok(8.0))
        store.mark_duplicate(c, of=b, result=ok(9.0))
        assert store.reusable_by_fingerprint("F").id == b                   # finished first
        assert store.reusable_by_fingerprint("G") is None
        assert store.reusable_by_fingerprint("nope") is None
        r = store.add(dna=dna_of(0), parent_id=a, mutation=f"retrain of {a}", dna_hash="h",
                      fingerprint="G", kind="retrain", seed=1, budget="10 steps")
        store.finish(r, ok(1.0))
        assert store.reusable_by_fingerprint("G") is None                   # retrains never match


def test_reusable_by_fingerprint_skips_failures_of_the_moment(tmp_path):
    # The first candidate with a fingerprint timed out; a later one trained. A duplicate
    # must reuse the later, reusable result, not re-measure or inherit the time-out.
    with Store(tmp_path / "s.db", {}) as store:
        first, second = add(store, 0, fingerprint="F"), add(store, 1, fingerprint="F")
        store.finish(first, EvalResult(fitness=math.inf, status="timeout", reason="slow"))
        store.finish(second, ok(7.0))
        assert store.reusable_by_fingerprint("F").id == second


def test_top_ranks_hurdle_stopped_candidates_below_finished_ones(tmp_path):
    with Store(tmp_path / "s.db", {}) as store:
        full, stopped = add(store, 0), add(store, 1)
        store.finish(full, EvalResult(fitness=480.0, status="ok", stage_fitness=(700.0, 480.0)))
        store.finish(stopped, EvalResult(fitness=450.0, status="hurdle", stage_fitness=(450.0,)))
        assert [c.id for c in store.top(2)] == [full, stopped]


def test_resumes_are_recorded_and_older_stores_gain_the_table(tmp_path):
    path = tmp_path / "s.db"
    with Store(path, {"a": 1}) as store:
        assert store.resumes() == []
        store.record_resume({"max_candidates": 9})
        store._conn.execute("DROP TABLE resumes")            # as a store of the first version
    with Store(path) as store:
        assert store.resumes() == []
        store.record_resume({"workers": 2})
        assert [r["overrides"] for r in store.resumes()] == [{"workers": 2}]
    with Store(path, readonly=True) as store:
        assert store.resumes()[0]["at"] > 0


def summarise(store, budget=None):
    return summarise_retrains(store.retrain_runs(budget))


def test_retrain_summary_on_hand_computed_values(tmp_path):
    """The store's retrain runs and their statistics (primer_search.stats), worked by hand."""
    with Store(tmp_path / "s.db", {}) as store:
        a, b, c = add(store, 0), add(store, 1), add(store, 2)
        for cid, f in ((a, 10.0), (b, 9.0), (c, 20.0)):
            store.finish(cid, ok(f))

        def retrain(of, seed, result, budget="300 steps"):
            r = store.add(dna=store.get(of).dna, parent_id=of, mutation=f"retrain of {of}",
                          dna_hash=store.get(of).dna_hash, kind="retrain", seed=seed,
                          budget=budget)
            if result is not None:
                store.finish(r, result)
            return r

        for seed, f in enumerate((10.0, 12.0, 14.0)):   # mean 12, sample std 2
            retrain(a, seed, ok(f))
        for seed, f in enumerate((11.0, 11.5)):         # mean 11.25, std sqrt(0.125)
            retrain(b, seed, ok(f))
        retrain(b, 2, None)                             # still pending: not counted
        retrain(c, 0, ok(7.0))                          # one run: std 0
        retrain(c, 1, FAILED)                           # failed run: mean inf
        assert store.count(kind="retrain") == 8 and store.count() == 3
        assert len(store.finished("retrain")) == 7
        assert store.top(kind="retrain")[0].fitness == 7.0
        summary = summarise(store)
        # The same candidate retrained under another budget is a group of its own.
        retrain(a, 0, ok(5.0), budget="3000 steps")
        longer = summarise(store, "3000 steps")
        assert [(s.id, s.budget, s.runs) for s in longer] == [(a, "3000 steps", 1)]
        assert summarise(store, "300 steps") == summary
        both = summarise(store)
        assert [(s.id, s.budget) for s in both] == [
            (a, "3000 steps"), (b, "300 steps"), (a, "300 steps"), (c, "300 steps")]
        assert len(store.retrain_rows("3000 steps")) == 1 and len(store.retrain_rows()) == 9
        with pytest.raises(StoreError, match="names its budget"):
            store.add(dna=dna_of(0), parent_id=a, mutation="x", dna_hash="h", kind="retrain")
    assert [s.id for s in summary] == [b, a, c]
    assert {s.budget for s in summary} == {"300 steps"}
    sb, sa, sc = summary
    assert (sb.runs, sb.mean_fitness) == (2, 11.25)
    assert sb.std_fitness == pytest.approx(math.sqrt(0.125), rel=1e-12)
    assert (sa.runs, sa.mean_fitness, sa.std_fitness) == (3, 12.0, 2.0)
    assert sa.fitnesses == [10.0, 12.0, 14.0]
    assert sc.runs == 2 and sc.mean_fitness == math.inf and math.isnan(sc.std_fitness)


def test_top_ranks_by_the_hurdles_rank_key(tmp_path):
    """``Store.top`` is SQL; the ranking rule's home is ``hurdles.rank_key`` (what
    evolution ranks by). On random stores of every kind of result (failed, NaN, stopped at
    a hurdle, ties), top's order is rank_key's, finish order breaking ties, failures and
    duplicates left out."""
    rng = random.Random(7)
    for trial in range(5):
        with Store(tmp_path / f"r{trial}.db", {}) as store:
            for i in range(60):
                cid = add(store, i)
                kind = rng.random()
                if kind < 0.1 and i > 0:
                    continue  # still pending (the first finishes: duplicates point to it)
                stages = rng.randint(1, 3)
                f = rng.choice([rng.choice([10.0, 11.0, 12.5]), rng.uniform(5, 50),
                                math.inf, math.nan])
                status = (Status.NAN if not math.isfinite(f) else
                          Status.OK if stages == 3 else Status.HURDLE)
                result = EvalResult(fitness=f, status=status, stage_fitness=tuple([f] * stages))
                if kind < 0.2 and i > 0:
                    store.mark_duplicate(cid, 1, result)
                else:
                    store.finish(cid, result)
            ranked = sorted((c for c in store.finished() if c.status != Status.DUPLICATE),
                            key=lambda c: (rank_key(c.fitness, len(c.result.stage_fitness)),
                                           c.id))  # finished in id order here
            expected = [c.id for c in ranked if c.fitness is not None and math.isfinite(c.fitness)]
            assert [c.id for c in store.top(1000)] == expected
            assert [c.id for c in store.top(5)] == expected[:5]


# ---- errors ----------------------------------------------------------------------------

def test_finishing_twice_and_bad_ids_raise(tmp_path):
    with Store(tmp_path / "s.db", {}) as store:
        cid = add(store, 0)
        store.finish(cid, ok(5.0))
        with pytest.raises(StoreError, match=f"candidate {cid} is already finished"):
            store.finish(cid, ok(1.0))
        assert store.get(cid).fitness == 5.0 and len(store.finished()) == 1
        with pytest.raises(StoreError, match="candidate 4242 is not in store"):
            store.get(4242)
        with pytest.raises(StoreError, match="candidate 4242"):
            store.finish(4242, ok(1.0))
        with pytest.raises(StoreError, match="candidate 4242"):
            store.lineage(4242)
        with pytest.raises(StoreError, match="kind"):
            add(store, 1, kind="bogus")
        with pytest.raises(StoreError, match="'pending' is not an evaluation status"):
            store.finish(add(store, 2), EvalResult(fitness=1.0, status="pending"))


def test_reopening_with_a_different_config_names_the_keys(tmp_path):
    path = tmp_path / "s.db"
    Store(path, CONFIG).close()
    with Store(path, dict(CONFIG)) as store:           # same config: fine
        assert store.config == CONFIG
    with Store(path) as store:                         # None: use the stored one
        assert store.config == CONFIG
    changed = {**CONFIG, "tournament": 5, "budget": {"steps": 300, "stages": 3}}
    with pytest.raises(StoreError, match=r"differing keys: budget\.stages, tournament") as e:
        Store(path, changed)
    assert str(path) in str(e.value)
    with pytest.raises(StoreError, match="differing keys: extra"):
        Store(path, {**CONFIG, "extra": 1}, readonly=True)
    with pytest.raises(StoreError, match="not JSON"):
        Store(tmp_path / "other.db", {"f": object()})


def test_readonly_never_creates_and_rejects_foreign_files(tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="does not exist") as e:
        Store(missing, readonly=True)
    assert str(missing) in str(e.value) and not missing.exists()

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    for readonly in (True, False):
        with pytest.raises(StoreError, match="not a primer-search store") as e:
            Store(foreign, readonly=readonly)
        assert str(foreign) in str(e.value)

    junk = tmp_path / "junk.db"
    junk.write_bytes(random.Random(0).randbytes(4096))
    for readonly in (True, False):
        with pytest.raises(StoreError) as e:
            Store(junk, readonly=readonly)
        assert str(junk) in str(e.value)
    assert junk.read_bytes() == random.Random(0).randbytes(4096)   # left untouched

    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreError, match="not a primer-search store") as e:
        Store(empty, readonly=True)

    future = tmp_path / "future.db"
    Store(future, {}).close()
    conn = sqlite3.connect(future)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                 (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version") as e:
        Store(future, readonly=True)
    assert str(future) in str(e.value)

    with Store(tmp_path / "s.db", {}) as w:
        add(w, 0)
    with Store(tmp_path / "s.db", readonly=True) as r, pytest.raises(StoreError,
                                                                     match="read-only"):
        add(r, 1)


# ---- concurrency -----------------------------------------------------------------------

def test_readers_see_committed_rows_while_the_writer_stays_open(tmp_path):
    path = tmp_path / "s.db"
    with Store(path, CONFIG) as writer:
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
        a = add(writer, 0)
        writer.finish(a, ok(3.0))
        reader = Store(path, readonly=True)
        raw = sqlite3.connect(path)
        assert reader.config == CONFIG and reader.get(a).fitness == 3.0
        assert raw.execute("SELECT COUNT(*) FROM candidates").fetchone() == (1,)
        b = add(writer, 1)                               # later writes show up at once
        assert [c.id for c in reader.pending()] == [b]
        assert raw.execute("SELECT status FROM candidates WHERE id = ?", (b,)).fetchone() == (
            "pending",)

        # A write transaction in progress blocks neither reader; they see the old state.
        other = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE candidates SET mutation = 'uncommitted'")
        assert reader.get(a).mutation == "mutation 0"
        other.execute("ROLLBACK")
        other.close()
        writer.finish(b, ok(2.0))
        assert [c.id for c in reader.top()] == [b, a]
        reader.close()
        raw.close()


# ---- crash safety ----------------------------------------------------------------------

CRASHER = textwrap.dedent("""
    import random, sys
    from primer_search.fitness.results import EvalResult
    from primer_search.program.random_programs import random_dna
    from primer_search.search.store import Store

    store = Store(sys.argv[1], {"crash": True})
    dnas = [random_dna(random.Random(i)) for i in range(8)]
    print("ready", flush=True)
    for i in range(100000):
        cid = store.add(dna=dnas[i % 8], parent_id=None, mutation=f"m{i}", dna_hash=f"h{i}")
        if cid % 3:   # leave every third candidate pending
            store.finish(cid, EvalResult(fitness=cid + 0.25, status="ok", steps=cid,
                                         stage_fitness=(2.0 * cid, cid + 0.25)),
                         worker=f"w{cid}")
            print(cid, flush=True)   # reported only after finish() returned
""")


def expected(cid):
    return EvalResult(fitness=cid + 0.25, status="ok", steps=cid,
                      stage_fitness=(2.0 * cid, cid + 0.25))


def test_killed_mid_write_loses_nothing_finished(tmp_path):
    path = tmp_path / "crash.db"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Store(path, readonly=True) as reader:   # reading while it writes
                if reader.count("ok") >= 40:
                    break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    reported = [int(x) for x in out.split()]
    assert len(reported) >= 40

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with Store(path, {"crash": True}) as store:           # resume, same config
        rows = store.all()
        ids = [c.id for c in rows]
        assert ids == list(range(1, len(ids) + 1))       # no holes, no repeats
        done = store.finished()
        assert [c.id for c in done] == sorted(c.id for c in done)   # finishing order
        assert len({c.id for c in done}) == len(done)
        # Every finish the process reported is there, intact; nothing else is finished.
        assert set(reported) <= {c.id for c in done}
        assert {c.id for c in done} <= {c for c in ids if c % 3}
        for c in done:
            assert c.result == expected(c.id) and c.worker == f"w{c.id}"
            assert c.dna == dna_of((c.id - 1) % 8) and c.mutation == f"m{c.id - 1}"
        pending = store.pending()
        assert {c.id for c in pending} == set(ids) - {c.id for c in done}
        assert all(c.result is None and c.fitness is None for c in pending)
        # Resume: evaluate the in-flight candidates again and go on writing.
        for c in pending:
            store.finish(c.id, expected(c.id))
        assert store.count("pending") == 0
        assert len(store.finished()) == len(ids)
        assert store.add(dna=dna_of(0), parent_id=1, mutation="after", dna_hash="x") == (
            len(ids) + 1)


def test_newest_store_finds_the_latest_search_and_skips_other_files(tmp_path):
    from primer_search.files import newest_store

    with pytest.raises(StoreError, match="no search store"):
        newest_store([tmp_path])
    old, new = tmp_path / "tiny_cpu-1.sqlite", tmp_path / "sub" / "tiny_cpu-2.sqlite"
    new.parent.mkdir()
    for path in (old, new):
        with Store(path, {"x": 1}) as store:
            add(store, 0)
    os.utime(old, (1e9, 1e9))
    for wal in tmp_path.rglob("*-wal"):
        os.utime(wal, (1e9, 1e9))
    (tmp_path / "notes.sqlite").write_text("not a database")
    sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE t (x)").connection.close()
    assert newest_store([tmp_path, new.parent]) == new
    assert newest_store([tmp_path]) == old


def test_a_new_store_appears_whole(tmp_path):
    """A store is written under a temporary name and linked into place: a reader that
    polls the path while stores are being created finds nothing or a complete store,
    never an empty database; an empty file is refused at once."""
    import threading

    paths = [tmp_path / f"new{i}.sqlite" for i in range(30)]

    def create():
        for path in paths:
            Store(path, {"x": 1}).close()

    writer = threading.Thread(target=create)
    writer.start()
    seen = 0
    while writer.is_alive() or seen < len(paths):
        seen = 0
        for path in paths:
            if path.exists():
                with Store(path, readonly=True) as store:   # never "empty database"
                    assert store.config == {"x": 1}
                seen += 1
    writer.join()
    assert not [p for p in tmp_path.iterdir() if "creating" in p.name]   # no temporary left
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for readonly in (True, False):
        with pytest.raises(StoreError, match="empty database"):
            Store(empty, {"x": 1} if not readonly else None, readonly=readonly)
    assert empty.read_bytes() == b""


def test_a_resume_never_creates_and_a_reader_changes_nothing(tmp_path):
    missing = tmp_path / "sub" / "nosuch.sqlite"
    with pytest.raises(StoreError, match="does not exist") as e:
        Store(missing)                         # a writer with no config: a resume
    assert str(missing) in str(e.value)
    assert not (tmp_path / "sub").exists()     # not the store, its folder or its lease

    path = tmp_path / "s.sqlite"
    with Store(path, CONFIG) as store:
        store.finish(add(store, 0), ok(3.0))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert set(before) == {"s.sqlite", "s.sqlite.lock"}   # a closed store is one file
    with Store(path, readonly=True) as reader:
        assert reader.top()[0].fitness == 3.0 and reader.pending() == []
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


def test_one_writer_at_a_time_and_readers_are_never_blocked(tmp_path):
    import json
    import socket

    path = tmp_path / "s.sqlite"
    writer = Store(path, CONFIG)
    a = add(writer, 0)
    for second in (lambda: Store(path), lambda: Store(path, CONFIG)):
        with pytest.raises(StoreError, match="one writer at a time") as e:
            second()
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(e.value)
    with Store(path, readonly=True) as reader:   # readers go on while the writer holds it
        assert [c.id for c in reader.pending()] == [a]
        holder = json.loads(dict(reader._query("SELECT key, value FROM meta"))["writer"])
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    writer.finish(a, ok(2.0))
    writer.close()
    with Store(path) as again:                  # released on close
        assert again.get(a).fitness == 2.0
    assert (tmp_path / "s.sqlite.lock").read_text() == ""   # a clean release leaves no holder


def test_a_lease_on_a_file_system_without_flock_goes_by_the_record(tmp_path, monkeypatch):
    """Where flock fails, the record decides: a live holder refuses, a dead one on this
    host is taken over, one on another host refuses with the way out."""
    import errno
    import json
    import socket

    from primer_search.search import lease

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lease.fcntl, "flock", no_flock)
    path = tmp_path / "s.sqlite"
    first = Store(path, CONFIG)
    with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
        Store(path)
    first.close()
    lock = tmp_path / "s.sqlite.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    Store(path).close()                         # a dead holder's lease is taken over
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0}))
    with pytest.raises(StoreError, match="delete .*s.sqlite.lock") as e:
        Store(path)
    assert "host elsewhere" in str(e.value)
