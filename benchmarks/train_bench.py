"""Training benchmark: images/second and peak GPU memory of the real training step, fast vs conventional input.

For ResNet50 (256x128) and MGN (384x128), P x K = 16 x 4, each measured in the same run with
  conventional: DATALOADER.PIPELINE workers (PIL decode + CPU transforms in loader workers), fp32, NCHW, foreach Adam
  fast:         DATALOADER.PIPELINE gpu (decoded uint8 cache, batched augmentation on the device), bf16 autocast,
                channels-last, fused Adam (and torch.compile with --compile)
on the built-in synthetic dataset (Market-1501 layout, JPEG files on disk, generated on first use into --root).
Throughput is the steady state: ``Trainer.train_step`` over ``--iters`` batches after ``--warmup`` batches, the
device synchronised at both ends. Then one full synthetic epoch end to end per pipeline (building the trainer,
including decoding the cache, one epoch, evaluation, checkpoints). One JSON line per measurement.

    python benchmarks/train_bench.py --device cuda                  # H100 figures (ids/images: Market-1501 sized)
    python benchmarks/train_bench.py --device cuda --compile --iters 200
    python benchmarks/train_bench.py --tiny                         # seconds on a CPU: tiny models and data (CI)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.config import load_cfg  # noqa: E402
from reid.engine.hooks import HISTORY  # noqa: E402
from reid.engine.trainer import Trainer  # noqa: E402

CONFIGS = {"resnet50": ROOT / "configs/Market1501/resnet50_circle.yml",
           "mgn": ROOT / "configs/Market1501/mgn_circle.yml"}
TINY_SIZES = {"resnet50": "[64, 32]", "mgn": "[96, 32]"}


def pipeline_settings(name: str, workers: int, compile_model: bool) -> List[str]:
    """Config overrides of the two input/precision set-ups compared."""
    if name == "conventional":
        return ["DATALOADER.PIPELINE", "workers", "DATALOADER.NUM_WORKERS", str(workers), "SOLVER.AMP", "off",
                "MODEL.CHANNELS_LAST", "False", "SOLVER.FUSED", "False", "MODEL.COMPILE", "False"]
    return ["DATALOADER.PIPELINE", "gpu", "DATALOADER.NUM_WORKERS", str(workers), "SOLVER.AMP", "bf16",
            "MODEL.CHANNELS_LAST", "True", "SOLVER.FUSED", "True", "MODEL.COMPILE", str(compile_model)]


def data_settings(args: argparse.Namespace) -> List[str]:
    syn = "DATASETS.SYNTHETIC."
    return ["DATASETS.ROOT", args.root, "DATASETS.NAMES", "['Synthetic']", "DATASETS.TESTS", "['Synthetic']",
            syn + "NUM_TRAIN_IDS", str(args.ids), syn + "IMAGES_PER_ID", str(args.images_per_id),
            syn + "NUM_TEST_IDS", str(args.test_ids), syn + "NUM_DISTRACTORS", str(args.test_ids),
            syn + "NUM_JUNK", str(args.test_ids // 4)]


def model_settings(model: str, args: argparse.Namespace) -> List[str]:
    opts = ["MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DEVICE", args.device, "SOLVER.IMS_PER_BATCH", str(args.batch),
            "DATALOADER.NUM_INSTANCE", "4", "VIS.REPORT", "False", "SOLVER.LOG_PERIOD", "1000000"]
    if args.tiny:
        opts += ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 1, 1]", "MODEL.BACKBONE.WIDTH", "8",
                 "INPUT.SIZE_TRAIN", TINY_SIZES[model], "INPUT.SIZE_TEST", TINY_SIZES[model]]
    return opts


def build_cfg(model: str, pipeline: str, args: argparse.Namespace, output_dir: str, *extra: str):
    return load_cfg(CONFIGS[model], data_settings(args) + model_settings(model, args)
                    + pipeline_settings(pipeline, args.workers, args.compile)
                    + ["OUTPUT_DIR", output_dir, *extra])


def cfg_value(cfg, key: str):
    """The value of a dotted key such as ``SOLVER.AMP``."""
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def endless(trainer: Trainer) -> Iterator[Dict[str, object]]:
    """Training batches across epoch boundaries, as the training loop sees them."""
    epoch = 0
    while True:
        trainer.train_loader.set_epoch(epoch)
        yield from trainer.train_loader
        epoch += 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": f"{device.type}: {name}", "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "load_avg_1min": os.getloadavg()[0]}


def measure_throughput(model: str, pipeline: str, args: argparse.Namespace) -> dict:
    """Steady-state training images/s and peak GPU memory of one model and pipeline."""
    with tempfile.TemporaryDirectory(prefix="train_bench_") as out:
        cfg = build_cfg(model, pipeline, args, out)
        start = time.perf_counter()
        trainer = Trainer(cfg)
        setup_s = time.perf_counter() - start
        device = trainer.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer.model.train()
        batches = endless(trainer)
        for _ in range(args.warmup):
            trainer.train_step(next(batches))
        sync(device)
        start, images = time.perf_counter(), 0
        for _ in range(args.iters):
            batch = next(batches)
            trainer.train_step(batch)
            images += batch["images"].shape[0]
        sync(device)
        elapsed = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        settings = {key: cfg_value(cfg, key) for key in pipeline_settings(pipeline, 0, False)[::2]}
        del batches, trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"bench": "train_throughput", "model": model, "pipeline": pipeline, "images_per_s": images / elapsed,
            "peak_gpu_mb": peak, "iters": args.iters, "warmup": args.warmup, "batch": cfg.SOLVER.IMS_PER_BATCH,
            "input": list(cfg.INPUT.SIZE_TRAIN), "setup_s": setup_s, "settings": settings, "tiny": args.tiny,
            **environment(device)}


def measure_epoch(model: str, pipeline: str, args: argparse.Namespace) -> dict:
    """One synthetic epoch end to end: trainer construction (data, cache), training, evaluation, checkpoints."""
    with tempfile.TemporaryDirectory(prefix="train_bench_") as out:
        cfg = build_cfg(model, pipeline, args, out, "SOLVER.MAX_EPOCHS", "1", "SOLVER.WARMUP_EPOCHS", "0")
        start = time.perf_counter()
        trainer = Trainer(cfg)
        setup_s = time.perf_counter() - start
        metrics = trainer.train()
        total_s = time.perf_counter() - start
        epoch = json.loads((Path(out) / HISTORY).read_text().splitlines()[0])
        device = trainer.device
    return {"bench": "train_epoch", "model": model, "pipeline": pipeline, "total_s": total_s, "setup_s": setup_s,
            "train_s": epoch["time_s"], "images_per_s": epoch["images_per_s"],
            "eval_and_checkpoints_s": total_s - setup_s - epoch["time_s"],
            "train_images": args.ids * args.images_per_id, "rank1": metrics["rank1"], "tiny": args.tiny,
            **environment(device)}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="MODEL.DEVICE: auto, cpu, cuda, cuda:N")
    p.add_argument("--models", default="resnet50,mgn", help="comma-separated: resnet50, mgn")
    p.add_argument("--iters", type=int, default=50, help="measured iterations per model and pipeline")
    p.add_argument("--warmup", type=int, default=15, help="iterations before measuring (cuDNN autotune, compile)")
    p.add_argument("--batch", type=int, default=64, help="SOLVER.IMS_PER_BATCH (P x K with K = 4)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DATALOADER.NUM_WORKERS")
    p.add_argument("--compile", action="store_true", help="torch.compile in the fast set-up")
    p.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "reid_train_bench"),
                   help="DATASETS.ROOT for the synthetic set (kept between runs)")
    p.add_argument("--ids", type=int, default=751, help="training identities (Market-1501: 751)")
    p.add_argument("--images-per-id", type=int, default=17, help="images per identity (Market-1501: ~17)")
    p.add_argument("--test-ids", type=int, default=100, help="test identities (evaluation cost of the epoch run)")
    p.add_argument("--epoch-model", default="resnet50", help="model of the end-to-end epoch ('' skips it)")
    p.add_argument("--tiny", action="store_true",
                   help="CPU smoke run: ResNet18-like width 8, tiny inputs and data, 3 iterations")
    args = p.parse_args(argv)
    if args.tiny:
        args.ids, args.images_per_id, args.test_ids = 8, 6, 8
        args.iters, args.warmup, args.batch, args.workers = 3, 1, 16, 0
        args.root = str(Path(args.root) / "tiny")
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    # The engine's log goes to stderr (setup_logger keeps an existing console handler): stdout is JSON only.
    logging.getLogger("reid").addHandler(logging.StreamHandler(sys.stderr))
    if args.tiny:
        torch.set_num_threads(1)  # tiny models: thread synchronisation would cost more than it saves
    for model in args.models.split(","):
        conventional = measure_throughput(model, "conventional", args)
        print(json.dumps(conventional), flush=True)
        fast = measure_throughput(model, "fast", args)
        fast["speedup_vs_conventional"] = fast["images_per_s"] / conventional["images_per_s"]
        print(json.dumps(fast), flush=True)
    if args.epoch_model:
        for pipeline in ("conventional", "fast"):
            print(json.dumps(measure_epoch(args.epoch_model, pipeline, args)), flush=True)


if __name__ == "__main__":
    main()
