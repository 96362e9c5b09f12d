"""A search on a real multi-node Ray cluster, launched the way Ray users launch work.

Each test starts its own cluster on this machine with the real command line (``ray start
--head`` and a second node with ``ray start --address``, each with its own resources),
runs ``primer-search search`` against it (as a driver with ``--address``, or submitted
with ``ray job submit``) and stops the cluster with ``ray stop`` at the end. Slow (a
cluster takes seconds to start and a lost node tens of seconds to be noticed), so
outside the default run: ``pytest -m slow tests/test_cluster.py``, with Ray's job server
and dashboard installed (``pip install -e .[cluster]``).
"""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toys import TOY as SHARED_TOY
from toys import as_flags

from primer_search.search.store import Store, StoreError

# Slow; and one test process runs them all (`--dist loadgroup`), one cluster at a time.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-cluster")]

BIN = Path(sys.executable).parent
RAY = shutil.which("ray", path=str(BIN)) or shutil.which("ray")
CLI = [sys.executable, "-m", "primer_search.cli"]
# A toy search: no training, each candidate takes a couple of seconds.
TOY = as_flags([*SHARED_TOY, "dedup=false", "pool.workers=2", "pool.cpus_per_worker=1.0"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ip() -> str:
    """The address `ray start --head` listens on (this machine's outward address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent for a UDP connect
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class Cluster:
    """A head and a second node on this machine, one CPU each, started with `ray start`."""

    def __init__(self, dashboard: bool = False, node2_resources: str | None = None):
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("RAY_ADDRESS", None)
        self.port, self.node2_port = _free_port(), _free_port()
        self.dashboard_port = _free_port()
        self.address = f"{_node_ip()}:{self.port}"
        head = ["start", "--head", "--num-cpus", "1", "--port", str(self.port),
                "--disable-usage-stats"]
        head += (["--include-dashboard", "true", "--dashboard-port", str(self.dashboard_port)]
                 if dashboard else ["--include-dashboard", "false"])
        self._ray(*head)
        self._ray("start", "--address", self.address, "--num-cpus", "1",
                  "--node-manager-port", str(self.node2_port), "--disable-usage-stats",
                  *(["--resources", node2_resources] if node2_resources else []))

    def _ray(self, *args, timeout=120) -> str:
        run = subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        assert run.returncode == 0, f"ray {' '.join(args)}:\n{run.stdout}\n{run.stderr}"
        return run.stdout

    def node2_raylet(self) -> int:
        """The pid of the second node's raylet (found by the port it was given)."""
        out = subprocess.run(["pgrep", "-f", f"raylet.*node_manager_port={self.node2_port}"],
                             capture_output=True, text=True).stdout.split()
        assert len(out) == 1, out
        return int(out[0])

    def stop(self) -> None:
        subprocess.run([RAY, "stop", "--force"], env=self.env, capture_output=True, timeout=120)


@pytest.fixture
def cluster(request):
    if RAY is None:
        pytest.fail("the `ray` command is not installed")
    c = Cluster(**getattr(request, "param", {}))
    try:
        yield c
    finally:
        c.stop()


def _finished(store_path) -> list:
    try:
        with Store(store_path, readonly=True) as store:
            return store.finished()
    except StoreError:
        return []


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_a_node_lost_mid_search_costs_one_retry_not_a_timeout(cluster, tmp_path):
    """SIGKILL the second node's raylet while its worker trains a candidate, with no
    spare capacity anywhere: the candidate is tried again on the head's worker, the
    search completes, and the store holds every candidate once, none timed out."""
    store_path = tmp_path / "lost.sqlite"
    search = subprocess.Popen(
        CLI + ["search", "tiny_cpu", "--address", cluster.address, "--store", str(store_path),
               "--json", *TOY, "--set", "pool.toy_sleep_s=1.5", "--set", "limits.max_candidates=16"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raylet = cluster.node2_raylet()
    start = time.monotonic()
    in_flight = None
    try:
        while time.monotonic() - start < 120 and in_flight is None:
            time.sleep(0.2)
            node2_pids = {f"/pid{p}" for p in _children(raylet)}
            rows = _finished(store_path)
            on_node2 = [c for c in rows
                        if c.worker and c.worker[c.worker.index("/"):] in node2_pids]
            if on_node2 and len(rows) >= 3:
                with Store(store_path, readonly=True) as store:
                    in_flight = [c.id for c in store.pending()]
                os.kill(raylet, signal.SIGKILL)
        assert in_flight, "the second node's worker never finished a candidate"
        out, err = search.communicate(timeout=240)
    finally:
        if search.poll() is None:
            search.kill()
    took = time.monotonic() - start
    print(f"lost node: {took:.1f} s for the search, {len(in_flight)} candidate(s) in flight "
          f"when the raylet was killed")
    assert search.returncode == 0, err[-3000:]
    summary = json.loads(out)  # standard output is the summary alone, no Ray log lines
    assert summary["finished"] == 16
    with Store(store_path, readonly=True) as store:
        rows = store.finished()
        assert not store.pending()
    assert len(rows) == 16 and len({c.id for c in rows}) == 16
    assert all(c.status == "ok" for c in rows), [(c.id, c.status, c.result.reason) for c in rows]
    # About 16 x 1.5 s on two workers, then one; a lost candidate waiting for tiny_cpu's
    # 300 s time-out would take far longer.
    assert took < 150, took


@pytest.mark.parametrize("cluster", [{"dashboard": True}], indirect=True)
def test_a_search_submitted_as_a_ray_job(cluster, tmp_path):
    """`ray job submit -- primer-search search ...`: the job's driver finds the cluster
    through RAY_ADDRESS, which the job server sets, and uses both nodes."""
    if importlib.util.find_spec("aiohttp") is None:  # the slow set runs with .[cluster]
        pytest.fail("`ray job submit` needs Ray's job server: pip install -e .[cluster]")
    store_path = tmp_path / "job.sqlite"
    run = subprocess.run(
        [RAY, "job", "submit", "--address", f"http://127.0.0.1:{cluster.dashboard_port}",
         "--", "primer-search", "search", "tiny_cpu", "--store", str(store_path), "--json",
         *TOY, "--set", "pool.toy_sleep_s=0.5", "--set", "limits.max_candidates=10"],
        env=cluster.env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "succeeded" in run.stdout + run.stderr
    rows = _finished(store_path)
    assert len(rows) == 10 and all(c.status == "ok" for c in rows)
    assert len({c.worker.split("/")[0] for c in rows}) == 2  # both nodes' workers


@pytest.mark.parametrize("cluster", [{"node2_resources": '{"pinned": 2}'}], indirect=True)
def test_worker_resources_pin_the_workers_to_the_nodes_that_have_them(cluster, tmp_path):
    """Workers that reserve a custom resource run only on the node started with it."""
    store_path = tmp_path / "pinned.sqlite"
    search = subprocess.Popen(
        CLI + ["search", "tiny_cpu", "--address", cluster.address, "--store", str(store_path),
               "--json", *TOY, "--set", "pool.cpus_per_worker=0.5", "--set", "pool.toy_sleep_s=0.5",
               "--set", "worker_resources.pinned=1", "--set", "limits.max_candidates=10"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raylet, on_node2 = cluster.node2_raylet(), set()
    while search.poll() is None:
        on_node2 |= {f"pid{p}" for p in _children(raylet)}
        time.sleep(0.1)
    assert search.returncode == 0, search.stderr.read()[-3000:]
    rows = _finished(store_path)
    assert len(rows) == 10
    assert {c.worker.split("/")[1] for c in rows} <= on_node2
    assert len({c.worker for c in rows}) == 2
