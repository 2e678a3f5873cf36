#!/usr/bin/env bash
# The prepared GPU check: everything that needs a GPU, in one run of at most 9 minutes on one GPU (an H200 here).
#
#   bash benchmarks/gpu_check.sh OUTDIR                # on the GPU machine
#   bash benchmarks/gpu_check.sh OUTDIR --cpu-smoke    # the same steps with tiny sizes on a CPU, in seconds (CI)
#
# Steps (each writes its results into OUTDIR as it goes, flushed line by line; a step that fails or runs out of
# time does not stop the next ones; the script exits 1 if any step failed):
#   1. env.txt            nvidia-smi, versions of Python, torch, CUDA, cuDNN and the libraries reid needs
#   2. sync_probe.jsonl   20 training steps of fast ResNet50 and MGN under torch.cuda.set_sync_debug_mode, after
#                         the epoch's first batch: every synchronising call with its file and line
#   3. pytest_gpu.txt     pytest -m gpu but the compile test (step 7 compiles); the CPU smoke run collects and skips
#   4. train_bench.jsonl  throughput: conventional vs each speed setting alone vs all (ResNet50 batch 64), batch 256,
#                         MGN; 200 timed steps each after the warm-up (python -m benchmarks.train_bench)
#   5. eval_bench.jsonl   Market-1501- and MSMT17-size evaluation (with and without verification) and re-ranking:
#                         time and peak memory, 2 runs each
#   6. end_to_end.txt     tools/train.py: MGN on the synthetic set, 2 epochs with re-ranking and the report, then
#                         --resume to 3 epochs (log, then a JSON summary line)
#   7. compile.jsonl      torch.compile: the fast set-up with and without it (compile time apart), if at least
#                         100 s are left
#   gpu_check.log         each step's command, stderr, exit status and time
#
# The GPU machine has no network and no yacs: put its wheel into .whl/ at the repository root first (see
# benchmarks/README.md, "The GPU check"); it is installed into a temporary folder. GPU_CHECK_BUDGET_S (540) is
# the time limit of the whole run.
set -uo pipefail

if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: bash benchmarks/gpu_check.sh OUTDIR [--cpu-smoke]" >&2
    exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
SMOKE=0
[[ ${2:-} == --cpu-smoke ]] && SMOKE=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
LOG=$OUT/gpu_check.log
rm -f "$OUT"/{env.txt,sync_probe.jsonl,pytest_gpu.txt,train_bench.jsonl,eval_bench.jsonl,end_to_end.txt,compile.jsonl}
: > "$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DATA=$(mktemp -d "${TMPDIR:-/tmp}/reid_gpu_check.XXXXXX")
trap 'rm -rf "$DATA"' EXIT
FAILED=0

if [[ $SMOKE == 1 ]]; then
    export OMP_NUM_THREADS=1  # tiny models on a shared CPU: threads would only wait for each other
    DEVICE=cpu
    SYN=(--tiny)
    TRAIN=(--tiny --models resnet50,mgn --variants conventional,fast)
    EVAL_SETS=(tiny)
    EVAL=(--device cpu --dim 64 --repeat 2 --no-baseline --in-process)
    PYTEST=(tests/gpu/test_gpu_training.py)
else
    DEVICE=cuda
    SYN=(--ids 751 --images-per-id 6 --test-ids 50 --workers 8)
    TRAIN=(--ids 751 --images-per-id 6 --test-ids 50 --workers 8)
    EVAL_SETS=(market msmt17)
    EVAL=(--device cuda --repeat 2)
    # The compile test is left to step 7, which compiles the real model (it would take a minute of the budget).
    PYTEST=(tests --deselect tests/gpu/test_gpu_training.py::test_compiled_training_step_on_cuda)
fi

note() { echo "[$(date +%T) +$SECONDS s] $*" >> "$LOG"; }

# step NAME CAP_S OUTFILE COMMAND...: run COMMAND with stdout appended to OUTFILE, stderr to the log, for at most
# CAP_S seconds and never past the budget.
step() {
    local name=$1 cap=$2 out=$3
    shift 3
    local left=$((BUDGET - SECONDS))
    local limit=$((cap < left ? cap : left))
    if ((limit < 10)); then
        note "$name: skipped, ${left} s of the ${BUDGET} s budget left"
        echo "{\"step\": \"$name\", \"skipped\": \"out of time (${left} s of ${BUDGET} s left)\"}" >> "$out"
        return
    fi
    note "$name: up to ${limit} s: $*"
    local start=$SECONDS rc
    timeout --kill-after=15 "$limit" "$@" >> "$out" 2>> "$LOG"
    rc=$?
    ((rc == 124 || rc == 137)) && note "$name: stopped at its ${limit} s limit (results so far are kept)"
    note "$name: exit status $rc after $((SECONDS - start)) s"
    ((rc != 0)) && FAILED=1
    return 0
}

# -- the wheels of what the GPU machine lacks (yacs) -----------------------------------------------------------
if ! "$PY" -c "import yacs" 2>/dev/null; then
    if compgen -G ".whl/*.whl" > /dev/null; then
        SITE=$(mktemp -d "${TMPDIR:-/tmp}/reid_site.XXXXXX")
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
            >> "$LOG" 2>&1
        export PYTHONPATH="$PYTHONPATH:$SITE"
        note "installed $(ls .whl | tr '\n' ' ')into $SITE"
    else
        note "yacs is missing and there is no .whl/ folder: see benchmarks/README.md, 'The GPU check'"
    fi
fi

# -- 1. environment ---------------------------------------------------------------------------------------------
ENV=$OUT/env.txt
{
    echo "gpu_check.sh $(date -u +%FT%TZ) $([[ $SMOKE == 1 ]] && echo '--cpu-smoke')"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} > "$ENV"
if command -v nvidia-smi > /dev/null; then
    step env-nvidia-smi 20 "$ENV" nvidia-smi
else
    echo "nvidia-smi: not found (no NVIDIA driver on this machine)" >> "$ENV"
fi
step env-versions 30 "$ENV" "$PY" -m benchmarks.gpu_check env

# -- 2. sync probe (generates the synthetic set the later steps share) ------------------------------------------
step sync-probe 120 "$OUT/sync_probe.jsonl" "$PY" -m benchmarks.gpu_check sync-probe --device $DEVICE \
    --root "$DATA" --steps 20 "${SYN[@]}"

# -- 3. GPU tests -----------------------------------------------------------------------------------------------
step pytest-gpu 150 "$OUT/pytest_gpu.txt" "$PY" -m pytest -m gpu -v -rs -p no:cacheprovider "${PYTEST[@]}"

# -- 4. training throughput -------------------------------------------------------------------------------------
BENCH=$OUT/train_bench.jsonl
if [[ $SMOKE == 1 ]]; then
    step train-bench 60 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" "${TRAIN[@]}"
else
    step train-bench-resnet50-64 100 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" \
        "${TRAIN[@]}" --models resnet50 --batches 64
    step train-bench-resnet50-256 60 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" \
        "${TRAIN[@]}" --models resnet50 --batches 256 --variants conventional,fast
    step train-bench-mgn-64 60 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" \
        "${TRAIN[@]}" --models mgn --batches 64 --variants conventional,fast
fi

# -- 5. evaluation and re-ranking -------------------------------------------------------------------------------
for set in "${EVAL_SETS[@]}"; do
    step "eval-$set" 75 "$OUT/eval_bench.jsonl" "$PY" -m benchmarks.eval_bench --dataset "$set" "${EVAL[@]}" \
        $([[ $set == msmt17 ]] && echo --no-baseline)
    step "rerank-$set" 45 "$OUT/eval_bench.jsonl" "$PY" -m benchmarks.rerank_bench --dataset "$set" "${EVAL[@]}" \
        $([[ $SMOKE == 0 ]] && echo --no-baseline)
done

# -- 6. end to end ----------------------------------------------------------------------------------------------
step end-to-end 120 "$OUT/end_to_end.txt" "$PY" -m benchmarks.gpu_check end-to-end --device $DEVICE --root "$DATA" \
    --out "$DATA/end_to_end" "${SYN[@]}"
cat "$DATA/end_to_end/log.txt" >> "$OUT/end_to_end.txt" 2>/dev/null

# -- 7. torch.compile, with the time left ----------------------------------------------------------------------
COMPILE=$OUT/compile.jsonl
if [[ $SMOKE == 1 ]]; then
    echo '{"step": "compile", "skipped": "--cpu-smoke: compiling the training step takes minutes on a CPU"}' \
        > "$COMPILE"
    note "compile: skipped in --cpu-smoke"
elif ((BUDGET - SECONDS >= 100)); then
    # A cold compile, as a user's first run has it: inductor's on-disk caches (warmed by step 3) are not used.
    step compile $((BUDGET - SECONDS)) "$COMPILE" env TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 "$PY" \
        -m benchmarks.train_bench --device $DEVICE --root "$DATA" "${TRAIN[@]}" --models resnet50 --batches 64 \
        --variants fast,fast_compile
else
    echo "{\"step\": \"compile\", \"skipped\": \"$((BUDGET - SECONDS)) s left, fewer than 100\"}" > "$COMPILE"
    note "compile: skipped, $((BUDGET - SECONDS)) s left"
fi

note "done in $SECONDS s; $([[ $FAILED == 1 ]] && echo 'some step FAILED (see above)' || echo 'every step succeeded')"
exit $FAILED
