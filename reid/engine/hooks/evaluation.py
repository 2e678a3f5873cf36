"""Evaluation during and after training (detectron2's EvalHook): every TEST.EVAL_PERIOD epochs and after the last."""
from __future__ import annotations

from typing import Callable

from .base import HookBase


class EvalHook(HookBase):
    """Calls ``evaluate(epoch) -> metrics dict`` (on every rank; the trainer's evaluation of ``eval_model``) every
    ``period`` epochs and after the last one, and shares its metrics with the other hooks (``trainer.metrics``,
    ``trainer.metrics_epoch`` and a ``{"epoch", "eval"}`` record). At the end it sets ``trainer.results``: the
    final metrics with ``train_time_s`` (the run's training time, earlier sessions of a resumed run included)."""

    def __init__(self, period: int, evaluate: Callable[[int], dict]) -> None:
        self.period = period
        self._evaluate = evaluate

    def _run(self, epoch: int, record: bool = True) -> None:
        trainer = self.trainer
        trainer.metrics, trainer.metrics_epoch = self._evaluate(epoch), epoch
        if record:
            trainer.records.append({"epoch": epoch, "eval": trainer.metrics["datasets"]})

    def after_epoch(self) -> None:
        done = self.trainer.epoch + 1
        if done % self.period == 0 or done == self.trainer.max_epochs:
            self._run(done)

    def after_train(self) -> None:
        trainer = self.trainer
        if trainer.metrics is None:
            # Resumed after the last epoch (the run stopped while finishing): the evaluation after that epoch ran
            # before model_last.pt was written, so train_log.jsonl has it; evaluate again for the final files only.
            self._run(trainer.max_epochs, record=False)
        trainer.results = {**trainer.metrics, "train_time_s": trainer.clock.elapsed()}
