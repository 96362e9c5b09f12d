"""`primer-search dashboard`: its JSON endpoints against hand-built stores, its refusal of
what is not a store, its read-only guarantee, and one real browser (headless Chromium from
the system's packages, driven by Playwright) over a toy search that is running."""

import fractions
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from primer_search.cli import main
from primer_search.dashboard.server import create_app
from primer_search.fitness.results import EvalResult
from primer_search.program import seeds
from primer_search.program.dna import DNA, Subprogram
from primer_search.program.validate import dna_hash
from primer_search.search.store import Store

CONFIG = {"workers": 2, "max_candidates": 10, "evolution": {"population_size": 4},
          "fitness": {"budget": {"steps": 100, "stages": 2}}}
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("PRIMER_SEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def with_ffn(dna: DNA, width: int) -> DNA:
    """``dna`` with MAIN's 4d projection (the FFN's) made ``width``: a one-line change."""
    main_ = list(dna.subprograms[0].instructions)
    i = next(k for k, ins in enumerate(main_) if ins.op == "CONV_1X1" and ins.dim == 4)
    main_[i] = main_[i].replace(dim=fractions.Fraction(width))
    return DNA((Subprogram(tuple(main_)), *dna.subprograms[1:]))


def ok(fitness, stages=2, **metrics):
    per_stage = tuple([fitness * 1.5] * (stages - 1) + [fitness])
    return EvalResult(fitness=fitness, status="ok" if stages == 2 else "hurdle", steps=50 * stages,
                      stage_fitness=per_stage, perplexity=fitness / 2, recall_accuracy=0.25,
                      recall_loss=2.9, recall_steps=100, context_use=-0.02, num_params=12345,
                      step_time_s=0.02, compile_s=1.0, train_s=2.0, eval_s=0.5, recall_s=1.5,
                      **metrics)


def make_store(path):
    """Eight candidates: two seeds finished out of id order, a hurdle stop whose stage
    fitness is the lowest of all (ranked below the full budgets all the same), a NaN, a
    duplicate, and one still pending."""
    primer_ez, transformer = seeds.get("primer_ez"), seeds.get("transformer")
    child = with_ffn(primer_ez, 3)
    with Store(path, CONFIG) as s:
        def add(dna, parent, mutation):
            return s.add(dna=dna, parent_id=parent, mutation=mutation, dna_hash=dna_hash(dna))
        a = add(transformer, None, "seed:transformer")                       # 1
        b = add(primer_ez, None, "seed:primer_ez")                           # 2
        s.finish(b, ok(450.0), worker="worker0/pid1", node="n")
        s.finish(a, ok(500.0), worker="worker1/pid2", node="n")
        c = add(child, b, "change sub0[5] dim 4d -> 3d")                     # 3
        s.finish(c, ok(300.0, stages=1), worker="worker0/pid1", node="n")
        d = add(child, b, "change sub0[5] dim 4d -> 3d")                     # 4
        s.finish(d, ok(430.0), worker="worker1/pid2", node="n")
        e = add(primer_ez, d, "insert LOG")                                  # 5
        s.finish(e, EvalResult.failure("nan", "loss is nan at step 3"), worker="worker0/pid1")
        f = add(child, d, "swap")                                            # 6
        s.mark_duplicate(f, d, s.get(d).result)
        g = add(with_ffn(primer_ez, 2), d, "change sub0[5] dim 3d -> 2d")    # 7
        s.finish(g, ok(470.0), worker="worker1/pid2", node="n")
        add(child, g, "pending one")                                         # 8
    return path


@pytest.fixture
def store_path(tmp_path):
    return make_store(tmp_path / "s.sqlite")


@pytest.fixture
def client(store_path):
    with TestClient(create_app([store_path]), base_url="http://127.0.0.1") as c:
        yield c


def files_of(folder: Path) -> dict:
    """Every file in ``folder``: its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# ---- the JSON endpoints -----------------------------------------------------------------

def test_overview_counts_every_candidate_by_status(client, store_path):
    d = client.get("/api/stores/0/overview").json()
    with Store(store_path, readonly=True) as s:
        assert d["counts"]["total"] == s.count() == 8
    assert d["counts"]["finished"] == 7 and d["counts"]["pending"] == 1
    assert d["counts"]["by_status"] == {"ok": 4, "hurdle": 1, "nan": 1, "duplicate": 1,
                                        "pending": 1}
    assert [c["id"] for c in d["candidates"]] == [2, 1, 3, 4, 5, 6, 7]   # finishing order
    assert d["candidates"][4] == {"id": 5, "status": "nan", "fitness": None, "stages": 0,
                                  "order": 5}
    assert d["config"]["workers"] == 2 and d["config"]["stages"] == 2
    assert d["name"] == "s.sqlite" and d["path"] == str(store_path.resolve())


def test_best_so_far_is_ranked_as_top_ranks(client):
    d = client.get("/api/stores/0/overview").json()
    # The hurdle stop (#3, 300 after one stage) never leads: more stages come first.
    assert [(p["n"], p["id"], p["fitness"]) for p in d["best_so_far"]] == [
        (1, 2, 450.0), (2, 2, 450.0), (3, 2, 450.0), (4, 4, 430.0), (5, 4, 430.0),
        (6, 4, 430.0), (7, 4, 430.0)]
    assert d["best"]["id"] == 4 and d["best"]["fitness"] == 430.0


def test_top_table_is_top_with_every_tasks_metrics(client, store_path):
    top = client.get("/api/stores/0/overview").json()["top"]
    with Store(store_path, readonly=True) as s:
        assert [r["id"] for r in top] == [c.id for c in s.top(20)] == [4, 2, 7, 1, 3]
    first = top[0]
    assert first["perplexity"] == 215.0 and first["recall_accuracy"] == 0.25
    assert first["recall_loss"] == 2.9 and first["context_use"] == -0.02
    assert first["stages"] == 2 and first["params"] == 12345 and first["step_ms"] == 20.0
    assert first["parent"] == 2 and first["mutation"] == "change sub0[5] dim 4d -> 3d"


def test_hurdle_stages_throughput_and_workers(client):
    d = client.get("/api/stores/0/overview").json()
    assert d["stages"] == {"stages": 2, "stopped": [1, 0], "completed": [0, 4], "reached": [5, 4]}
    t = d["throughput"]
    assert sum(t["finished"]) == 7 and sum(t["trained"]) == 5 and t["per_minute"] > 0
    w = d["workers"]
    assert w["configured"] == 2 and w["in_flight"] == 1
    per = {x["worker"]: x for x in w["per_worker"]}
    assert set(per) == {"worker0/pid1", "worker1/pid2"}      # the duplicate has no worker
    assert per["worker0/pid1"]["candidates"] == 3 and per["worker1/pid2"]["candidates"] == 3
    assert per["worker1/pid2"]["busy_s"] == pytest.approx(3 * 5.0)   # compile+train+eval+recall
    assert per["worker0/pid1"]["busy_s"] == pytest.approx(2 * 5.0)   # the NaN measured nothing


def changed_lines(diff: list[str]) -> list[str]:
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_a_candidate_as_code_with_its_diff_to_the_parent_and_its_lineage(client, store_path):
    c = client.get("/api/stores/0/candidates/7").json()
    with Store(store_path, readonly=True) as s:
        assert c["code"] == s.get(7).dna_text
        parent_text = s.get(4).dna_text
    assert c["parent"] == 4 and c["status"] == "ok" and c["fitness"] == 470.0
    assert "dim=3d" in parent_text and "dim=2d" in c["code"]
    assert changed_lines(c["diff"]) == ["-    h7 = CONV_1X1(h6, dim=3d)",
                                        "+    h7 = CONV_1X1(h6, dim=2d)"]
    assert c["diff"][:2] == ["--- #4", "+++ #7"]
    assert [a["id"] for a in c["lineage"]] == [7, 4, 2]
    assert c["lineage"][-1]["mutation"] == "seed:primer_ez"
    child = client.get("/api/stores/0/candidates/4").json()
    assert changed_lines(child["diff"]) == ["-    h7 = CONV_1X1(h6, dim=4d)",
                                            "+    h7 = CONV_1X1(h6, dim=3d)"]
    seed = client.get("/api/stores/0/candidates/2").json()
    assert seed["diff"] == [] and seed["parent"] is None and seed["lineage"][0]["id"] == 2
    failed = client.get("/api/stores/0/candidates/5").json()
    assert failed["status"] == "nan" and failed["fitness"] is None
    assert failed["reason"] == "loss is nan at step 3"


def test_the_token_says_when_nothing_changed(client, store_path):
    first = client.get("/api/stores/0/overview").json()
    token = ",".join(map(str, first["token"]))
    assert client.get(f"/api/stores/0/overview?token={token}").json() == {
        "unchanged": True, "token": first["token"]}
    with Store(store_path) as writer:                 # a search goes on
        writer.finish(8, ok(420.0), worker="worker0/pid1")
        again = client.get(f"/api/stores/0/overview?token={token}").json()
    assert again["counts"]["finished"] == 8 and again["best"]["id"] == 8


def test_unknown_stores_candidates_and_foreign_hosts_are_refused(store_path):
    app = create_app([store_path], allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/api/stores/1/overview").status_code == 404
        missing = c.get("/api/stores/0/candidates/99")
        assert missing.status_code == 404 and "99" in missing.json()["error"]
        assert c.get("/api/stores").json()[0]["name"] == "s.sqlite"
        page = c.get("/")
        assert page.status_code == 200 and "chart.umd.min.js" in page.text
        assert c.get("/static/chart.umd.min.js").text.startswith("/*!\n * Chart.js v4")
    with TestClient(app, base_url="http://evil.example") as c:   # DNS rebinding
        assert c.get("/api/stores").status_code == 400
    store_path.unlink()                               # a store that goes away: an error line
    with TestClient(app, base_url="http://127.0.0.1") as c:
        gone = c.get("/api/stores/0/overview")
        assert gone.status_code == 503 and "does not exist" in gone.json()["error"]


def test_stores_side_by_side_get_names_that_tell_them_apart(tmp_path):
    a = make_store((tmp_path / "arm-a").mkdir() or tmp_path / "arm-a" / "s.sqlite")
    b = make_store((tmp_path / "arm-b").mkdir() or tmp_path / "arm-b" / "s.sqlite")
    with TestClient(create_app([a, b]), base_url="http://127.0.0.1") as c:
        assert [s["name"] for s in c.get("/api/stores").json()] == ["arm-a/s.sqlite",
                                                                    "arm-b/s.sqlite"]
        assert c.get("/api/stores/1/overview").json()["counts"]["total"] == 8


def test_the_dashboard_loads_no_jax(store_path):
    code = ("import sys\nfrom starlette.testclient import TestClient\n"
            "from primer_search.dashboard.server import create_app\n"
            f"c = TestClient(create_app([{str(store_path)!r}]), base_url='http://127.0.0.1')\n"
            "assert c.get('/api/stores/0/overview').json()['counts']['total'] == 8\n"
            "assert 'def main' in c.get('/api/stores/0/candidates/7').json()['code']\n"
            "print(sorted(m for m in ('jax', 'ray', 'flax', 'optax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]"


# ---- the command --------------------------------------------------------------------------

@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_text("not a store\n"), "cannot open"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE x (y)").connection.commit(),
     "not a primer-search store"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: None, "does not exist"),
])
def test_the_command_refuses_a_path_that_is_not_a_store_in_one_line(tmp_path, capsys, make,
                                                                     expected):
    path = tmp_path / "x.sqlite"
    make(path)
    assert main(["dashboard", str(path), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("primer-search: error: ") and err.count("\n") == 1 and expected in err
    assert {p.name for p in tmp_path.iterdir()} <= {"x.sqlite"}   # nothing created


def test_the_command_checks_its_flags_and_finds_stores_here(tmp_path, capsys, monkeypatch,
                                                            store_path):
    assert main(["dashboard", str(store_path), "--port", "70000"]) == 2
    assert "--port must be 0" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert main(["dashboard", "--port", "0"]) == 1
    assert "no search store (*.sqlite) in this folder" in capsys.readouterr().err
    taken = __import__("socket").socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        assert main(["dashboard", str(store_path), "--port", str(taken.getsockname()[1])]) == 1
        assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
    finally:
        taken.close()


# ---- it never writes -------------------------------------------------------------------------

def session(client, ids):
    """What a person clicking about does: the page, the script, overviews, candidates."""
    client.get("/")
    client.get("/static/dashboard.js")
    for cid in ids:
        client.get("/api/stores/0/overview")
        assert client.get(f"/api/stores/0/candidates/{cid}").status_code == 200
        client.get("/api/stores/0/overview?token=0,0,0")


def test_a_closed_store_is_left_byte_for_byte_and_creates_no_wal_or_shm(store_path, client):
    before = files_of(store_path.parent)
    assert set(before) == {"s.sqlite", "s.sqlite.lock"}        # a closed store is one file
    time.sleep(0.02)
    session(client, range(1, 9))
    assert files_of(store_path.parent) == before


def test_a_store_left_in_wal_mode_by_another_client_gets_no_wal_or_shm(store_path):
    # Another SQLite client wrote to it in WAL mode and closed: no -wal, header says WAL.
    raw = sqlite3.connect(store_path)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.close()
    assert store_path.read_bytes()[18:20] == b"\x02\x02"
    before = files_of(store_path.parent)
    with TestClient(create_app([store_path]), base_url="http://127.0.0.1") as c:
        session(c, [1, 4, 7])
    assert files_of(store_path.parent) == before      # a plain mode=ro reader would add two


def test_a_store_a_writer_holds_open_is_not_written_by_the_dashboard(store_path):
    """Under a live writer the store is in WAL mode: the database and its -wal keep their
    bytes and times. The -shm is SQLite's shared-memory index, where every reader (the
    dashboard, `top`, the sqlite3 shell) marks what it reads: it keeps its size."""
    folder = store_path.parent
    with Store(store_path) as writer:
        writer.finish(8, ok(420.0))
        time.sleep(0.02)
        before = files_of(folder)
        assert {"s.sqlite-wal", "s.sqlite-shm"} <= set(before)
        with TestClient(create_app([store_path]), base_url="http://127.0.0.1") as c:
            session(c, [1, 8])
            assert c.get("/api/stores/0/overview").json()["counts"]["finished"] == 8
        after = files_of(folder)
        for name in ("s.sqlite", "s.sqlite-wal", "s.sqlite.lock"):
            assert after[name] == before[name], name
        assert len(after["s.sqlite-shm"][0]) == len(before["s.sqlite-shm"][0])


# ---- in a real browser, over a running search -------------------------------------------------

def artifacts_dir() -> Path:
    folder = Path(os.environ.get("PRIMER_SEARCH_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def count_rows(path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM candidates WHERE kind = 'search'").fetchone()[0]
    finally:
        conn.close()


def finished_rows(path) -> int:
    if not Path(path).exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM candidates WHERE status != 'pending'").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def test_the_page_in_chromium_follows_a_running_search_and_opens_a_program(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: the browser test needs it (Debian: apt-get "
                    "install chromium, as .ci/run does; or set PRIMER_SEARCH_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    store = tmp_path / "live.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    search = subprocess.Popen(
        [sys.executable, "-m", "primer_search.cli", "search", "tiny_cpu", "--quiet", "--store",
         str(store), "--set", "evaluator='toy'", "--set", "fitness.budget.stages=1", "--set",
         "pool.workers=1", "--set", "dedup=false", "--set", "pool.toy_sleep_s=0.3", "--set",
         "limits.max_candidates=40"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    dash = None
    try:
        with sync_playwright() as pw:
            # The browser starts while Ray does; the dashboard once the store is there.
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
            deadline = time.time() + 120
            while finished_rows(store) < 1:
                assert search.poll() is None and time.time() < deadline, \
                    "the toy search did not start"
                time.sleep(0.1)
            dash = subprocess.Popen([sys.executable, "-m", "primer_search.cli", "dashboard",
                                     str(store), "--port", "0"], env=env,
                                    stdout=subprocess.PIPE, text=True)
            url = re.search(r"http://127\.0\.0\.1:\d+/", dash.stdout.readline()).group(0)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            low = count_rows(store)
            page.goto(url)
            count = page.locator("[data-testid=count-0]")
            # The store's section is drawn after the first poll: until then there is no
            # count to read, which the predicates must wait through, not fail on.
            count_text = "(document.querySelector('[data-testid=count-0]')?.textContent ?? '')"
            page.wait_for_function(f"{count_text} !== ''")
            shown = int(count.text_content())
            assert low <= shown <= count_rows(store)   # the store's count when it was read

            # The search goes on: the page follows without a reload.
            page.wait_for_function(
                f"+{count_text} > {shown}",
                timeout=60_000)

            # A click on the best candidate opens its program as code.
            row = page.locator("section.store[data-store='0'] table.top tbody tr").first
            cid = int(row.get_attribute("data-id"))
            row.click()
            page.wait_for_function(
                "document.querySelector('#detail-code').textContent.includes('def main(h0, h1):')")
            with Store(store, readonly=True) as s:
                assert page.locator("#detail-code").text_content() == s.get(cid).dna_text
            assert page.locator("#detail-lineage li").count() >= 1

            # When the search has finished, the page shows exactly the store's candidates.
            search.wait(timeout=120)
            assert search.returncode == 0
            final = count_rows(store)
            page.wait_for_function(
                f"{count_text} === '{final}'",
                timeout=15_000)

            # Clicks over the closed store leave its file as it was, and add none.
            time.sleep(0.05)
            before = files_of(tmp_path)
            for k in range(3):
                # at the row's left end: the open program panel covers the right
                page.locator("section.store[data-store='0'] table.latest tbody tr").nth(k).click(
                    position={"x": 12, "y": 6})
                page.wait_for_function("document.querySelector('#detail-code').textContent !== ''")
            page.locator("#detail-lineage a").first.click()
            page.wait_for_timeout(3200)                 # two polls
            assert files_of(tmp_path) == before
            page.locator("section.store[data-store='0'] table.top tbody tr").first.click(
                position={"x": 12, "y": 6})
            page.wait_for_function(
                "document.querySelector('#detail-code').textContent.includes('def main(h0, h1):')")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(tmp_path / "dashboard.png"))     # with the program
            page.keyboard.press("Escape")
            assert page.locator("#detail").is_hidden()
            page.screenshot(path=str(tmp_path / "dashboard-page.png"), full_page=True)
            assert not errors, errors
            browser.close()
        for name in ("dashboard.png", "dashboard-page.png"):
            shutil.copy(tmp_path / name, artifacts_dir() / name)
    finally:
        if dash is not None:
            dash.send_signal(signal.SIGINT)
            try:
                assert dash.wait(timeout=10) == 0      # Ctrl-C ends it cleanly
            finally:
                dash.kill()
        try:
            os.killpg(search.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        search.wait()
    assert (artifacts_dir() / "dashboard.png").stat().st_size > 20_000
