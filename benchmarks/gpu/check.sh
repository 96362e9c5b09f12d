#!/usr/bin/env bash
# The GPU check, one command on a machine without network that was sent .gpu_bundle
# (made by benchmarks/gpu/prepare.sh), run from a copy of the repository:
#
#   benchmarks/gpu/check.sh                    # GPU machine: Python 3.12 with jax (CUDA)
#   benchmarks/gpu/check.sh --cpu-rehearsal    # the same steps at CPU size, anywhere
#
# 1. install: a virtual environment over the image's Python (its packages stay visible),
#    the bundle's wheels installed into it offline (pip --no-index; what the image has
#    in a fitting version is left alone); the engine runs from the source tree.
# 2. ray_smoke: ray.init(), a task, an actor that imports JAX (holding a GPU if any).
# 3. corpus: the corpus cache of every config used below (primer-search prepare).
# 4. compile_and_step.py: DNA -> first train step (median), train step vs plain Flax.
# 5. search_throughput.py --gpu: gpu_small with 1 worker; 1 worker with 2 candidates;
#    2 workers at 0.5 GPU (each layout its own run, so that one cut short loses only it).
# 6. search_efficacy.py --profile gpu --searches-only: the first search of the GPU
#    efficacy profile (evolution, seed 0) through the Ray controller, cut to the time
#    left (max_hours: no new candidates after it, running ones finish).
# Each step has a time limit, and none starts past the budget (--budget-s, default 540 s
# from the start); then one table is printed (report.py). Raw outputs (each step's
# standard output, NAME.out, JSON where it has figures, and its log, NAME.log; steps.tsv,
# summary.md, summary.json) go to $OUT/gpu-check (or $GPU_CHECK_WORK/out). The exit
# status is 1 if a step failed, ran out of time or was skipped.
#
# Options: --cpu-rehearsal, --budget-s N, --python PY (the image's Python; default
# python3), --bundle DIR (default .gpu_bundle). Environment: GPU_CHECK_WORK (default
# /tmp/primer-gpu-check: the venv, Ray's temp dir, the corpus cache, the stores),
# GPU_CHECK_CANDIDATES (at most, per throughput layout; default 8, rehearsal 4),
# GPU_CHECK_LAYOUT_S (seconds after which a layout proposes no more; default 45, rehearsal
# 120), GPU_CHECK_BUDGET_S (a GPU throughput candidate's training seconds, default 4).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=gpu
BUDGET_S=540
PY=python3
BUNDLE=$ROOT/.gpu_bundle
while [ $# -gt 0 ]; do
    case $1 in
        --cpu-rehearsal) MODE=cpu ;;
        --budget-s) BUDGET_S=$2; shift ;;
        --python) PY=$2; shift ;;
        --bundle) BUNDLE=$2; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

WORK=${GPU_CHECK_WORK:-/tmp/primer-gpu-check}
RESULTS=${OUT:+$OUT/gpu-check}
RESULTS=${RESULTS:-$WORK/out}
VENV=$WORK/venv
START=$(date +%s)
mkdir -p "$WORK" "$RESULTS"
rm -rf "$WORK/ray" "$WORK/efficacy" "$RESULTS"/*
mkdir -p "$WORK/ray" "$WORK/cache"
STEPS=$RESULTS/steps.tsv
printf 'step\trc\tseconds\tlimit_s\n' > "$STEPS"

export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PRIMER_SEARCH_CACHE=$WORK/cache
export RAY_USAGE_STATS_ENABLED=0
export RAY_TMPDIR=$WORK/ray           # short: Ray's socket paths must stay under 108 bytes
export RAY_DEDUP_LOGS=0
export PYTHONUNBUFFERED=1
[ "$MODE" = cpu ] && export JAX_PLATFORMS=cpu

left() { echo $((START + BUDGET_S - $(date +%s))); }

# The processes a cut-short step left behind: Ray's, found by this check's RAY_TMPDIR
# in their command lines (no pgrep on a bare image).
ray_pids() {
    local p
    for p in /proc/[0-9]*; do
        grep -qaF -- "$RAY_TMPDIR" "$p/cmdline" 2>/dev/null && echo "${p#/proc/}"
    done
    return 0
}
stop_ray() {
    local pids
    pids=$(ray_pids)
    [ -n "$pids" ] && kill $pids 2>/dev/null
    sleep 3
    pids=$(ray_pids)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    return 0
}

# step NAME LIMIT_S COMMAND...: stdout to NAME.out, stderr to NAME.log, a row in steps.tsv.
step() {
    local name=$1 limit=$2 rc t0 ms
    shift 2
    # Room for this step: the budget left, less the table's few seconds and, until the
    # efficacy search starts, the time kept for it (RESERVE_S).
    local room=$(( $(left) - 15 - RESERVE_S ))
    [ "$limit" -gt "$room" ] && limit=$room
    if [ "$limit" -lt 20 ]; then
        printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$STEPS"
        echo "== $name: skipped, $(left) s of the budget left"
        return 1
    fi
    echo "== $name (limit ${limit} s): $*"
    t0=$(date +%s%N)
    timeout -k 10 "$limit" "$@" > "$RESULTS/$name.out" 2> "$RESULTS/$name.log"
    rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf '%s\t%s\t%d.%d\t%s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "$limit" \
        >> "$STEPS"
    if [ "$rc" -ne 0 ]; then
        echo "   rc $rc; last lines of $name.log:"
        tail -n 5 "$RESULTS/$name.log" | sed 's/^/   | /'
        [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && stop_ray
    fi
    return "$rc"
}

PYV=$VENV/bin/python
BENCH=$ROOT/benchmarks
# Each throughput layout proposes no new candidate after LAYOUT_S seconds (max_hours),
# so that it reports within its limit; running candidates finish.
LAYOUT_S=${GPU_CHECK_LAYOUT_S:-45}
if [ "$MODE" = gpu ]; then
    CONFIGS=(gpu_small efficacy_gpu)
    COMPILE_ARGS=(--json --programs 8 --no-hlo)
    COMPILE_LIMIT_S=120
    THROUGHPUT_LAYOUTS=(1 2 3)
    THROUGHPUT_ARGS=(--gpu --candidates "${GPU_CHECK_CANDIDATES:-8}"
                     --set "fitness.budget.seconds=${GPU_CHECK_BUDGET_S:-4}")
    THROUGHPUT_LIMIT_S=80
    EFFICACY_PROFILE=gpu
    EFFICACY_RESERVE_S=150
    SMOKE_CPUS=4
else
    CONFIGS=(tiny_cpu efficacy_cpu)
    COMPILE_ARGS=(--json --quick)
    COMPILE_LIMIT_S=180
    THROUGHPUT_LAYOUTS=(1)
    THROUGHPUT_ARGS=(--candidates "${GPU_CHECK_CANDIDATES:-4}")
    THROUGHPUT_LIMIT_S=180
    LAYOUT_S=${GPU_CHECK_LAYOUT_S:-120}
    EFFICACY_PROFILE=smoke
    EFFICACY_RESERVE_S=60
    SMOKE_CPUS=2
fi
THROUGHPUT_ARGS+=(--json --set "limits.max_hours=$("$PY" -c "print(round($LAYOUT_S / 3600, 5))")")
RESERVE_S=$EFFICACY_RESERVE_S

echo "check.sh ($MODE): budget ${BUDGET_S} s; outputs in $RESULTS"
step install 180 "$BENCH/gpu/install.sh" "$PY" "$BUNDLE" "$VENV" || exit 1
cat "$RESULTS/install.out"
step ray_smoke 120 "$PYV" "$BENCH/gpu/ray_smoke.py" --num-cpus "$SMOKE_CPUS"
GPUS=$("$PYV" -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["resources"].get("GPU", 0)))' \
       "$RESULTS/ray_smoke.out" 2>/dev/null || echo 0)
for c in "${CONFIGS[@]}"; do
    step "corpus_$c" 60 "$PYV" -m primer_search.cli prepare "$c"
done
if [ "$MODE" = gpu ] && [ "$GPUS" -lt 1 ]; then
    echo "== Ray sees no GPU: the GPU steps are skipped"
    printf 'no_gpu\t1\t0\t0\n' >> "$STEPS"
else
    step compile_and_step "$COMPILE_LIMIT_S" "$PYV" "$BENCH/compile_and_step.py" \
        "${COMPILE_ARGS[@]}"
    for k in "${THROUGHPUT_LAYOUTS[@]}"; do
        step "throughput_$k" "$THROUGHPUT_LIMIT_S" "$PYV" "$BENCH/search_throughput.py" \
            --layouts "$k" "${THROUGHPUT_ARGS[@]}"
    done
    efficacy=(--profile "$EFFICACY_PROFILE" --arms evolution --search-seeds 1
              --searches-only --json --out "$WORK/efficacy")
    # The search's own time: what is left, less Ray's start, the candidates still
    # running at the limit, and the table.
    RESERVE_S=0
    search_s=$(( $(left) - 75 ))
    if [ "$search_s" -lt 60 ]; then
        printf 'efficacy\tskipped\t0\t0\n' >> "$STEPS"
        echo "== efficacy: skipped, $(left) s of the budget left"
    else
        efficacy+=(--set "limits.max_hours=$("$PY" -c "print(round($search_s / 3600, 5))")")
        step efficacy 600 "$PYV" "$BENCH/search_efficacy.py" "${efficacy[@]}"
    fi
fi

"$PYV" "$BENCH/gpu/report.py" "$RESULTS" --mode "$MODE" --total-s $(( $(date +%s) - START ))
# Not every step ran to its end: say so in the exit status too.
if tail -n +2 "$STEPS" | cut -f2 | grep -qv '^0$'; then
    exit 1
fi
