"""Checkpoint hooks: model_last.pt every SOLVER.CHECKPOINT_PERIOD epochs and model_final.pt at the end
(detectron2's PeriodicCheckpointer), model_best.pt when TEST.BEST_METRIC improved (its BestCheckpointer).

They run after the other hooks of an epoch (evaluation included), so a checkpoint holds every hook's state as of
the end of that epoch and a resumed run continues exactly. model_last.pt holds everything a resume needs and the
trained weights (the EMA weights are in its ``hooks`` entry). model_final.pt and model_best.pt are files to use:
the evaluated weights as ``model`` (``trainer.eval_model``: the EMA weights when SOLVER.EMA is on), the resolved
config and the metrics that chose them (``metrics``; model_best.pt also ``best``), no optimizer or RNG state.
The trainer's checkpointer writes in a background thread (``reid.checkpoint.writer``): a save returns once the state
is in host memory, and up to two snapshots are queued, so an epoch with a new best model queues model_best.pt and
model_last.pt without training waiting for the first to reach the disk; the final checkpoint is on disk when
``after_train`` returns (the report links it).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, Optional

from ...checkpoint import BEST, FINAL, LAST, threshold_record
from .base import PRIORITY_CHECKPOINT, HookBase

logger = logging.getLogger("reid")


class PeriodicCheckpointer(HookBase):
    """``trainer.checkpointer`` writes model_last.pt every ``period`` epochs and after the last one, and
    model_final.pt (the evaluated weights with the final metrics, ``trainer.results``) when training ends, with the
    verification threshold of the final evaluation: ``threshold`` (a distance of TEST.METRIC: "same person" when
    d <= threshold), ``threshold_far`` (TEST.VERIFY_FAR, the false-accept rate it was chosen at) and
    ``threshold_dataset`` (the first test set)."""

    priority = PRIORITY_CHECKPOINT

    def __init__(self, period: int) -> None:
        self.period = period

    def after_epoch(self) -> None:
        done = self.trainer.epoch + 1
        if done % self.period == 0 or done == self.trainer.max_epochs:
            self.trainer.checkpointer.save(LAST, done)

    def after_train(self) -> None:
        t = self.trainer
        t.checkpointer.save_model(FINAL, t.max_epochs, model=t.eval_model, metrics=t.results,
                                  **threshold_record(t.metrics, t.cfg.TEST.VERIFY_FAR))
        t.checkpointer.wait()  # every file on disk (or the write's error raised) before the report


class BestCheckpointer(HookBase):
    """Writes model_best.pt (the evaluated weights, with ``best = {metric, value, epoch}`` and, as model_final.pt,
    that evaluation's verification threshold inside) after every evaluation whose ``metric`` on the first test set
    beats all earlier ones of the run."""

    name = "best_checkpoint"
    priority = PRIORITY_CHECKPOINT

    def __init__(self, metric: str) -> None:
        """``metric``: TEST.BEST_METRIC, a score of the score registry (checked by ``reid.config.validate``)."""
        self.metric = metric
        self.best: Optional[float] = None
        self.best_epoch = 0

    def after_epoch(self) -> None:
        trainer = self.trainer
        if trainer.metrics_epoch != trainer.epoch + 1:  # not evaluated after this epoch
            return
        value = float(trainer.metrics[self.metric])
        if math.isnan(value) or (self.best is not None and value <= self.best):
            return
        self.best, self.best_epoch = value, trainer.metrics_epoch
        path = trainer.checkpointer.save_model(BEST, self.best_epoch, model=trainer.eval_model,
                                               metrics=trainer.metrics,
                                               best={"metric": self.metric, "value": value, "epoch": self.best_epoch},
                                               **threshold_record(trainer.metrics))
        logger.info("New best %s %.4f after epoch %d: %s", self.metric, value, self.best_epoch, path)

    def state_dict(self) -> Dict[str, Any]:
        return {"metric": self.metric, "value": self.best, "epoch": self.best_epoch}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state["metric"] != self.metric:
            logger.warning("The checkpoint's best model was chosen by %s, this run uses TEST.BEST_METRIC %s: "
                           "model_best.pt will be replaced after the next evaluation.", state["metric"], self.metric)
            return
        self.best, self.best_epoch = state["value"], int(state["epoch"])
