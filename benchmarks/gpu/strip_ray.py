"""Repack Ray's wheel with only what a local ``ray.init()``, tasks and actors need.

Ray's manylinux wheel is about 80 MB (240 MB installed), more than a lent GPU machine
may be sent. What the engine uses of it is the core: ``ray/_raylet.so``, the GCS server
and raylet executables (``ray/core/src/ray/...``), the Python side of workers, the
runtime-env agent, the autoscaler's monitor and the dashboard's Python modules (its head
process starts in minimal mode even with ``include_dashboard=False``). Left out: the Java
jar, the dashboard's compiled web client, and the libraries built on the core
(``ray.rllib``, ``ray.data``, ``ray.serve``, ``ray.tune``, ``ray.train``, ``ray.llm``).
The ELF files lose their symbol tables (``strip --strip-unneeded``; dynamic symbols stay).
The result is a valid wheel with the same name (RECORD rewritten, console scripts of the
removed libraries dropped), so ``pip install --no-index --find-links`` takes it.

    python benchmarks/gpu/strip_ray.py RAY_WHEEL OUT_DIR
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

# Paths in the wheel (prefixes) that are not shipped.
DROP = (
    "ray/jars/",                    # Java workers (ray_dist.jar, 34 MB)
    "ray/cpp/",                     # C++ workers' headers and library (in ray-cpp; defensive)
    "ray/dashboard/client/build/",  # the dashboard's web front end
    "ray/rllib/",
    "ray/data/",
    "ray/serve/",
    "ray/tune/",
    "ray/train/",
    "ray/llm/",
)

# The removed libraries, as modules: their console scripts are dropped too.
DROPPED_MODULES = tuple(p.rstrip("/").replace("/", ".") for p in DROP)


def dropped(name: str) -> bool:
    """True if the wheel member ``name`` is left out."""
    return name.startswith(DROP) or "/__pycache__/" in name


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _strip_elf(data: bytes, strip: str | None) -> bytes:
    """``data`` without its symbol table, if it is an ELF file and ``strip`` exists."""
    if strip is None or not data.startswith(b"\x7fELF"):
        return data
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(src, "wb") as f:
            f.write(data)
        done = subprocess.run([strip, "--strip-unneeded", "-o", dst, src],
                              capture_output=True)
        if done.returncode != 0:
            return data
        with open(dst, "rb") as f:
            return f.read()


def _entry_points(text: str) -> str:
    """entry_points.txt without the console scripts of dropped modules."""
    keep = []
    for line in text.splitlines():
        target = line.split("=", 1)[1].strip() if "=" in line else ""
        if target.startswith(tuple(m + "." for m in DROPPED_MODULES) + DROPPED_MODULES):
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def strip_wheel(src: str, out_dir: str) -> str:
    """Write the stripped copy of the wheel ``src`` into ``out_dir``; return its path."""
    strip = shutil.which("strip")
    dst = os.path.join(out_dir, os.path.basename(src))
    os.makedirs(out_dir, exist_ok=True)
    tmp = dst + ".part"
    records, record_name = [], None
    kept = removed = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED,
                                                       compresslevel=9) as zout:
        for info in zin.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if name.endswith(".dist-info/RECORD"):
                record_name = name
                continue
            if dropped(name):
                removed += 1
                continue
            data = zin.read(info)
            data = _strip_elf(data, strip)
            if name.endswith(".dist-info/entry_points.txt"):
                data = _entry_points(data.decode()).encode()
            new = zipfile.ZipInfo(name, date_time=info.date_time)
            new.external_attr = info.external_attr  # keeps the executables' mode bits
            new.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(new, data, compresslevel=9)
            records.append(f"{name},{_record_hash(data)},{len(data)}")
            kept += 1
        if record_name is None:
            raise SystemExit(f"{src}: no RECORD, not a wheel")
        records.append(f"{record_name},,")
        new = zipfile.ZipInfo(record_name, date_time=(2020, 1, 1, 0, 0, 0))
        new.external_attr = 0o644 << 16
        zout.writestr(new, "\n".join(records) + "\n", compresslevel=9)
    os.replace(tmp, dst)
    print(f"{os.path.basename(src)}: {os.path.getsize(src) / 2**20:.1f} MiB -> "
          f"{os.path.getsize(dst) / 2**20:.1f} MiB ({kept} files kept, {removed} left out"
          f"{'' if strip else '; no strip found, symbols kept'})")
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[-1].strip())
    strip_wheel(sys.argv[1], sys.argv[2])
