"""The steps of ``benchmarks/gpu_check.sh`` that are Python: the environment, the sync probe, the end-to-end run.

    python -m benchmarks.gpu_check env
    python -m benchmarks.gpu_check sync-probe --device cuda --root DATA [--steps 20] [--tiny]
    python -m benchmarks.gpu_check end-to-end --device cuda --root DATA --out DIR [--tiny]

The synthetic data, model sizes and set-ups are those of ``train_bench`` (``training_setups.py``: same --root,
--ids, --images-per-id, --test-ids), so the steps of one check share one generated set.

**Sync probe.** The training step must never wait for the GPU (CONTRIBUTING.md, "Training hooks"). For the fast
set-up of ResNet50 and MGN it runs the real training loop (``Trainer.train`` stopped by ``max_iters``: next batch,
``run_step`` with every hook's ``after_step``) for ``--steps`` steps after the epoch's first two batches (the first
autotunes cuDNN and starts the epoch's plan; before the second the image cache moves to the GPU) under
``torch.cuda.set_sync_debug_mode``, switched on and off by a hook that runs after all others. Violations are
recorded, not raised: in "warn" mode torch reports every synchronising call, and each is kept with the Python stack
that made it (file, line, function in reid), so one run lists them all. SOLVER.LOG_PERIOD is set beyond the window:
the periodic read-back is by design. One JSON line per model. On a CPU the same steps run without detection (nothing
to synchronise with), which the line says.

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
import tempfile
import time
import traceback
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch

from reid.cli.train import main as train_main
from reid.engine.hooks import HookBase
from reid.engine.trainer import Trainer

from .common import ROOT, cpu_name, device_label, emit, fp32_precision, log_to_stderr
from .training_setups import CONFIGS, add_data_options, build_cfg, config_opts, use_tiny_data, variant_settings

PROBE_BATCH = 64


def versions() -> dict:
    """What the results depend on: Python, torch and its CUDA / cuDNN, the libraries reid needs, the device."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
           "cuda_available": torch.cuda.is_available(), "fp32_precision": fp32_precision()}
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


class SyncWindow(HookBase):
    """Records the synchronising calls of training steps ``2..steps + 1`` (after the epoch's first, which autotunes,
    and the second, before which a CACHE_DEVICE_GB -1 image cache moves to the GPU once): switched on after every
    other hook's ``after_step`` of step 1, off after theirs of step ``steps + 1``."""

    priority = 1000  # after every hook of the trainer, so that the whole of each step is inside the window

    def __init__(self, steps: int, device: torch.device, found: Dict[tuple, dict], stack: ExitStack) -> None:
        self.steps, self.device, self.found, self.stack = steps, device, found, stack

    def after_step(self) -> None:
        if self.trainer.iter == 1:
            self.stack.enter_context(sync_recorder(self.device, self.found))
        elif self.trainer.iter == self.steps + 1:
            self.stack.close()


def probe(model: str, args: argparse.Namespace) -> dict:
    """``args.steps`` steps of the training loop of ``model``'s fast set-up after the epoch's first two batches,
    synchronising calls recorded."""
    batch = 16 if args.tiny else PROBE_BATCH
    found: Dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sync_probe_") as out, ExitStack() as window:
        trainer = Trainer(build_cfg(model, "fast", batch, args, out))
        steps = min(args.steps, trainer.iters_per_epoch - 3)  # within the first epoch, stopped inside it
        trainer.register_hooks([SyncWindow(steps, trainer.device, found, window)])
        trainer.max_iters = steps + 2
        trainer.train()
        losses = trainer.losses.means()
    line = {"probe": "sync", "model": model, "steps": steps, "batch": batch, "settings": variant_settings("fast"),
            "violations": sorted(found.values(), key=lambda v: -v["count"]), "losses": losses,
            "device": device_label(trainer.device)}
    if trainer.device.type != "cuda":
        line["detection"] = "skipped: no CUDA device (the steps ran without synchronisation checks)"
    return line


def end_to_end(args: argparse.Namespace) -> dict:
    """MGN via tools/train.py: 2 epochs (evaluation, re-ranking, report every epoch), then --resume to 3."""
    batch = 16 if args.tiny else PROBE_BATCH
    opts = (config_opts("mgn", "fast", batch, args)
            + ["VIS.REPORT", "True", "TEST.RERANK.ENABLED", "True", "TEST.EVAL_PERIOD", "1", "SOLVER.LOG_PERIOD",
               "20", "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", args.out])
    runs = []
    for epochs, resume in ((2, False), (3, True)):
        start = time.perf_counter()
        try:  # the command-line tool's main, in this process (one start-up for both runs)
            rc = train_main(["--config", str(CONFIGS["mgn"]), *opts, "SOLVER.MAX_EPOCHS", str(epochs),
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
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0],
                                epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["env", "sync-probe", "end-to-end"])
    p.add_argument("--device", default="auto", help="MODEL.DEVICE")
    p.add_argument("--root", default=None, help="DATASETS.ROOT of the synthetic set (shared by the steps)")
    p.add_argument("--out", default=None, help="end-to-end: OUTPUT_DIR of the run")
    p.add_argument("--models", default="resnet50,mgn", help="sync-probe: comma-separated models")
    p.add_argument("--steps", type=int, default=20, help="sync-probe: steps checked after the epoch's first batch")
    add_data_options(p, images_per_id=6, test_ids=50)
    p.add_argument("--tiny", action="store_true", help="tiny models and data (train_bench --tiny): CPU smoke runs")
    args = p.parse_args(argv)
    if args.step != "env" and not args.root:
        p.error(f"{args.step} needs --root (the synthetic set's folder)")
    if args.step == "end-to-end" and not args.out:
        p.error("end-to-end needs --out (the run's OUTPUT_DIR)")
    if args.tiny:
        use_tiny_data(args)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.step == "env":
        print(json.dumps(versions(), indent=1), flush=True)
        return 0
    log_to_stderr()
    if args.tiny:
        torch.set_num_threads(1)
    if args.step == "sync-probe":
        for model in args.models.split(","):
            emit(probe(model, args))
        return 0
    summary = end_to_end(args)
    emit(summary)
    return 0 if all(r["rc"] == 0 for r in summary["runs"]) and len(summary["runs"]) == 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
