"""python -m benchmarks.train_bench --tiny runs on a CPU in seconds, prints the promised JSON lines and leaves no files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ["conventional", "gpu_pipeline", "bf16", "channels_last", "fast"]


@pytest.mark.slow
def test_tiny_train_bench_measures_every_factor_alone_for_both_models(tmp_path):
    scratch = tmp_path / "tmp"  # the benchmark's default --root is a temporary folder: it must be gone at the end
    scratch.mkdir()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_bench", "--tiny", "--device", "cpu",
                           "--epoch-model", "resnet50"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor")] == []  # torch's own cache
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout holds JSON lines only
    runs = {(r["bench"], r["model"], r["variant"]): r for r in lines}
    assert sorted(runs) == sorted([("train_throughput", m, v) for m in ("resnet50", "mgn") for v in VARIANTS]
                                  + [("train_epoch", "resnet50", v) for v in ("conventional", "fast")])
    for r in lines:
        assert r["images_per_s"] > 0 and r["device"].startswith("cpu") and r["torch"] and r["tiny"]
        if r["bench"] == "train_throughput":  # the full loop (hooks, EMA), timed as well
            assert r["loop_images_per_s"] > 0 and r["loop_ema"]
        assert set(r["fp32_precision"]) == {"conv", "matmul"}
    for model in ("resnet50", "mgn"):
        base = runs["train_throughput", model, "conventional"]
        assert base["settings"] == {"DATALOADER.PIPELINE": "workers", "SOLVER.AMP": "off", "MODEL.COMPILE": "False",
                                    "MODEL.CHANNELS_LAST": "False", "SOLVER.FUSED": "True"}
        assert base["cache"] is None and base["peak_gpu_mb"] is None
        for variant in VARIANTS:
            r = runs["train_throughput", model, variant]
            assert r["speedup_vs_conventional"] == r["images_per_s"] / base["images_per_s"]
            assert r["iters"] == 3 and r["warmup_iters"] >= r["prefetched_batches_drained"] + 5
            assert r["first_step_s"] > 0 and "compile_s" not in r
            changed = {k for k, v in r["settings"].items() if v != base["settings"][k]}
            assert len(changed) == {"conventional": 0, "fast": 3}.get(variant, 1)  # one factor alone
        fast = runs["train_throughput", model, "fast"]
        assert fast["settings"]["DATALOADER.PIPELINE"] == "gpu" and fast["settings"]["SOLVER.AMP"] == "bf16"
        assert fast["cache"] == {"on_device": False, "mb": fast["cache"]["mb"], "where": "host"}
        assert fast["cache"]["mb"] > 0
    assert runs["train_throughput", "mgn", "fast"]["input"] == [96, 32]
    assert all(runs["train_epoch", "resnet50", v]["total_s"] > 0 for v in ("conventional", "fast"))
