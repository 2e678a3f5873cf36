"""Training benchmark: steady-state images/second of the real training step, and what each speed setting adds.

For ResNet50 (256x128) and MGN (384x128) with P x K batches (K = 4), on the built-in synthetic set (JPEG files in
the Market-1501 layout, generated into --root, a temporary folder unless given), each line one set-up measured in
the same run as the conventional one it is compared with:

    conventional    DATALOADER.PIPELINE workers (PIL decode + per-image CPU augmentation in loader workers), fp32
                    (convolutions in TF32, torch's default on CUDA: the line reports fp32_precision), NCHW, eager
    gpu_pipeline    + the decoded uint8 cache with batched augmentation on the device (DATALOADER.PIPELINE gpu)
    bf16            + bf16 autocast (SOLVER.AMP bf16)
    channels_last   + channels-last memory layout (MODEL.CHANNELS_LAST)
    compile         + torch.compile (MODEL.COMPILE)
    fast            gpu_pipeline + bf16 + channels_last;  fast_compile: + compile

Each of the four factors is switched on alone, so the speed-up splits into its parts; every set-up uses the fused
Adam step (SOLVER.FUSED, the default). Measurement: the real ``Trainer.train_step`` (forward, losses, backward,
optimizer step), then, on the same trainer, the full training loop (``Trainer.train`` stopped by ``max_iters``:
every hook of the run, the loss sums on the device, the per-epoch checkpoints written in the background, and an EMA
of the weights, ``SOLVER.EMA``, switched on) over --warmup + --iters steps, of which the last --iters are timed
(``loop_images_per_s``; ``loop_vs_step`` is its ratio to ``images_per_s``). A warm-up runs first, at least
--warmup steps and never fewer than the loader's prefetched batches (workers x prefetch factor, or the fast
pipeline's host prefetch) plus 5, so the timed steps do not consume batches made before the clock started; then
--iters steps (200) are timed with the device synchronised at both ends.
The first step's time is reported apart (``first_step_s``: cuDNN autotuning, and compilation for the compile
set-ups, where it is also ``compile_s``); ``images_per_s`` is the steady state without it. Each line says where the
image cache sits (``cache``: device / host, its size). One JSON line per measurement on stdout (the log on stderr).

    python -m benchmarks.train_bench --device cuda                               # ResNet50 and MGN, batch 64
    python -m benchmarks.train_bench --device cuda --models resnet50 --batches 64,256
    python -m benchmarks.train_bench --device cuda --variants fast --compile     # + compile, fast_compile
    python -m benchmarks.train_bench --tiny                                      # seconds on a CPU (the CI test)
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch

from reid.engine.hooks import HISTORY, EMAHook, HookBase
from reid.engine.trainer import Trainer

from .common import device_label, emit, fp32_precision, load_average, log_to_stderr, synchronize
from .training_setups import VARIANTS, add_data_options, build_cfg, use_tiny_data, variant_settings

COMPILED = ("compile", "fast_compile")
EXTRA_WARMUP = 5  # steps after the prefetched batches are drained, before the clock starts


LOOP_EMA_DECAY = 0.9998  # SOLVER.EMA.DECAY's default


class LoopClock(HookBase):
    """Times steps ``warmup + 1 .. max_iters`` of the training loop, device synchronised at both ends; runs after
    every other hook, so each timed step includes all of them."""

    priority = 1000

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start: Optional[float] = None
        self.elapsed = 0.0

    def after_step(self) -> None:
        t = self.trainer
        step = t.epoch * t.iters_per_epoch + t.iter + 1
        if step == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()
        elif step == t.max_iters:
            synchronize(self.device)
            self.elapsed = time.perf_counter() - self.start


def loop_throughput(trainer: Trainer, warmup: int, iters: int, batch: int) -> float:
    """Images/s of the full training loop (every hook of the run, EMA switched on) after ``warmup`` steps."""
    if trainer.ema is None:
        trainer.ema = EMAHook(LOOP_EMA_DECAY)
        trainer.register_hooks([trainer.ema])
    clock = LoopClock(warmup, trainer.device)
    trainer.register_hooks([clock])
    trainer.start_epoch, trainer.max_iters = 0, warmup + iters
    trainer.train()
    trainer.checkpointer.wait()  # a per-epoch checkpoint may still be on its way to disk (stopped mid-epoch)
    return iters * batch / clock.elapsed


def endless(trainer: Trainer) -> Iterator[Dict[str, object]]:
    """Training batches across epoch boundaries, as the training loop sees them."""
    epoch = 0
    while True:
        trainer.train_loader.set_epoch(epoch)
        yield from trainer.train_loader
        epoch += 1


def prefetched_batches(trainer: Trainer) -> int:
    """Batches the input pipeline prepares ahead of the training step (ready before the clock would start)."""
    loader = trainer.train_loader
    cache = getattr(loader, "cache", None)
    if cache is not None:  # the fast pipeline: none when the cache is on the device, else 2 gathered ahead
        return 0 if cache.on_device is not None else 2
    return loader.num_workers * (loader.prefetch_factor or 0) if loader.num_workers else 0


def cache_report(trainer: Trainer) -> Optional[dict]:
    """Where the fast pipeline's decoded cache sits, and its size; None for the workers pipeline."""
    cache = getattr(trainer.train_loader, "cache", None)
    if cache is None:
        return None
    return {"on_device": cache.on_device is not None, "mb": round(cache.nbytes / 1e6, 1),
            "where": str(cache.on_device.device) if cache.on_device is not None else "host"}


def environment(device: torch.device) -> dict:
    return {"device": device_label(device), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "load_avg_1min": load_average(), "fp32_precision": fp32_precision()}


def free_memory(device: torch.device) -> None:
    """Collect the last set-up's trainer (hooks and trainer refer to each other: only the collector frees them) and
    give its GPU memory back before the next set-up is built and its peak memory measured."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_throughput(model: str, variant: str, batch: int, args: argparse.Namespace) -> dict:
    """Steady-state training images/s, first-step time and peak GPU memory of one model, set-up and batch."""
    with tempfile.TemporaryDirectory(prefix="train_bench_") as out:
        cfg = build_cfg(model, variant, batch, args, out)
        start = time.perf_counter()
        trainer = Trainer(cfg)
        setup_s = time.perf_counter() - start
        device = trainer.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer.model.train()
        batches = endless(trainer)
        drained = prefetched_batches(trainer)
        warmup = max(args.warmup, drained + EXTRA_WARMUP)
        synchronize(device)
        start = time.perf_counter()
        trainer.train_step(next(batches))
        synchronize(device)
        first_step_s = time.perf_counter() - start
        for _ in range(warmup - 1):
            trainer.train_step(next(batches))
        synchronize(device)
        start, images = time.perf_counter(), 0
        for _ in range(args.iters):
            b = next(batches)
            trainer.train_step(b)
            images += b["images"].shape[0]
        synchronize(device)
        elapsed = time.perf_counter() - start
        del batches  # the loop below starts the loader afresh
        loop = loop_throughput(trainer, warmup, args.iters, batch)
        peak = round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None
        line = {"bench": "train_throughput", "model": model, "variant": variant, "batch": batch,
                "input": list(cfg.INPUT.SIZE_TRAIN), "images_per_s": images / elapsed, "iters": args.iters,
                "loop_images_per_s": loop, "loop_vs_step": loop / (images / elapsed), "loop_ema": True,
                "timed_s": elapsed, "warmup_iters": warmup, "prefetched_batches_drained": drained,
                "first_step_s": first_step_s, "setup_s": setup_s, "peak_gpu_mb": peak,
                "cache": cache_report(trainer), "loader_workers": trainer.train_loader.num_workers
                if cfg.DATALOADER.PIPELINE == "workers" else None,
                "settings": variant_settings(variant), "tiny": args.tiny, **environment(device)}
        if variant in COMPILED:
            line["compile_s"] = first_step_s  # the first call compiles forward and backward
        trainer.train_loader.close()
        del trainer
    free_memory(device)
    return line


def measure_epoch(model: str, variant: str, args: argparse.Namespace) -> dict:
    """One synthetic epoch end to end: trainer construction (data, cache), training, evaluation, checkpoints."""
    with tempfile.TemporaryDirectory(prefix="train_bench_") as out:
        batch = int(args.batches.split(",")[0])
        cfg = build_cfg(model, variant, batch, args, out, "SOLVER.MAX_EPOCHS", "1", "SOLVER.WARMUP_EPOCHS", "0")
        start = time.perf_counter()
        trainer = Trainer(cfg)
        setup_s = time.perf_counter() - start
        metrics = trainer.train()
        total_s = time.perf_counter() - start
        epoch = json.loads((Path(out) / HISTORY).read_text().splitlines()[0])
        device = trainer.device
        del trainer
    free_memory(device)
    return {"bench": "train_epoch", "model": model, "variant": variant, "batch": batch, "total_s": total_s,
            "setup_s": setup_s, "train_s": epoch["time_s"], "images_per_s": epoch["images_per_s"],
            "eval_and_checkpoints_s": total_s - setup_s - epoch["time_s"],
            "train_images": args.ids * args.images_per_id, "rank1": metrics["rank1"], "tiny": args.tiny,
            **environment(device)}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_bench", description=__doc__.splitlines()[0],
                                epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="MODEL.DEVICE: auto, cpu, cuda, cuda:N")
    p.add_argument("--models", default="resnet50,mgn", help="comma-separated: resnet50, mgn")
    p.add_argument("--batches", default="64", help="comma-separated SOLVER.IMS_PER_BATCH values (P x K, K = 4)")
    p.add_argument("--variants", default="conventional,gpu_pipeline,bf16,channels_last,fast",
                   help=f"comma-separated set-ups of {', '.join(VARIANTS)}; conventional is always measured first")
    p.add_argument("--compile", action="store_true", help="also the compile and fast_compile set-ups")
    p.add_argument("--iters", type=int, default=200, help="timed iterations per set-up")
    p.add_argument("--warmup", type=int, default=10,
                   help=f"least untimed iterations first (raised to the prefetched batches + {EXTRA_WARMUP})")
    p.add_argument("--root", default=None, help="DATASETS.ROOT for the synthetic set; default: a temporary folder "
                                                "removed at the end (give one to keep the generated set)")
    add_data_options(p, images_per_id=17, test_ids=100)
    p.add_argument("--epoch-model", default="", help="also time one whole epoch of this model ('': none)")
    p.add_argument("--tiny", action="store_true",
                   help="CPU smoke run: ResNet18-like width 8, tiny inputs and data, 3 timed iterations")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"unknown --variants {unknown}; choose from {list(VARIANTS)}")
    if args.tiny:
        use_tiny_data(args)
        args.iters, args.warmup, args.batches = 3, 1, "16"
    return args


def variants(args: argparse.Namespace) -> List[str]:
    """The set-ups to measure, the conventional baseline first."""
    chosen = [v for v in args.variants.split(",") if v != "conventional"]
    if args.compile:
        chosen += [v for v in COMPILED if v not in chosen]
    return ["conventional", *chosen]


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    log_to_stderr()
    if args.tiny:
        torch.set_num_threads(1)  # tiny models: thread synchronisation would cost more than it saves
    with ExitStack() as stack:
        if args.root is None:
            args.root = stack.enter_context(tempfile.TemporaryDirectory(prefix="reid_train_bench_"))
        for model in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                baseline = None
                for variant in variants(args):
                    line = measure_throughput(model, variant, batch, args)
                    baseline = baseline or line["images_per_s"]
                    line["conventional_images_per_s"] = baseline
                    line["speedup_vs_conventional"] = line["images_per_s"] / baseline
                    emit(line)
        if args.epoch_model:
            for variant in ("conventional", "fast"):
                emit(measure_epoch(args.epoch_model, variant, args))


if __name__ == "__main__":
    main()
