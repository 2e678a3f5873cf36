"""The epoch loop and its hooks (after detectron2's ``TrainerBase``): everything beyond the optimisation step
(checkpoints, evaluation, logs, the LR schedule, EMA weights, ...) is a hook (``reid.engine.hooks``).

The loop keeps per-epoch loss sums on the device (:class:`LossSums`), so a step never waits for the GPU; hooks
read values back only every ``SOLVER.LOG_PERIOD`` iterations and at the end of an epoch.
"""
from __future__ import annotations

import time
import weakref
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..utils.distributed import dist_info
from .hooks.base import HookBase


class LossSums:
    """An epoch's loss-term sums, accumulated on the device without a sync; ``last`` holds the latest step's terms
    as one vector (in the order of ``names``)."""

    def __init__(self) -> None:
        self.names: List[str] = []
        self.sums: Optional[torch.Tensor] = None
        self.last: Optional[torch.Tensor] = None
        self.steps = 0

    def add(self, terms: Dict[str, torch.Tensor]) -> None:
        self.last = torch.stack([v.detach().float() for v in terms.values()])
        if self.sums is None:
            self.names = list(terms)
            self.sums = torch.zeros_like(self.last)
        self.sums += self.last
        self.steps += 1

    def means(self) -> Dict[str, float]:
        """Mean of every term over the epoch so far (a device sync)."""
        if self.sums is None:
            return {}
        return dict(zip(self.names, (self.sums / self.steps).tolist()))


class RunClock:
    """Training time across resumes: the seconds of earlier sessions (a checkpointable: restored from
    model_last.pt by ``--resume``) plus this session's, counted from :meth:`start`."""

    def __init__(self) -> None:
        self.before = 0.0
        self._start: Optional[float] = None

    def start(self) -> None:
        self._start = time.perf_counter()

    def session(self) -> float:
        """Seconds since :meth:`start` (0 before it)."""
        return time.perf_counter() - self._start if self._start is not None else 0.0

    def elapsed(self) -> float:
        """Training time of the run so far, earlier sessions included."""
        return self.before + self.session()

    def state_dict(self) -> Dict[str, float]:
        return {"train_time_s": self.elapsed()}

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.before = float(state["train_time_s"])


class TrainerBase:
    """Runs epochs of ``train_step`` over ``train_loader`` and calls the registered hooks around them.

    A subclass provides ``model`` (the module trained), ``train_loader`` (iterable of batch dicts with
    ``set_epoch`` and ``close``, which stops its workers when training ends, and optionally
    ``release_device_memory``, see :meth:`run_step`), ``optimizer``,
    ``train_step(batch) -> loss terms`` and sets ``start_epoch``, ``max_epochs`` and ``iters_per_epoch``.
    ``max_iters`` (None: no limit) stops training after that many iterations, counted from the first epoch's first
    (``epoch * iters_per_epoch + iter + 1``), as detectron2's ``max_iter``: for probes and benchmarks that time
    the real loop. A stop inside an epoch leaves the run as an interruption would (no ``after_epoch`` for the
    unfinished epoch, so nothing of it is checkpointed: ``--resume`` redoes it exactly); ``after_train`` runs only
    when every epoch to ``max_epochs`` is done.
    What the loop shares with hooks:

    - ``epoch``, ``iter``: the running epoch (0-based) and iteration within it;
    - ``terms``: the last step's loss terms (device tensors); ``losses``: the epoch's :class:`LossSums`;
    - ``progress``: the epoch's tqdm bar;
    - ``records``: what happened so far in this run, one dict per epoch (``epoch``, ``lr``, mean loss terms,
      ``loss_total``, ``time_s``, ``images_per_s``) and per evaluation (``epoch``, ``eval``); writers write each;
    - ``metrics`` (the latest evaluation's metrics dict, after epoch ``metrics_epoch``), ``last_eval`` (its
      per-test-set results, rank 0) and ``results`` (what :meth:`train` returns), set by the evaluation hook;
    - ``clock``: the :class:`RunClock` (training time across resumes).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer

    def __init__(self) -> None:
        self.hooks: List[HookBase] = []
        self.start_epoch, self.max_epochs, self.iters_per_epoch = 0, 0, 0
        self.max_iters: Optional[int] = None
        self.epoch, self.iter = 0, 0
        self.terms: Dict[str, torch.Tensor] = {}
        self.losses = LossSums()
        self.progress: Optional[tqdm] = None
        self.records: List[dict] = []
        self.metrics: Optional[dict] = None
        self.metrics_epoch = 0
        self.last_eval: Optional[dict] = None
        self.results: dict = {}
        self.clock = RunClock()

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluated and stored as ``model`` in model_final.pt / model_best.pt."""
        return self.model

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        """Add hooks (None entries are skipped), keeping the order by ``priority``, ties in registration order."""
        hooks = [h for h in hooks if h is not None]
        names = [h.name for h in self.hooks + hooks]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"hook names must be unique (they key the hook states in a checkpoint): {clash}")
        for hook in hooks:
            hook.trainer = weakref.proxy(self)  # no reference cycle trainer <-> hook
        self.hooks = sorted(self.hooks + hooks, key=lambda h: h.priority)

    def train_step(self, batch: Dict[str, object]) -> Dict[str, torch.Tensor]:
        """One optimisation step on ``batch``; returns the loss terms (device tensors, not synchronised)."""
        raise NotImplementedError

    def train(self) -> dict:
        """Epochs ``start_epoch`` to ``max_epochs`` (or to ``max_iters``) with their hooks; returns ``results``."""
        total = self.max_epochs * self.iters_per_epoch
        stop = total if self.max_iters is None else min(self.max_iters, total)
        self.clock.start()
        try:
            self._call("before_train")
            for epoch in range(self.start_epoch, self.max_epochs):
                if epoch * self.iters_per_epoch >= stop:
                    break
                self.train_epoch(epoch)
        finally:
            self.train_loader.close()  # persistent loader workers end with training, also a failed one
        if stop == total:
            self._call("after_train")
        return self.results

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the epoch's batches with the epoch and step hooks (up to ``max_iters``); returns the mean
        loss terms (of this process's batches)."""
        self.epoch = epoch
        self.model.train()
        self.train_loader.set_epoch(epoch)  # the epoch's batches and augmentation seeds
        self.losses = LossSums()
        self._call("before_epoch")
        steps = self.iters_per_epoch
        if self.max_iters is not None:
            steps = min(steps, self.max_iters - epoch * self.iters_per_epoch)
        start, seen = time.perf_counter(), 0
        self.progress = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.max_epochs}", leave=False,
                             dynamic_ncols=True, disable=not self.show_progress)
        for self.iter, batch in enumerate(self.progress):
            self.run_step(batch)
            seen += batch["images"].shape[0]
            if self.iter + 1 == steps < self.iters_per_epoch:  # max_iters inside the epoch: the run stops here
                self.progress.close()
                return self.losses.means()
        elapsed = time.perf_counter() - start
        means = self.losses.means()
        self.records.append({"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **means,
                             "loss_total": sum(means.values()), "time_s": elapsed,
                             "images_per_s": seen / max(elapsed, 1e-9)})
        self._call("after_epoch")
        return means

    def run_step(self, batch: Dict[str, object]) -> None:
        """One iteration of the loop (as detectron2's ``SimpleTrainer.run_step``): the optimisation step on
        ``batch``, its loss terms added to the epoch's sums on the device (no sync), then every hook's
        ``after_step``. A single process that runs out of GPU memory in the step retries it once after the input
        pipeline gave its device memory back (``train_loader.release_device_memory()``, where it has one: the
        fast pipeline's image cache); under DDP the error propagates (the ranks' gradient reductions would no
        longer match)."""
        try:
            self.terms = self.train_step(batch)
        except torch.OutOfMemoryError:
            release = getattr(self.train_loader, "release_device_memory", None)
            if dist_info()[1] > 1 or release is None or not release():
                raise
            self.terms = self.train_step(batch)
        self.losses.add(self.terms)
        self._call("after_step")

    @property
    def show_progress(self) -> bool:
        """Whether this process draws the progress bar (rank 0 only under DDP)."""
        return True

    def _call(self, stage: str) -> None:
        for hook in self.hooks:
            getattr(hook, stage)()
