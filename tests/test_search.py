"""The search controller on Ray: end to end, crash safety, fault tolerance.

These tests use the toy evaluator (no training), so they test the machinery; the real
training path is covered by tests/test_evaluate.py and the quick start's tiny_cpu search.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from toys import TINY_TRAINING, TOY, as_flags

from primer_search.cli import main
from primer_search.search.config import ConfigError, load_config
from primer_search.search.controller import run_search
from primer_search.search.store import Store, StoreError


def toy_config(*overrides):
    return load_config("tiny_cpu", TOY + list(overrides))


def finished_so_far(store_path) -> int:
    """Finished candidates in a store a search is writing; 0 while the file does not exist
    yet or is still being created (it exists, empty, before its schema is committed)."""
    try:
        with Store(store_path, readonly=True) as store:
            return len(store.finished())
    except StoreError:
        return 0


def worker_pids():
    out = subprocess.run(["pgrep", "-f", "ray::_Worker"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_toy_search_end_to_end_and_the_cli(local_ray, tmp_path, capsys):
    store_path = tmp_path / "s.sqlite"
    summary = run_search(toy_config("limits.max_candidates=40", "pool.workers=2"), store_path, progress=False)
    assert summary.finished == 40 and summary.stopped_by == "candidate limit"
    with Store(store_path, readonly=True) as store:
        rows = store.finished()
        assert len(rows) == 40 and not store.pending()
        # The 16 initial members are copies of 2 seeds: 2 trained, 14 reused by fingerprint
        # (counted by id: the order they finish in depends on the workers' start-up).
        initial = [r for r in rows if r.id <= 16]
        assert sum(r.status == "duplicate" for r in initial) == 14
        best = store.top(1)[0]
        assert best.fitness <= min(r.fitness for r in rows if r.status == "ok")
        child = next(r for r in rows if r.parent_id is not None)
    assert main(["top", str(store_path), "-n", "3"]) == 0
    assert f"{best.id:>6}" in capsys.readouterr().out
    assert main(["show", str(store_path), str(child.id)]) == 0
    out = capsys.readouterr().out
    assert "diff to parent:" in out and child.mutation in out
    assert main(["lineage", str(store_path), str(child.id)]) == 0
    assert "seed:" in capsys.readouterr().out
    assert main(["show", str(store_path), "9999"]) == 1  # a clear error, not a traceback
    assert "9999" in capsys.readouterr().err


def test_a_worker_no_node_has_room_for_gets_no_work(local_ray, tmp_path):
    """Three workers of one CPU on a two-CPU cluster: the third is never placed, and the
    search runs on the two that are, instead of waiting on the third forever."""
    cfg = toy_config("limits.max_candidates=12", "pool.workers=3", "pool.cpus_per_worker=1.0",
                     "pool.toy_sleep_s=0.2", "dedup=false")
    summary = run_search(cfg, tmp_path / "p.sqlite", progress=False)
    assert summary.finished == 12
    with Store(tmp_path / "p.sqlite", readonly=True) as store:
        workers = {c.worker.split("/")[0] for c in store.finished()}
        assert all(c.status == "ok" for c in store.finished())
    assert workers <= {"worker0", "worker1", "worker2"} and len(workers) == 2


def test_a_killed_worker_does_not_stop_the_search(local_ray, tmp_path):
    store_path = tmp_path / "k.sqlite"
    cfg = toy_config("limits.max_candidates=24", "pool.workers=1", "pool.toy_sleep_s=0.5",
                     "limits.max_retries=1", "dedup=false")
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        summary=run_search(cfg, store_path, progress=False)), daemon=True)
    thread.start()
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and not killed:
        pids = worker_pids()
        if pids and finished_so_far(store_path) >= 3:
            os.kill(pids[0], signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    thread.join(timeout=180)
    assert killed and not thread.is_alive()
    assert result["summary"].finished == 24
    with Store(store_path, readonly=True) as store:
        assert not store.pending()
        statuses = [c.status for c in store.finished()]
    # The candidate in flight was retried on a new worker (or, past retries, recorded).
    assert statuses.count("ok") >= 23


def test_sigkill_the_controller_then_resume(tmp_path):
    store_path = tmp_path / "crash.sqlite"
    args = [sys.executable, "-m", "primer_search.cli", "search", "tiny_cpu", "--quiet",
            "--store", str(store_path), "--set", "limits.max_candidates=30", "--set", "pool.workers=2",
            "--set", "pool.toy_sleep_s=0.3", "--set", "dedup=false"] + \
        as_flags(TOY)
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        before = []
        while time.time() < deadline:
            if finished_so_far(store_path) >= 8:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # the controller only: no chance to clean up
        proc.wait()
        with Store(store_path, readonly=True) as store:
            before = store.finished()
            pending_at_crash = [c.id for c in store.pending()]
        assert len(before) >= 8 and len(before) < 30
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray processes the controller started
        except ProcessLookupError:
            pass
    # A resume may not change what fitness means: refused before anything runs.
    refused = subprocess.run([sys.executable, "-m", "primer_search.cli", "search", "--resume",
                              str(store_path), "--quiet", "--set", "fitness.budget.steps=200"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1   # a refused resume is a runtime failure
    assert "a resume cannot change fitness.budget.steps (stored 100, given 200)" in refused.stderr
    with Store(store_path, readonly=True) as store:
        assert store.finished() == before and store.resumes() == []
    resumed = subprocess.run([sys.executable, "-m", "primer_search.cli", "search", "--resume",
                              str(store_path), "--quiet", "--set", "pool.workers=1"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with Store(store_path, readonly=True) as store:
        after = store.finished()
        assert not store.pending()
        assert [r["overrides"] for r in store.resumes()] == [{"pool": {"workers": 1}}]
    ids = [c.id for c in after]
    assert len(after) == 30 and len(set(ids)) == 30
    # Every evaluation completed before the crash is there once, unchanged, and first.
    assert after[: len(before)] == before
    # Those in flight at the crash were queued again and finished after the resume.
    assert set(pending_at_crash) <= set(ids[len(before):])


def test_removing_a_node_does_not_stop_the_search(tmp_path):
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this test needs its own multi-node cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    try:
        store_path = tmp_path / "n.sqlite"
        cfg = toy_config("limits.max_candidates=30", "pool.workers=2", "pool.toy_sleep_s=0.3", "dedup=false")
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            summary=run_search(cfg, store_path, progress=False)), daemon=True)
        thread.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            if finished_so_far(store_path) >= 4:
                break
            time.sleep(0.2)
        # Two workers run on two of the three one-CPU nodes: removing two nodes removes
        # at least one running worker. A fresh node restores the capacity for two.
        cluster.remove_node(nodes[0])
        cluster.remove_node(nodes[1])
        cluster.add_node(num_cpus=1)
        thread.join(timeout=240)
        assert not thread.is_alive()
        assert result["summary"].finished == 30
        with Store(store_path, readonly=True) as store:
            assert not store.pending()
            workers = {c.worker for c in store.finished() if c.worker}
        assert len(workers) > 2, workers  # a replacement worker took over
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_real_search_keeps_top_weights_for_export(local_ray, tmp_path, capsys):
    """A tiny real search (PTB training) keeps the weights of its best K candidates, and
    `export STORE ID` writes them into a module that loads them."""
    import flax.serialization
    import jax
    import numpy as np

    from primer_search.fitness.config import ModelConfig
    from primer_search.fitness.model import build_lm
    from primer_search.search.loop import weights_folder

    store_path = tmp_path / "w.sqlite"
    cfg = load_config("tiny_cpu", [
        *TINY_TRAINING, "limits.max_candidates=6", "pool.workers=1", "limits.keep_weights=2",
        "evolution.population_size=2", "evolution.tournament_size=2"])
    run_search(cfg, store_path, progress=False)
    with Store(store_path, readonly=True) as store:
        best = [c.id for c in store.top(2)]
        dna = store.get(best[0]).dna
    kept = sorted(int(p.stem) for p in weights_folder(store_path).glob("*.msgpack"))
    assert kept == sorted(best)
    out = tmp_path / "export"
    assert main(["export", str(store_path), str(best[0]), "--out", str(out)]) == 0
    assert "trained parameters of candidate" in capsys.readouterr().out
    # The exported weights are the engine's: same logits from both models.
    lm = build_lm(dna, ModelConfig(d_model=16, num_layers=1), 10_000)
    tokens = np.zeros((1, 8), np.int32)
    engine = flax.serialization.from_bytes({"params": lm.init(0, tokens)},
                                           (out / "weights.msgpack").read_bytes())["params"]
    ns: dict = {}
    exec(compile((out / "block.py").read_text(), "block.py", "exec"), ns)  # noqa: S102
    model = ns["LanguageModel"](vocab_size=10_000, num_layers=1)
    variables = flax.serialization.from_bytes(model.init(jax.random.key(0), tokens),
                                              (out / "weights.msgpack").read_bytes())
    np.testing.assert_allclose(model.apply(variables, tokens), lm.apply(engine, tokens),
                               rtol=1e-5, atol=1e-5)


def test_a_driver_under_ray_job_submit_connects_without_resources(monkeypatch):
    # `ray job submit` sets RAY_ADDRESS for the driver; Ray refuses num_cpus / num_gpus
    # when connecting to an existing cluster, so none may be passed.
    from primer_search.search import ray_pool

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    ray_pool.init_ray(toy_config())
    assert calls[-1]["address"] == "10.0.0.5:6379"
    assert "num_cpus" not in calls[-1] and "num_gpus" not in calls[-1]
    monkeypatch.delenv("RAY_ADDRESS")
    ray_pool.init_ray(toy_config("pool.address='auto'"))
    assert calls[-1]["address"] == "auto" and "num_cpus" not in calls[-1]
    ray_pool.init_ray(toy_config())   # a new instance, whatever else runs on the machine
    assert calls[-1]["address"] == "local" and calls[-1]["num_cpus"] >= 1


def test_a_search_starts_its_own_ray_beside_a_cluster_the_machine_runs():
    """Without an address a search starts Ray of its own, even where the machine has a
    cluster (`ray start` records its address in Ray's temp folder; Ray would join it and
    then refuse the search's num_cpus). Here that record names a dead address."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths live here
    try:
        os.makedirs(os.path.join(tmp, "ray"))
        with open(os.path.join(tmp, "ray", "ray_current_cluster"), "w") as f:
            f.write("127.0.0.1:9\n")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        out = subprocess.run(
            [sys.executable, "-m", "primer_search.cli", "search", "tiny_cpu", "--store",
             os.path.join(tmp, "s.sqlite"), "--json", *as_flags(TOY),
             "--set", "limits.max_candidates=4", "--set", "pool.workers=1"],
            capture_output=True, text=True, timeout=300, env=env | {"RAY_TMPDIR": tmp})
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout)["finished"] == 4
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_an_unreachable_cluster_is_one_clear_error(monkeypatch, tmp_path, capsys):
    def refuse(**kw):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kw['address']}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    store = tmp_path / "s.sqlite"
    assert main(["search", "tiny_cpu", "--address", "10.0.0.5:6379", "--store", str(store),
                 "--quiet"]) == 1  # a runtime failure
    err = capsys.readouterr().err
    assert "cannot reach the Ray cluster at address '10.0.0.5:6379'" in err
    assert "Traceback" not in err and not store.exists()


def test_a_search_logged_to_a_file_prints_a_line_per_candidate_and_json_alone(tmp_path):
    store = tmp_path / "s.sqlite"
    out = subprocess.run(
        [sys.executable, "-m", "primer_search.cli", "search", "tiny_cpu", "--store", str(store),
         "--json", "--set", "evaluator='toy'", "--set", "fitness.budget.stages=1",
         "--set", "limits.max_candidates=6", "--set", "pool.workers=1"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)               # standard output is the JSON alone
    assert summary["finished"] == 6
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("#")]
    assert len(lines) == 6
    assert lines[0].startswith("#1 parent - ok fitness ") and "seed:transformer" in lines[0]
    assert any(" duplicate " in ln for ln in lines)


def test_workers_sharing_a_gpu_each_take_only_their_share_of_its_memory():
    from primer_search.search.ray_pool import worker_env

    cpu = worker_env(toy_config("pool.threads_per_worker=2"))
    assert cpu["JAX_PLATFORMS"] == "cpu" and cpu["PJRT_NPROC"] == "2"
    half = worker_env(toy_config("pool.gpus_per_worker=0.5"))
    assert half["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450" and "JAX_PLATFORMS" not in half
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in worker_env(toy_config("pool.gpus_per_worker=1.0"))


def test_worker_options_pin_workers_to_hardware():
    from primer_search.search.ray_pool import actor_options

    plain = actor_options(toy_config("pool.cpus_per_worker=2.0", "pool.gpus_per_worker=0.5"))
    assert plain["num_cpus"] == 2.0 and plain["num_gpus"] == 0.5 and plain["max_restarts"] == 0
    assert "accelerator_type" not in plain and "resources" not in plain
    pinned = actor_options(toy_config("pool.accelerator_type='H100'", "pool.worker_resources.h100_node=1"))
    assert pinned["accelerator_type"] == "H100" and pinned["resources"] == {"h100_node": 1.0}
    with pytest.raises(ConfigError, match="worker_resources must map resource names to amounts"):
        toy_config("pool.worker_resources.h100_node=-1")


def test_a_worker_that_cannot_start_stops_the_search_with_its_error(local_ray, tmp_path,
                                                                     monkeypatch):
    """Workers whose corpus is missing on their node fail to start; after three tries the
    search stops with the reason instead of waiting for them forever. (The driver, which
    checks the corpus first, is told it is on a cluster whose nodes might have it.)"""
    from primer_search.search import controller
    from primer_search.search.pool import WorkerStartError

    monkeypatch.setattr(controller, "_prepare_data", lambda config: None)

    cfg = load_config("tiny_cpu", ["fitness.data.corpus='text'", "pool.workers=1",
                                   f"fitness.data.path='{tmp_path / 'gone.txt'}'"])
    with pytest.raises(WorkerStartError, match="failed to start 3 times") as e:
        run_search(cfg, tmp_path / "w.sqlite", progress=False)
    assert "gone.txt" in str(e.value) and "does not exist" in str(e.value)


def test_two_candidates_per_worker_take_turns(local_ray, tmp_path):
    """pool.candidates_per_worker=2: one Ray worker holds two candidates, and their toy
    'training' (the sleep) never overlaps, so 8 candidates of 0.4 s take 3.2 s or more."""
    cfg = toy_config("limits.max_candidates=8", "pool.workers=1", "pool.candidates_per_worker=2",
                     "pool.toy_sleep_s=0.4", "dedup=false")
    summary = run_search(cfg, tmp_path / "two.sqlite", progress=False)
    assert summary.finished == 8
    with Store(tmp_path / "two.sqlite", readonly=True) as store:
        rows = store.finished()
    assert {c.worker.split("/")[0] for c in rows} == {"worker0"}
    assert all(c.status == "ok" for c in rows)
    assert summary.evaluation_s >= 8 * 0.4 * 1.5  # each waited for the other's turn


def test_a_corpus_that_is_not_there_stops_a_local_search_before_it_starts(tmp_path, capsys):
    """Run here, the driver reads the corpus first: a bad path is one error line naming
    it, and no store is written."""
    store = tmp_path / "s.sqlite"
    assert main(["search", "tiny_cpu", "--store", str(store), "--quiet", "--set",
                 "fitness.data.corpus='text'", "--set",
                 f"fitness.data.path='{tmp_path / 'gone.txt'}'"]) == 1  # a runtime failure
    err = capsys.readouterr().err
    assert "gone.txt" in err and "does not exist" in err and "Traceback" not in err
    assert not store.exists()
