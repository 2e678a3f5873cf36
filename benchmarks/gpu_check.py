"""The steps of ``benchmarks/gpu_check.sh`` that are Python: the environment, the sync probe, the end-to-end run.

    python benchmarks/gpu_check.py env
    python benchmarks/gpu_check.py sync-probe --device cuda --root DATA [--steps 20] [--tiny]
    python benchmarks/gpu_check.py end-to-end --device cuda --root DATA --out DIR [--tiny]

The synthetic data, model sizes and set-ups are those of ``train_bench.py`` (same --root, --ids, --images-per-id,
--test-ids), so the steps of one check share one generated set.

**Sync probe.** The training step must never wait for the GPU (CONTRIBUTING.md, "Training hooks"). For the fast
set-up of ResNet50 and MGN it runs the loop body (next batch, ``train_step``, loss sums, every hook's
``after_step``) for ``--steps`` steps after the epoch's first batch (which autotunes cuDNN and starts the epoch's
plan) under ``torch.cuda.set_sync_debug_mode``. Violations are recorded, not raised: in "warn" mode torch reports
every synchronising call, and each is kept with the Python stack that made it (file, line, function in reid), so
one run lists them all. SOLVER.LOG_PERIOD is set beyond the window: the periodic read-back is by design. One JSON
line per model. On a CPU the same steps run without detection (nothing to synchronise with), which the line says.

**End to end.** ``tools/train.py``'s main trains MGN (fast set-up) for 2 epochs with evaluation and k-reciprocal
re-ranking after each epoch and the report, then ``--resume --allow-config-change`` continues the same run to 3
epochs (SOLVER.MAX_EPOCHS is a result-changing key); the tool's log goes to stderr, then one JSON summary line
(metrics, files, times) to stdout.
"""
from __future__ import annotations

import argparse
import json
from importlib import metadata
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import train_bench  # noqa: E402
from reid.cli.train import main as train_main  # noqa: E402
from reid.engine.trainer import Trainer  # noqa: E402

PROBE_BATCH = 64


def versions() -> dict:
    """What the results depend on: Python, torch and its CUDA / cuDNN, the libraries reid needs, the device."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "cpu": train_bench.cpu_name(), "cpu_count": os.cpu_count(),
           "cuda_available": torch.cuda.is_available(), "fp32_precision": train_bench.fp32_precision()}
    for name in ("torchvision", "numpy", "yacs", "pillow", "tqdm", "matplotlib", "tensorboard", "onnx", "onnxruntime",
                 "pytest", "hypothesis"):
        try:
            out[name] = metadata.version(name)  # installed version, without importing the package
        except metadata.PackageNotFoundError:
            out[name] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                      "memory_gb": round(props.total_memory / 1e9, 1), "multiprocessors": props.multi_processor_count,
                      "count": torch.cuda.device_count()}
    return out


def bench_args(args: argparse.Namespace) -> argparse.Namespace:
    """train_bench's options for the same data and sizes (its --tiny presets included)."""
    argv = ["--device", args.device, "--root", args.root, "--ids", str(args.ids), "--images-per-id",
            str(args.images_per_id), "--test-ids", str(args.test_ids), "--workers", str(args.workers)]
    return train_bench.parse_args(argv + (["--tiny"] if args.tiny else []))


@contextmanager
def recorded_sync_warnings(found: Dict[tuple, dict]) -> Iterator[None]:
    """Inside the block, warnings about synchronising CUDA calls are recorded in ``found`` (keyed by the repository
    frames of the Python stack that made them, with a count and the innermost frames) instead of printed."""

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" not in str(message):
            return
        frames = [f for f in traceback.extract_stack()[:-1] if str(ROOT) in f.filename]
        where = [[os.path.relpath(f.filename, ROOT), f.lineno, f.name, (f.line or "").strip()] for f in frames]
        key = tuple((w[0], w[1]) for w in where[-4:]) or ((filename, lineno),)
        entry = found.setdefault(key, {"count": 0, "message": str(message), "stack": where[-6:]})
        entry["count"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record  # restored by catch_warnings
        yield


@contextmanager
def sync_recorder(device: torch.device, found: Dict[tuple, dict]) -> Iterator[None]:
    """Inside the block every synchronising CUDA call is recorded in ``found`` instead of raised (torch's sync
    debug mode "warn" reports each one). A no-op without CUDA."""
    if device.type != "cuda":
        yield
        return
    with recorded_sync_warnings(found):
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)


def probe(model: str, args: argparse.Namespace) -> dict:
    """``args.steps`` training steps of ``model``'s fast set-up after the epoch's first batch, synchronising
    calls recorded."""
    tb = bench_args(args)
    batch = 16 if args.tiny else PROBE_BATCH
    with tempfile.TemporaryDirectory(prefix="sync_probe_") as out:
        cfg = train_bench.build_cfg(model, "fast", batch, tb, out)
        trainer = Trainer(cfg)
        device = trainer.device
        trainer.model.train()
        trainer.train_loader.set_epoch(0)
        for hook in trainer.hooks:
            hook.before_train()
            hook.before_epoch()
        batches = iter(trainer.train_loader)
        found: Dict[tuple, dict] = {}
        steps = 0

        def step(i: int) -> None:
            trainer.iter = i
            trainer.terms = trainer.train_step(next(batches))
            trainer.losses.add(trainer.terms)
            for hook in trainer.hooks:
                hook.after_step()

        step(0)  # the epoch's first batch: cuDNN autotuning, lazy initialisation
        with sync_recorder(device, found):
            for i in range(1, min(args.steps, len(trainer.train_loader) - 1) + 1):
                step(i)
                steps += 1
        losses = trainer.losses.means()
        trainer.train_loader.close()
    line = {"probe": "sync", "model": model, "steps": steps, "batch": batch,
            "settings": train_bench.variant_settings("fast"),
            "violations": sorted(found.values(), key=lambda v: -v["count"]), "losses": losses,
            "device": train_bench.device_label(device)}
    if device.type != "cuda":
        line["detection"] = "skipped: no CUDA device (the steps ran without synchronisation checks)"
    return line


def end_to_end(args: argparse.Namespace) -> dict:
    """MGN via tools/train.py: 2 epochs (evaluation, re-ranking, report every epoch), then --resume to 3."""
    tb = bench_args(args)
    batch = 16 if args.tiny else PROBE_BATCH
    opts = (train_bench.config_opts("mgn", "fast", batch, tb)
            + ["VIS.REPORT", "True", "TEST.RERANK.ENABLED", "True", "TEST.EVAL_PERIOD", "1", "SOLVER.LOG_PERIOD",
               "20", "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", args.out])
    runs = []
    for epochs, resume in ((2, False), (3, True)):
        start = time.perf_counter()
        try:  # the command-line tool's main, in this process (one start-up for both runs)
            rc = train_main(["--config", str(train_bench.CONFIGS["mgn"]), *opts, "SOLVER.MAX_EPOCHS", str(epochs),
                             *(["--resume", "--allow-config-change"] if resume else [])])  # 2 -> 3 epochs
        except Exception:  # noqa: BLE001 - reported in the summary, the traceback in the log
            traceback.print_exc()
            rc = 1
        runs.append({"epochs": epochs, "resume": resume, "rc": rc, "wall_s": round(time.perf_counter() - start, 1)})
        if rc:
            break
    out = Path(args.out)
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    summary = {"end_to_end": "mgn", "runs": runs, "files": sorted(p.name for p in out.iterdir() if p.is_file()),
               "model_last_epoch": torch.load(out / "model_last.pt", map_location="cpu", weights_only=True)["epoch"]
               if (out / "model_last.pt").is_file() else None}
    for key in ("rank1", "mAP", "mINP", "train_time_s"):
        summary[key] = metrics.get(key)
    summary["rerank"] = {k: v for k, v in (metrics.get("datasets", {}).get("Synthetic", {}).get("rerank") or {}).items()
                         if k in ("rank1", "mAP", "mINP")}
    return summary


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["env", "sync-probe", "end-to-end"])
    p.add_argument("--device", default="auto", help="MODEL.DEVICE")
    p.add_argument("--root", default=None, help="DATASETS.ROOT of the synthetic set (shared by the steps)")
    p.add_argument("--out", default=None, help="end-to-end: OUTPUT_DIR of the run")
    p.add_argument("--models", default="resnet50,mgn", help="sync-probe: comma-separated models")
    p.add_argument("--steps", type=int, default=20, help="sync-probe: steps checked after the epoch's first batch")
    p.add_argument("--ids", type=int, default=751, help="training identities of the synthetic set")
    p.add_argument("--images-per-id", type=int, default=6, help="images per identity")
    p.add_argument("--test-ids", type=int, default=50, help="test identities")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DATALOADER.NUM_WORKERS")
    p.add_argument("--tiny", action="store_true", help="tiny models and data (train_bench.py --tiny): CPU smoke runs")
    args = p.parse_args(argv)
    if args.step != "env" and not args.root:
        p.error(f"{args.step} needs --root (the synthetic set's folder)")
    if args.step == "end-to-end" and not args.out:
        p.error("end-to-end needs --out (the run's OUTPUT_DIR)")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.step == "env":
        print(json.dumps(versions(), indent=1), flush=True)
        return 0
    import logging

    logging.getLogger("reid").addHandler(logging.StreamHandler(sys.stderr))  # stdout: JSON lines (and tool logs)
    if args.tiny:
        torch.set_num_threads(1)
    if args.step == "sync-probe":
        for model in args.models.split(","):
            print(json.dumps(probe(model, args)), flush=True)
        return 0
    summary = end_to_end(args)
    print(json.dumps(summary), flush=True)
    return 0 if all(r["rc"] == 0 for r in summary["runs"]) and len(summary["runs"]) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
