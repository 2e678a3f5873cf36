#!/usr/bin/env bash
# The prepared GPU check: everything that needs a GPU, in one run of at most 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh OUTDIR                # on the GPU machine
#   bash benchmarks/gpu_check.sh OUTDIR --cpu-smoke    # the same steps with tiny sizes on a CPU, in seconds (CI)
#
# Steps, most valuable first (each writes its results into OUTDIR as it goes, flushed line by line; a step that
# fails or runs out of time does not stop the next ones; the script exits 1 if any step failed):
#   1. env.txt            nvidia-smi, versions of Python, torch, CUDA, cuDNN and the libraries reid needs
#   2. sync_probe.jsonl   20 training steps of fast ResNet50 and MGN under torch.cuda.set_sync_debug_mode, after
#                         the epoch's first two: every synchronising call with its file and line
#   3. end_to_end.txt     tools/train.py: MGN on the synthetic set, 2 epochs with re-ranking and the report, then
#                         --resume to 3 epochs (log, then a JSON summary line)
#   4. pytest_gpu.txt     pytest -m gpu but the compile test (step 7 compiles): among them the 2-process DDP run on
#                         the one GPU with SyncBN, EMA and gathered pair losses (NCCL, else gloo on CUDA tensors)
#   5. train_bench.jsonl  throughput: conventional vs each speed setting alone vs all (ResNet50 batch 64), batch 256,
#                         MGN; train_step and the full loop, 100 timed steps each (python -m benchmarks.train_bench)
#   6. eval_bench.jsonl   Market-1501- and MSMT17-size evaluation (with and without verification) and re-ranking,
#                         without the CPU baselines: time and peak GPU memory, 2 runs each
#   7. (train_bench.jsonl) torch.compile: the fast set-up with and without it (compile time apart), in the time left
#   gpu_check.log         the caps, each step's command, stderr, exit status and time
# Seven files: the GPU machine returns at most eight.
#
# The steps' time caps add up to the budget GPU_CHECK_BUDGET_S (480 s), so no step is cut by the budget; the
# compile step also gets what the earlier steps left unused. The GPU machine has no network and no yacs: put its
# wheel into .whl/ at the repository root first and carry it along (see benchmarks/README.md, "The GPU check");
# without yacs the script stops at once with exit status 2.
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
BUDGET=${GPU_CHECK_BUDGET_S:-480}
LOG=$OUT/gpu_check.log
rm -f "$OUT"/{env.txt,sync_probe.jsonl,end_to_end.txt,pytest_gpu.txt,train_bench.jsonl,eval_bench.jsonl}
: > "$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

note() { echo "[$(date +%T) +$SECONDS s] $*" >> "$LOG"; }

# -- what reid needs and the GPU machine may lack (yacs): installed from carried wheels, else stop at once ------
if ! "$PY" -c "import yacs" 2>/dev/null && compgen -G ".whl/*.whl" > /dev/null; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/reid_site.XXXXXX")
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
        >> "$LOG" 2>&1
    export PYTHONPATH="$PYTHONPATH:$SITE"
    note "installed $(ls .whl | tr '\n' ' ')into $SITE"
fi
MISSING=$("$PY" - <<'EOF' 2>&1
import importlib
missing = []
for name in ("yacs", "reid.engine.trainer", "benchmarks.train_bench"):
    try:
        importlib.import_module(name)
    except ImportError as err:  # ModuleNotFoundError names the module; other import errors say why
        missing.append(getattr(err, "name", None) or str(err))
print(" ".join(sorted(set(missing))))
EOF
)
if [[ -n $MISSING ]]; then
    MSG="gpu_check.sh: $PY cannot import: $MISSING. Nothing was run. The GPU machine has no network: download the
wheel where there is one, at the repository root (.whl/ is git-ignored), and carry .whl along with the check:
    python -m pip download --no-deps --only-binary=:all: -d .whl yacs==0.1.8
(the device tool: run(..., carry=[\".whl\"])). The script installs .whl/*.whl into a temporary folder."
    echo "$MSG" >&2
    note "$MSG"
    exit 2
fi

DATA=$(mktemp -d "${TMPDIR:-/tmp}/reid_gpu_check.XXXXXX")
trap 'rm -rf "$DATA"' EXIT
FAILED=0

if [[ $SMOKE == 1 ]]; then
    export OMP_NUM_THREADS=1  # tiny models on a shared CPU: threads would only wait for each other
    DEVICE=cpu
    SYN=(--tiny)
    TRAIN=(--tiny)
    EVAL_SETS=(tiny)
    EVAL=(--device cpu --dim 64 --repeat 2 --no-baseline --in-process)
    PYTEST=(tests/gpu/test_gpu_training.py tests/gpu/test_gpu_multi.py)
else
    DEVICE=cuda
    SYN=(--ids 751 --images-per-id 6 --test-ids 50 --workers 8)
    TRAIN=(--ids 751 --images-per-id 6 --test-ids 50 --workers 8 --iters 100)
    EVAL_SETS=(market msmt17)
    EVAL=(--device cuda --repeat 2 --no-baseline)
    # The compile test is left to step 7, which compiles the real model (it would take a minute of the budget).
    PYTEST=(tests --deselect tests/gpu/test_gpu_training.py::test_compiled_training_step_on_cuda)
fi

# Time caps (s), in the order the steps run; they add up to the budget.
declare -A CAP=([env-nvidia-smi]=10 [env-versions]=15 [sync-probe]=50 [end-to-end]=80 [pytest-gpu]=90
                [train-bench-resnet50-64]=60 [train-bench-resnet50-256]=25 [train-bench-mgn-64]=25
                [eval-market]=20 [rerank-market]=15 [eval-msmt17]=35 [rerank-msmt17]=30 [compile]=25)
CAPS_SUM=0
for c in "${CAP[@]}"; do CAPS_SUM=$((CAPS_SUM + c)); done
note "step caps sum to $CAPS_SUM s; budget $BUDGET s"

# step NAME OUTFILE COMMAND...: run COMMAND with stdout appended to OUTFILE, stderr to the log, for at most
# CAP[NAME] seconds (the compile step: whatever the budget has left) and never past the budget.
step() {
    local name=$1 out=$2
    shift 2
    local left=$((BUDGET - SECONDS)) cap=${CAP[${name/tiny/market}]}  # the smoke run's tiny set: Market's caps
    [[ $name == compile ]] && cap=$left
    local limit=$((cap < left ? cap : left))
    if ((limit < 5)); then
        note "$name: skipped, ${left} s of the ${BUDGET} s budget left"
        echo "{\"step\": \"$name\", \"skipped\": \"out of time (${left} s of ${BUDGET} s left)\"}" >> "$out"
        return
    fi
    note "$name: up to ${limit} s: $*"
    local start=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" >> "$out" 2>> "$LOG"
    rc=$?
    ((rc == 124 || rc == 137)) && note "$name: stopped at its ${limit} s limit (results so far are kept)"
    note "$name: exit status $rc after $((SECONDS - start)) s"
    ((rc != 0)) && FAILED=1
    return 0
}

# -- 1. environment ---------------------------------------------------------------------------------------------
ENV=$OUT/env.txt
{
    echo "gpu_check.sh $(date -u +%FT%TZ) $([[ $SMOKE == 1 ]] && echo '--cpu-smoke')"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} > "$ENV"
if command -v nvidia-smi > /dev/null; then
    step env-nvidia-smi "$ENV" nvidia-smi
else
    echo "nvidia-smi: not found (no NVIDIA driver on this machine)" >> "$ENV"
fi
step env-versions "$ENV" "$PY" -m benchmarks.gpu_check env

# -- 2. sync probe (generates the synthetic set the later steps share) ------------------------------------------
step sync-probe "$OUT/sync_probe.jsonl" "$PY" -m benchmarks.gpu_check sync-probe --device $DEVICE --root "$DATA" \
    --steps 20 "${SYN[@]}"

# -- 3. end to end ----------------------------------------------------------------------------------------------
step end-to-end "$OUT/end_to_end.txt" "$PY" -m benchmarks.gpu_check end-to-end --device $DEVICE --root "$DATA" \
    --out "$DATA/end_to_end" "${SYN[@]}"
cat "$DATA/end_to_end/log.txt" >> "$OUT/end_to_end.txt" 2>/dev/null

# -- 4. GPU tests (the 2-process DDP run on the one GPU among them) ----------------------------------------------
step pytest-gpu "$OUT/pytest_gpu.txt" "$PY" -m pytest -m gpu -v -rs -p no:cacheprovider "${PYTEST[@]}"

# -- 5. training throughput -------------------------------------------------------------------------------------
BENCH=$OUT/train_bench.jsonl
if [[ $SMOKE == 1 ]]; then  # the smoke run checks that the steps run: two set-ups, --tiny's batch, no batch 256
    step train-bench-resnet50-64 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" \
        "${TRAIN[@]}" --models resnet50 --variants conventional,fast
    note "train-bench-resnet50-256: skipped in --cpu-smoke"
else
    step train-bench-resnet50-64 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" \
        "${TRAIN[@]}" --models resnet50 --batches 64
    step train-bench-resnet50-256 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" \
        "${TRAIN[@]}" --models resnet50 --batches 256 --variants conventional,fast
fi
step train-bench-mgn-64 "$BENCH" "$PY" -m benchmarks.train_bench --device $DEVICE --root "$DATA" "${TRAIN[@]}" \
    --models mgn --batches 64 --variants conventional,fast  # --tiny: batch 16

# -- 6. evaluation and re-ranking, without the CPU baselines ----------------------------------------------------
for set in "${EVAL_SETS[@]}"; do
    step "eval-$set" "$OUT/eval_bench.jsonl" "$PY" -m benchmarks.eval_bench --dataset "$set" "${EVAL[@]}"
    step "rerank-$set" "$OUT/eval_bench.jsonl" "$PY" -m benchmarks.rerank_bench --dataset "$set" "${EVAL[@]}"
done

# -- 7. torch.compile, with the time left ----------------------------------------------------------------------
if [[ $SMOKE == 1 ]]; then
    echo '{"step": "compile", "skipped": "--cpu-smoke: compiling the training step takes minutes on a CPU"}' \
        >> "$BENCH"
    note "compile: skipped in --cpu-smoke"
else
    # A cold compile, as a user's first run has it: inductor's on-disk caches (warmed by step 4) are not used.
    step compile "$BENCH" env TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 "$PY" -m benchmarks.train_bench --device $DEVICE \
        --root "$DATA" "${TRAIN[@]}" --models resnet50 --batches 64 --variants fast,fast_compile
fi

note "done in $SECONDS s; $([[ $FAILED == 1 ]] && echo 'some step FAILED (see above)' || echo 'every step succeeded')"
exit $FAILED
