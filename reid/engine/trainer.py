"""The training loop: epochs of P x K batches, periodic evaluation, atomic checkpoints and exact resume."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import cfg_to_dict, dump_cfg
from ..data import build_train_loader
from ..modeling import build_model
from ..modeling.losses import build_criterion
from ..utils.env import get_rng_state, resolve_device, seed_all, set_rng_state
from ..utils.errors import CheckpointError, ReIDError
from ..utils.logger import setup_logger
from .checkpoint import FINAL, LAST, load_checkpoint, load_model_weights, save_checkpoint
from .evaluate import DatasetEvaluation, evaluate_all, format_results, metrics_dict, write_metrics
from .optim import build_lr_scheduler, build_optimizer

HISTORY = "train_log.jsonl"


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Builds data, model, criterion, optimizer and schedule from a config and runs training."""

    def __init__(self, cfg, resume: bool = False) -> None:
        self.cfg = cfg
        self.rank, self.world_size = _dist_info()
        self.output_dir = Path(cfg.OUTPUT_DIR)
        self.logger = setup_logger(cfg.OUTPUT_DIR, self.rank)
        self.device = resolve_device(cfg.MODEL.DEVICE)
        self.seed = seed_all(cfg.SEED, cfg.DETERMINISTIC)
        if self.rank == 0:
            dump_cfg(cfg, self.output_dir / "config.yaml")
        self.train_loader, train_set = build_train_loader(cfg, self.rank, self.world_size)
        self.logger.info("Training data:\n%s", train_set.summary())
        self.model = build_model(cfg, train_set.num_train_pids).to(self.device)
        if cfg.MODEL.WEIGHTS:
            load_model_weights(self.model, cfg.MODEL.WEIGHTS)
            self.logger.info("Loaded model weights from %s (classifier re-initialised)", cfg.MODEL.WEIGHTS)
        self.criterion = build_criterion(cfg).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.iters_per_epoch = len(self.train_loader)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer, self.iters_per_epoch)
        self.start_epoch = 0
        self.last_eval: Optional[Dict[str, DatasetEvaluation]] = None
        if resume:
            self.resume()

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict:
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
        path = self.output_dir / name
        if self.rank == 0:
            save_checkpoint(path, self.state_dict(epoch))
        return path

    def resume(self) -> None:
        """Continue from ``OUTPUT_DIR/model_last.pt``: model, optimizer, schedule, epoch and RNG states."""
        path = self.output_dir / LAST
        if not path.is_file():
            raise CheckpointError(f"--resume: no checkpoint {str(path)!r} to resume from. Start without --resume, "
                                  f"or set OUTPUT_DIR to the folder of the run to continue.")
        state = load_checkpoint(path)
        missing = [k for k in ("model", "optimizer", "scheduler", "epoch", "rng") if k not in state]
        if missing:
            raise CheckpointError(f"{str(path)!r} is not a training checkpoint (missing {missing}).")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{str(path)!r} does not fit the configured model: {str(e).splitlines()[0]} "
                                  f"Resume with the config the run was started with.") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"])
        self.logger.info("Resumed from %s at epoch %d", path, self.start_epoch)

    # -- training ----------------------------------------------------------------------------------------------
    def _log_history(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.output_dir / HISTORY, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the epoch's P x K batches; returns mean loss terms."""
        cfg, model = self.cfg, self.model
        model.train()
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        sums: Dict[str, float] = {}
        start, seen = time.perf_counter(), 0
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCHS}", leave=False,
                   dynamic_ncols=True, disable=self.rank != 0)
        for it, batch in enumerate(bar):
            images = batch["images"].to(self.device, non_blocking=True)
            pids = batch["pids"].to(self.device, non_blocking=True)
            terms = self.criterion(model(images, pids), pids)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise ReIDError(
                    f"The loss became {loss.item()} at epoch {epoch + 1}, iteration {it + 1} "
                    f"({', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())}). Training stopped; the last "
                    f"good checkpoint is {self.output_dir / LAST}. Lower SOLVER.BASE_LR or check the loss settings."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.SOLVER.GRAD_CLIP > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.SOLVER.GRAD_CLIP)
            self.optimizer.step()
            self.scheduler.step()
            seen += images.shape[0]
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            if (it + 1) % cfg.SOLVER.LOG_PERIOD == 0:
                self.logger.info("epoch %d iter %d/%d  %s  lr %.3e", epoch + 1, it + 1, self.iters_per_epoch,
                                 "  ".join(f"{k} {v.item():.4f}" for k, v in terms.items()),
                                 self.optimizer.param_groups[0]["lr"])
        elapsed = time.perf_counter() - start
        means = {k: v / max(self.iters_per_epoch, 1) for k, v in sums.items()}
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **means,
                  "loss_total": sum(means.values()), "time_s": elapsed, "images_per_s": seen / max(elapsed, 1e-9)}
        self._log_history(record)
        self.logger.info("epoch %d done in %.1fs (%.0f img/s): %s", epoch + 1, elapsed, record["images_per_s"],
                         "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
        return means

    def evaluate(self, epoch: int) -> Dict[str, DatasetEvaluation]:
        evals = evaluate_all(self.cfg, self.model, self.device)
        metrics = metrics_dict(evals)
        self._log_history({"epoch": epoch, "eval": metrics["datasets"]})
        self.logger.info("Evaluation after epoch %d:\n%s", epoch, format_results(evals))
        return evals

    def train(self) -> dict:
        """Train to ``SOLVER.MAX_EPOCHS``; returns the final metrics (also in ``OUTPUT_DIR/metrics.json``)."""
        cfg = self.cfg
        max_epochs = cfg.SOLVER.MAX_EPOCHS
        self.logger.info("Training %s for %d epochs (%d iterations each) on %s", cfg.MODEL.META_ARCHITECTURE,
                         max_epochs, self.iters_per_epoch, self.device)
        t0 = time.perf_counter()
        for epoch in range(self.start_epoch, max_epochs):
            self.train_epoch(epoch)
            done = epoch + 1
            if done % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or done == max_epochs:
                self.save(LAST, done)
            if done % cfg.TEST.EVAL_PERIOD == 0 or done == max_epochs:
                self.last_eval = self.evaluate(done)
        if self.last_eval is None:  # resumed after the last epoch: evaluate what was trained
            self.last_eval = self.evaluate(max_epochs)
        self.save(FINAL, max_epochs)
        metrics = metrics_dict(self.last_eval)
        metrics["train_time_s"] = time.perf_counter() - t0
        if self.rank == 0:
            write_metrics(self.output_dir, metrics)
            from ..visualization.report import maybe_write_report  # report.html + plots (VIS.REPORT)

            maybe_write_report(cfg, self.last_eval, self.output_dir, metrics)
        self.logger.info("Final results (%s):\n%s", self.output_dir / "metrics.json", format_results(self.last_eval))
        return metrics
