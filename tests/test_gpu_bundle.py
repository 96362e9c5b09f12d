"""The GPU machine's preparation (benchmarks/gpu/): the scripts parse, the stripped Ray
wheel is a wheel that pip can install, and what it leaves out is nothing Ray's own
processes import."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = os.path.join(ROOT, "benchmarks", "gpu")
if GPU not in sys.path:
    sys.path.insert(0, GPU)

import strip_ray


@pytest.mark.parametrize("script", ["prepare.sh", "install.sh", "check.sh"])
def test_scripts_parse(script):
    bash = shutil.which("bash")   # .ci/run itself runs under bash
    proc = subprocess.run([bash, "-n", os.path.join(GPU, script)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def _fake_wheel(path):
    files = {
        "ray/__init__.py": b"x = 1\n",
        "ray/core/src/ray/raylet/raylet": b"#!/bin/sh\n",
        "ray/jars/ray_dist.jar": b"jar",
        "ray/serve/__init__.py": b"",
        "ray/dashboard/dashboard.py": b"",
        "ray/dashboard/client/build/index.html": b"<html>",
        "ray-2.60.0.dist-info/METADATA": b"Name: ray\nVersion: 2.60.0\n",
        "ray-2.60.0.dist-info/entry_points.txt":
            b"[console_scripts]\nray = ray.scripts.scripts:main\nserve = ray.serve.scripts:cli\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name.endswith("raylet") else 0o644) << 16
            z.writestr(info, data)
        z.writestr("ray-2.60.0.dist-info/RECORD",
                   "\n".join(f"{n},," for n in [*files, "ray-2.60.0.dist-info/RECORD"]))


def test_strip_wheel(tmp_path):
    src = tmp_path / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl"
    _fake_wheel(src)
    dst = strip_ray.strip_wheel(str(src), str(tmp_path / "out"))
    assert os.path.basename(dst) == src.name
    with zipfile.ZipFile(dst) as z:
        names = set(z.namelist())
        assert names == {"ray/__init__.py", "ray/core/src/ray/raylet/raylet",
                         "ray/dashboard/dashboard.py", "ray-2.60.0.dist-info/METADATA",
                         "ray-2.60.0.dist-info/entry_points.txt", "ray-2.60.0.dist-info/RECORD"}
        assert z.getinfo("ray/core/src/ray/raylet/raylet").external_attr >> 16 == 0o755
        assert z.read("ray-2.60.0.dist-info/entry_points.txt").decode().splitlines() == \
            ["[console_scripts]", "ray = ray.scripts.scripts:main"]
        record = dict(line.split(",", 1) for line in
                      z.read("ray-2.60.0.dist-info/RECORD").decode().splitlines())
        assert set(record) == names
        data = z.read("ray/__init__.py")
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert record["ray/__init__.py"] == f"sha256={digest},{len(data)}"


# What `import ray` loads, and the entry modules of the processes ray.init() starts (GCS
# and raylet aside, which are executables): workers, the dashboard head and agent, the
# runtime-env agent, the log monitor and the autoscaler's monitor.
_ENTRY_MODULES = ["ray", "ray.actor", "ray.util", "ray._private.workers.default_worker",
                  "ray.dashboard.dashboard", "ray.dashboard.agent",
                  "ray._private.runtime_env.agent.main", "ray._private.log_monitor",
                  "ray.autoscaler._private.monitor"]


def test_strip_list_keeps_what_ray_processes_import():
    code = (
        "import importlib, json, os, sys\n"
        f"for m in {_ENTRY_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "import ray\n"
        "base = os.path.dirname(os.path.dirname(ray.__file__))\n"
        "print(json.dumps(sorted(os.path.relpath(m.__file__, base).replace(os.sep, '/')\n"
        "    for name, m in list(sys.modules.items())\n"
        "    if (name == 'ray' or name.startswith('ray.')) and getattr(m, '__file__', None))))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120, env={**os.environ,
                                                         "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(files) > 50
    assert [f for f in files if strip_ray.dropped(f)] == []
