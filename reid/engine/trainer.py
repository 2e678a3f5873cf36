"""The training loop: epochs of P x K batches, periodic evaluation, atomic checkpoints and exact resume.

Speed is configuration: ``DATALOADER.PIPELINE gpu`` (decoded-image cache, batched augmentation on the device),
``SOLVER.AMP`` (bf16/fp16 autocast, a GradScaler for fp16), ``MODEL.CHANNELS_LAST``, ``MODEL.COMPILE`` and
``SOLVER.FUSED``. Under torchrun (see launch.py) the model is wrapped in DistributedDataParallel, every rank
trains on its own batches and rank 0 alone writes files. The loop reads values back from the device only every
``SOLVER.LOG_PERIOD`` iterations (loss sums and the non-finite check stay on the device), so a GPU is never
stalled waiting for Python.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..config import cfg_to_dict, dump_cfg, validate
from ..modeling import build_model
from ..modeling.losses import build_criterion
from ..utils.env import get_rng_state, seed_all, set_rng_state
from ..registry import AMP_REGISTRY, PIPELINE_REGISTRY
from ..utils.errors import CheckpointError, ReIDError
from ..utils.logger import setup_logger
from ..checkpoint import FINAL, LAST, load_checkpoint, load_model_state, load_model_weights, save_checkpoint
from ..data import TestSet
from ..evaluation.testsets import TestSetResult, build_test_sets, evaluate_test_sets, format_results, metrics_dict, \
    write_metrics
from ..solver import build_lr_scheduler, build_optimizer
from ..utils.distributed import broadcast_object, dist_info, rank_zero_first, shared_seed
from ..visualization.report import maybe_write_report
from .launch import process_device, to_sync_batchnorm

HISTORY = "train_log.jsonl"


class LossTracker:
    """An epoch's loss-term sums and its first non-finite loss, accumulated on the device without a sync."""

    def __init__(self) -> None:
        self.names: List[str] = []
        self.sums: Optional[torch.Tensor] = None
        self.steps: Optional[torch.Tensor] = None  # iterations so far, counted on the device
        self.first_bad: Optional[torch.Tensor] = None  # [iteration, term values...] of the first bad loss, or -1s

    def add(self, terms: Dict[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float() for v in terms.values()])
        if self.sums is None:
            self.names = list(terms)
            self.sums = torch.zeros_like(values)
            self.steps = torch.zeros(1, device=values.device)
            self.first_bad = torch.full((1 + len(values),), -1.0, device=values.device)
        self.sums += values
        new_bad = ~torch.isfinite(values.sum()) & (self.first_bad[0] < 0)
        self.first_bad = torch.where(new_bad, torch.cat([self.steps, values]), self.first_bad)
        self.steps += 1

    def check(self, epoch: int, last_good: Path) -> None:
        """Raise (a device sync) if any loss so far was not finite: NaN/inf weights are never trained on long."""
        if self.first_bad is None:
            return
        it, *values = self.first_bad.tolist()
        if it >= 0:
            raise ReIDError(
                f"The loss became {sum(values)} at epoch {epoch + 1}, iteration {int(it) + 1} "
                f"({', '.join(f'{k}={v:.4g}' for k, v in zip(self.names, values))}). Training stopped; the last "
                f"good checkpoint is {last_good}. Lower SOLVER.BASE_LR or check the loss settings."
            )

    def means(self) -> Dict[str, float]:
        if self.sums is None:
            return {}
        return dict(zip(self.names, (self.sums / self.steps).tolist()))


class Trainer:
    """Builds data, model, criterion, optimizer and schedule from a config and runs training."""

    def __init__(self, cfg, resume: bool = False) -> None:
        validate(cfg)  # every choice key and range, before anything is read or built
        self.cfg = cfg
        self.rank, self.world_size = dist_info()
        self.output_dir = Path(cfg.OUTPUT_DIR)
        self.logger = setup_logger(cfg.OUTPUT_DIR, self.rank)
        if resume:
            self._last_checkpoint()  # before any data is read: a missing checkpoint fails at once
        self.device = process_device(cfg.MODEL.DEVICE)
        self.seed = seed_all(shared_seed(cfg.SEED), cfg.DETERMINISTIC)
        if not cfg.DETERMINISTIC:
            torch.backends.cudnn.benchmark = True  # fixed input sizes: the fastest convolution algorithms, found once
        self.amp_dtype = AMP_REGISTRY.get(cfg.SOLVER.AMP)
        build_pipeline = PIPELINE_REGISTRY.get(cfg.DATALOADER.PIPELINE)
        if self.rank == 0:
            dump_cfg(cfg, self.output_dir / "config.yaml")
        with rank_zero_first():  # a synthetic set or an image cache file is written once
            self.train_loader, train_set = build_pipeline(cfg, self.device, self.rank, self.world_size)
        self.logger.info("Training data:\n%s", train_set.summary())
        self.model = self._build_model(train_set.num_train_pids)
        self.criterion = build_criterion(cfg).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.train_model = self._wrap(self.model)
        self.iters_per_epoch = len(self.train_loader)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer, self.iters_per_epoch)
        self.start_epoch = 0
        self.last_eval: Optional[Dict[str, TestSetResult]] = None  # rank 0 only
        self.last_metrics: Optional[dict] = None
        self.test_sets: Optional[Dict[str, TestSet]] = None  # built at the first evaluation, then reused
        if resume:
            self.resume()

    def _build_model(self, num_classes: int) -> nn.Module:
        cfg = self.cfg
        model = build_model(cfg, num_classes, pretrained=not cfg.MODEL.WEIGHTS)
        if cfg.MODEL.WEIGHTS:
            load_model_weights(model, cfg.MODEL.WEIGHTS, cfg=cfg)
            self.logger.info("Loaded model weights from %s (classifier re-initialised)", cfg.MODEL.WEIGHTS)
        model = model.to(self.device)
        if cfg.MODEL.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        if cfg.MODEL.SYNC_BN and self.world_size > 1:
            model = to_sync_batchnorm(model, self.device)
        return model

    def _wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: the model, in DDP when distributed, compiled on request. ``self.model``
        stays the plain module (checkpoints, evaluation)."""
        if self.world_size > 1:
            model = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        return torch.compile(model) if self.cfg.MODEL.COMPILE else model

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict:
        """The checkpoint content of CONTRIBUTING.md (``save`` adds the run-time extras)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "rng": get_rng_state(),
            "cfg": cfg_to_dict(self.cfg),
            "num_classes": self.model.num_classes,
            "meta_architecture": self.cfg.MODEL.META_ARCHITECTURE,
        }

    def save(self, name: str, epoch: int) -> Path:
        """Write a checkpoint (rank 0 only) with the fp16 loss scale beside the contract's content. The input
        pipelines need no state: their randomness is a function of (SEED, rank, epoch)."""
        path = self.output_dir / name
        if self.rank == 0:
            save_checkpoint(path, {**self.state_dict(epoch), "scaler": self.scaler.state_dict()})
        return path

    def _last_checkpoint(self) -> Path:
        path = self.output_dir / LAST
        if not path.is_file():
            raise CheckpointError(f"--resume: no checkpoint {str(path)!r} to resume from. Start without --resume, "
                                  f"or set OUTPUT_DIR to the folder of the run to continue.")
        return path

    def resume(self) -> None:
        """Continue from ``OUTPUT_DIR/model_last.pt``: model, optimizer, schedule, epoch and RNG states."""
        path = self._last_checkpoint()
        state = load_checkpoint(path)
        missing = [k for k in ("model", "optimizer", "scheduler", "epoch", "rng") if k not in state]
        if missing:
            raise CheckpointError(f"{str(path)!r} is not a training checkpoint (missing {missing}).")
        load_model_state(self.model, state, path, cfg=self.cfg,
                         advice="Resume with the config the run was started with (same data and MODEL settings).")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"])
        self.logger.info("Resumed from %s at epoch %d", path, self.start_epoch)

    # -- training ----------------------------------------------------------------------------------------------
    def _log_history(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.output_dir / HISTORY, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def train_step(self, batch: Dict[str, object]) -> Dict[str, torch.Tensor]:
        """One optimisation step on a batch dict; returns the loss terms (device tensors, not synchronised)."""
        images = batch["images"].to(self.device, non_blocking=True)
        if self.cfg.MODEL.CHANNELS_LAST:
            images = images.contiguous(memory_format=torch.channels_last)
        pids = batch["pids"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            terms = self.criterion(self.train_model(images, pids), pids)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(sum(terms.values())).backward()
        if self.cfg.SOLVER.GRAD_CLIP > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.SOLVER.GRAD_CLIP)
        self.scaler.step(self.optimizer)  # skipped by the fp16 scaler when gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        return terms

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the epoch's P x K batches; returns mean loss terms (of this rank's batches)."""
        cfg = self.cfg
        self.model.train()
        self.train_loader.set_epoch(epoch)  # the epoch's batches and augmentation seeds
        tracker = LossTracker()
        start, seen = time.perf_counter(), 0
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCHS}", leave=False,
                   dynamic_ncols=True, disable=self.rank != 0)
        for it, batch in enumerate(bar):
            terms = self.train_step(batch)
            tracker.add(terms)
            seen += batch["images"].shape[0]
            if (it + 1) % cfg.SOLVER.LOG_PERIOD == 0:
                tracker.check(epoch, self.output_dir / LAST)
                current = {k: v.item() for k, v in terms.items()}
                lr = self.optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{sum(current.values()):.3f}", lr=f"{lr:.2e}")
                self.logger.info("epoch %d iter %d/%d  %s  lr %.3e", epoch + 1, it + 1, self.iters_per_epoch,
                                 "  ".join(f"{k} {v:.4f}" for k, v in current.items()), lr)
        tracker.check(epoch, self.output_dir / LAST)
        elapsed = time.perf_counter() - start
        means = tracker.means()
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **means,
                  "loss_total": sum(means.values()), "time_s": elapsed, "images_per_s": seen / max(elapsed, 1e-9)}
        self._log_history(record)
        self.logger.info("epoch %d done in %.1fs (%.0f img/s per process): %s", epoch + 1, elapsed,
                         record["images_per_s"], "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
        return means

    def evaluate(self, epoch: int) -> dict:
        """Evaluate once (rank 0 scores, all ranks embed); returns the metrics dict on every rank."""
        if self.test_sets is None:
            self.test_sets = build_test_sets(self.cfg)
        evals = evaluate_test_sets(self.cfg, self.model, self.device, self.test_sets)
        metrics = broadcast_object(metrics_dict(evals) if evals is not None else None)
        if evals is not None:
            self.last_eval = evals
            self._log_history({"epoch": epoch, "eval": metrics["datasets"]})
            self.logger.info("Evaluation after epoch %d:\n%s", epoch, format_results(evals))
        return metrics

    def train(self) -> dict:
        """Train to ``SOLVER.MAX_EPOCHS``; returns the final metrics (also in ``OUTPUT_DIR/metrics.json``)."""
        cfg = self.cfg
        max_epochs = cfg.SOLVER.MAX_EPOCHS
        self.logger.info("Training %s for %d epochs (%d iterations each) on %s x %d process(es)",
                         cfg.MODEL.META_ARCHITECTURE, max_epochs, self.iters_per_epoch, self.device, self.world_size)
        t0 = time.perf_counter()
        for epoch in range(self.start_epoch, max_epochs):
            self.train_epoch(epoch)
            done = epoch + 1
            if done % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or done == max_epochs:
                self.save(LAST, done)
            if done % cfg.TEST.EVAL_PERIOD == 0 or done == max_epochs:
                self.last_metrics = self.evaluate(done)
        if self.last_metrics is None:  # resumed after the last epoch: evaluate what was trained
            self.last_metrics = self.evaluate(max_epochs)
        self.save(FINAL, max_epochs)
        metrics = {**self.last_metrics, "train_time_s": time.perf_counter() - t0}
        if self.rank == 0:
            write_metrics(self.output_dir, metrics)
            maybe_write_report(cfg, self.last_eval, self.output_dir, metrics)
            self.logger.info("Final results (%s):\n%s", self.output_dir / "metrics.json",
                             format_results(self.last_eval))
        return metrics
