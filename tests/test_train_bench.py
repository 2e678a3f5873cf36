"""benchmarks/train_bench.py --tiny runs on a CPU in seconds and prints the promised JSON lines."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_train_bench_prints_both_pipelines_for_both_models(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_bench.py"), "--tiny", "--device", "cpu",
                           "--root", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout holds JSON lines only
    runs = {(r["bench"], r["model"], r["pipeline"]): r for r in lines}
    assert sorted(runs) == sorted([("train_throughput", m, p) for m in ("resnet50", "mgn")
                                   for p in ("conventional", "fast")]
                                  + [("train_epoch", "resnet50", p) for p in ("conventional", "fast")])
    for r in lines:
        assert r["images_per_s"] > 0 and r["device"].startswith("cpu") and r["torch"] and r["tiny"]
    for model in ("resnet50", "mgn"):
        fast, conventional = runs["train_throughput", model, "fast"], runs["train_throughput", model, "conventional"]
        assert fast["speedup_vs_conventional"] == fast["images_per_s"] / conventional["images_per_s"]
        assert fast["settings"]["DATALOADER.PIPELINE"] == "gpu" and fast["settings"]["SOLVER.AMP"] == "bf16"
        assert conventional["settings"]["DATALOADER.PIPELINE"] == "workers"
        assert conventional["settings"]["SOLVER.AMP"] == "off" and fast["peak_gpu_mb"] is None
    assert runs["train_throughput", "mgn", "fast"]["input"] == [96, 32]
    assert all(runs["train_epoch", "resnet50", p]["total_s"] > 0 for p in ("conventional", "fast"))
