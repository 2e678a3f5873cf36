"""benchmarks/gpu_check.sh --cpu-smoke: the prepared GPU check runs every step with tiny sizes on the CPU, so the
script cannot rot between the sessions that have a GPU. Checks its files (7: the GPU machine returns at most 8;
none empty, JSON lines that parse), that its step caps fit the 480 s budget, what each step reports, and that it
stops at once (exit status 2) when its Python cannot import yacs."""
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from benchmarks.gpu_check import recorded_sync_warnings

ROOT = Path(__file__).resolve().parents[2]
FILES = ["end_to_end.txt", "env.txt", "eval_bench.jsonl", "gpu_check.log", "pytest_gpu.txt", "sync_probe.jsonl",
         "train_bench.jsonl"]
BUDGET_S = 480


def _jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_step(tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--cpu-smoke"], cwd=ROOT,
                          env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(scratch)}, capture_output=True,
                          text=True, timeout=600)
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").is_file() else proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert sorted(p.name for p in out.iterdir()) == FILES  # at most 8 files come back from the GPU machine
    assert all((out / name).stat().st_size > 0 for name in FILES)
    assert "every step succeeded" in log and "exit status 0" in log and "exit status 1" not in log
    caps = int(re.search(r"step caps sum to (\d+) s; budget (\d+) s", log).group(1))
    assert caps <= BUDGET_S and f"budget {BUDGET_S} s" in log  # on paper, no step is cut by the budget
    order = [m for m in re.findall(r"\] (\S+): up to", log)]
    assert order == ["env-versions", "sync-probe", "end-to-end", "pytest-gpu", "train-bench-resnet50-64",
                     "train-bench-mgn-64", "eval-tiny", "rerank-tiny"]  # batch 256: on a GPU only
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor")] == []  # data removed

    env = (out / "env.txt").read_text()
    assert '"torch"' in env and '"yacs"' in env and "nvidia-smi" in env
    probes = _jsonl(out / "sync_probe.jsonl")
    assert [p["model"] for p in probes] == ["resnet50", "mgn"]
    assert all(p["steps"] > 0 and p["violations"] == [] and "skipped" in p["detection"] for p in probes)
    bench_lines = _jsonl(out / "train_bench.jsonl")
    bench = {(r["model"], r["variant"], r["batch"]): r for r in bench_lines if "bench" in r}
    assert sorted(bench) == [("mgn", "conventional", 16), ("mgn", "fast", 16), ("resnet50", "conventional", 16),
                             ("resnet50", "fast", 16)]
    assert all(r["images_per_s"] > 0 and r["loop_images_per_s"] > 0 for r in bench.values())
    assert len([r for r in bench_lines if "bench" in r]) == 4
    assert "skipped" in bench_lines[-1] and bench_lines[-1]["step"] == "compile"
    evals = _jsonl(out / "eval_bench.jsonl")
    assert [(e["bench"], e["impl"]) for e in evals] == [("eval", "reid"), ("eval", "reid+verification"),
                                                         ("rerank", "reid")]
    assert all(len(e["wall_s_all"]) == 2 for e in evals)  # twice each
    pytest_out = (out / "pytest_gpu.txt").read_text()
    assert "SKIPPED" in pytest_out and "needs a CUDA GPU" in pytest_out and "failed" not in pytest_out
    summary = next(json.loads(line) for line in (out / "end_to_end.txt").read_text().splitlines()
                   if line.startswith('{"end_to_end"'))
    assert [(r["epochs"], r["resume"], r["rc"]) for r in summary["runs"]] == [(2, False, 0), (3, True, 0)]
    assert summary["model_last_epoch"] == 3 and summary["rerank"]["mAP"] > 0
    assert {"model_best.pt", "model_final.pt", "report.html", "metrics.json"} <= set(summary["files"])
    assert "Resumed from" in (out / "end_to_end.txt").read_text()


def test_gpu_check_stops_at_once_when_its_python_cannot_import_yacs(tmp_path):
    """The GPU machine has no yacs unless its wheel is carried: every step would fail, so nothing runs."""
    shadow = tmp_path / "shadow" / "yacs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'yacs'\", name='yacs')\n")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path / "shadow")},
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "cannot import: yacs" in proc.stderr and "pip download" in proc.stderr and ".whl" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log"]  # no step ran
    assert "Nothing was run" in (out / "gpu_check.log").read_text()


def _step_that_synchronises():
    warnings.warn("called a synchronizing CUDA operation")  # what torch's sync debug mode "warn" reports


def test_sync_probe_records_each_synchronising_call_with_its_stack():
    found = {}
    with recorded_sync_warnings(found):
        for _ in range(3):
            _step_that_synchronises()
        warnings.warn("an unrelated warning")  # not a synchronisation: ignored
    (entry,) = found.values()
    assert entry["count"] == 3 and entry["message"] == "called a synchronizing CUDA operation"
    file, line, function, code = entry["stack"][-1]
    assert file == "tests/gpu/test_gpu_check.py" and function == "_step_that_synchronises" and "warnings.warn" in code
