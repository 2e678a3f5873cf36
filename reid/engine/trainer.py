"""Training: the components a config describes (data, model, criterion, optimizer, schedule) and, in
:meth:`Trainer.build_hooks`, everything a run does around the optimisation step (checkpoints, evaluation, logs,
EMA weights, TensorBoard, the report); the loop itself is ``train_loop.TrainerBase``.

Speed is configuration: ``DATALOADER.PIPELINE gpu`` (decoded-image cache, batched augmentation on the device),
``SOLVER.AMP`` (bf16/fp16 autocast, a GradScaler for fp16), ``MODEL.CHANNELS_LAST``, ``MODEL.COMPILE`` and
``SOLVER.FUSED``. Under torchrun (see launch.py) the model is wrapped in DistributedDataParallel, every rank
trains on its own batches and rank 0 alone writes files. The loop reads values back from the device only every
``SOLVER.LOG_PERIOD`` iterations (loss sums and the non-finite check stay on the device), so a GPU is never
stalled waiting for Python.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import LAST, Checkpointer, load_model_weights
from ..config import dump_cfg, training_warnings, validate
from ..data.build import training_copies_of_test_images
from ..evaluation.testsets import format_results, metrics_dict
from ..modeling import build_model
from ..modeling.losses import build_criterion, trains_classifier
from ..modeling.video import TrackletModel
from ..registry import AMP_REGISTRY, PIPELINE_REGISTRY
from ..solver import build_lr_scheduler, build_optimizer
from ..utils.distributed import broadcast_object, dist_info, rank_zero_first, shared_seed
from ..utils.env import seed_all
from ..utils.errors import ConfigError
from ..utils.logger import format_duration, setup_logger
from ..utils.outputs import CONFIG
from ..utils.provenance import run_header
from ..visualization.report import report_rows
from .hooks import (BestCheckpointer, ConsoleWriter, EMAHook, EvalHook, HistoryWriter, HookBase, HookStates,
                    LayerFreeze, LRScheduler, NonFiniteGuard, PeriodicCheckpointer, ReportHook, TensorBoardWriter)
from .evaluator import Evaluator, write_results
from .launch import process_device, to_sync_batchnorm
from .run_folder import prepare_output_dir
from .train_loop import TrainerBase


MIN_IDENTITIES_PER_GPU = 4  # below this, each GPU's BatchNorm (and un-gathered pair losses) see too few identities


def identities_per_gpu_warning(cfg, world_size: int) -> Optional[str]:
    """A warning when P x K batches split over ``world_size`` GPUs leave each GPU fewer than 4 identities, else None.

    IMS_PER_BATCH is the batch over all GPUs: with 8 GPUs at 64 images and K = 4 each GPU holds 2 identities. Pair
    losses see the whole batch with MODEL.LOSSES.GATHER_FEATURES, BatchNorm statistics stay per GPU (unless
    MODEL.SYNC_BN)."""
    if world_size == 1 or cfg.DATALOADER.SAMPLER != "identity":
        return None
    k = cfg.DATALOADER.NUM_INSTANCE
    ids = cfg.SOLVER.IMS_PER_BATCH // world_size // k
    if ids >= MIN_IDENTITIES_PER_GPU:
        return None
    share = (f"Each of the {world_size} GPUs trains on {ids} identities x {k} images (SOLVER.IMS_PER_BATCH "
             f"{cfg.SOLVER.IMS_PER_BATCH} is the batch over all GPUs)")
    fix = f"raise SOLVER.IMS_PER_BATCH to at least {MIN_IDENTITIES_PER_GPU * k * world_size}"
    if cfg.MODEL.LOSSES.GATHER_FEATURES:
        bn = "" if cfg.MODEL.SYNC_BN else " or set MODEL.SYNC_BN True"
        return (f"{share}: the pair losses see the whole batch (MODEL.LOSSES.GATHER_FEATURES), but BatchNorm "
                f"statistics come from {ids * k} images per GPU; {fix}{bn}.")
    return (f"{share}: each GPU's pair losses see only {k - 1} positives and {(ids - 1) * k} negatives per anchor; "
            f"set MODEL.LOSSES.GATHER_FEATURES True or {fix}.")


class Trainer(TrainerBase):
    """Builds data, model, criterion, optimizer, schedule and hooks from a config and trains.

    ``Trainer(cfg, resume=False).train()`` returns the final metrics (also in ``OUTPUT_DIR/metrics.json``). To
    change what a run does, override :meth:`build_hooks` (CONTRIBUTING.md, "Adding a hook").

    One run per ``OUTPUT_DIR`` (``reid.engine.run_folder``): a folder holding a run is refused unless ``resume``
    (continue it; a finished run raises ``FinishedRun``, a changed config that changes the result is refused
    unless ``allow_config_change``) or ``overwrite`` (move it into ``previous-<timestamp>/`` first).
    """

    def __init__(self, cfg, resume: bool = False, overwrite: bool = False, allow_config_change: bool = False) -> None:
        super().__init__()
        validate(cfg)  # every choice key and range, before anything is read or built
        self.cfg = cfg
        self.rank, self.world_size = dist_info()
        self.output_dir = Path(cfg.OUTPUT_DIR)
        self.device = process_device(cfg.MODEL.DEVICE)
        # Before any data is read or file written (log.txt included): the folder is free, or the run to resume fits.
        start = prepare_output_dir(cfg, resume, overwrite, allow_config_change)
        self.logger = setup_logger(cfg.OUTPUT_DIR, self.rank)
        for line in run_header(self.device, self.world_size, self.output_dir / CONFIG):
            self.logger.info(line)
        start.log(self.logger)
        self.ema: Optional[EMAHook] = None
        hooks = self.build_hooks()  # before any data is read: the hooks check their config keys
        self.seed = seed_all(shared_seed(cfg.SEED), cfg.DETERMINISTIC)
        if not cfg.DETERMINISTIC:
            torch.backends.cudnn.benchmark = True  # fixed input sizes: the fastest convolution algorithms, found once
        self.amp_dtype = AMP_REGISTRY.get(cfg.SOLVER.AMP)
        build_pipeline = PIPELINE_REGISTRY.get(cfg.DATALOADER.PIPELINE)
        if self.rank == 0:
            dump_cfg(cfg, self.output_dir / CONFIG)
        with rank_zero_first():  # a synthetic set or an image cache file is written once
            self.train_loader, train_set = build_pipeline(cfg, self.device, self.rank, self.world_size)
            # The test sets, parsed once (a training set is not parsed again) and checked before training starts.
            self.evaluator = Evaluator(cfg, self.device, parsed=train_set.parts or [train_set])
        self.logger.info("Training data:\n%s", train_set.summary())
        self.video = train_set.is_video  # clips (B, SEQ_LEN, 3, H, W): the model runs through TrackletModel
        if not self.video and cfg.MODEL.TEMPORAL_POOL != "avg":
            raise ConfigError(f"MODEL.TEMPORAL_POOL {cfg.MODEL.TEMPORAL_POOL!r} weighs the frames of tracklets, but "
                              f"the training sets ({', '.join(cfg.DATASETS.NAMES)}) are image sets; use 'avg'.")
        warnings = [identities_per_gpu_warning(cfg, self.world_size), *training_warnings(cfg)]
        if self.rank == 0:
            warnings += training_copies_of_test_images(train_set.train, self.evaluator.test_sets)
        for warning in filter(None, warnings):
            self.logger.warning(warning)
        self.model = self._build_model(train_set.num_train_pids, initialise=not resume)
        self.criterion = build_criterion(cfg).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.train_model = self._wrap(self.model)
        self.iters_per_epoch = len(self.train_loader)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer, self.iters_per_epoch)
        self.max_epochs = cfg.SOLVER.MAX_EPOCHS
        self.register_hooks(hooks)
        self.checkpointer = Checkpointer(self.model, cfg, self.output_dir, save_to_disk=self.rank == 0,
                                         optional=("scaler", "hooks", "clock"), async_write=True,
                                         optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                                         hooks=HookStates(self.hooks), clock=self.clock)
        if resume:
            self.resume(start.state)

    def build_hooks(self) -> List[Optional[HookBase]]:
        """What a run does around the optimisation step, in one place (None entries are skipped; ``self.ema`` is
        the EMA hook or None). Called before any data is read (the hooks check their config keys) and before
        the model exists: hooks reach the model, optimizer, schedule and checkpointer through ``self.trainer``
        once registered. They run by priority (checkpointers late, the report last), ties in this order."""
        cfg = self.cfg
        self.ema = EMAHook(cfg.SOLVER.EMA.DECAY) if cfg.SOLVER.EMA.ENABLED else None
        several_evaluations = cfg.TEST.EVAL_PERIOD < cfg.SOLVER.MAX_EPOCHS  # else model_best would be model_final
        hooks = [
            LRScheduler(),
            LayerFreeze.from_cfg(cfg),  # SOLVER.FREEZE_ITERS / FREEZE_EPOCHS (fast-reid, torchreid recipes)
            NonFiniteGuard(cfg.SOLVER.LOG_PERIOD, self.output_dir / LAST),
            self.ema,
            ConsoleWriter(cfg.SOLVER.LOG_PERIOD),
            EvalHook(cfg.TEST.EVAL_PERIOD, self.evaluate),
            BestCheckpointer(cfg.TEST.BEST_METRIC) if several_evaluations else None,
            PeriodicCheckpointer(cfg.SOLVER.CHECKPOINT_PERIOD),
        ]
        final = partial(write_results, cfg, self.output_dir, title="Final results")  # (last_eval, results)
        writers = [HistoryWriter(self.output_dir), ReportHook(final),
                   TensorBoardWriter(self.output_dir) if cfg.VIS.TENSORBOARD else None]  # checks tensorboard here
        return hooks + (writers if self.rank == 0 else [])  # rank 0 alone writes files

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluated and stored in model_final.pt / model_best.pt: the EMA weights when
        SOLVER.EMA.ENABLED, else the trained model."""
        return self.ema.model if self.ema is not None else self.model

    @property
    def show_progress(self) -> bool:
        return self.rank == 0

    def _build_model(self, num_classes: int, initialise: bool = True) -> nn.Module:
        """The model on its device; ``initialise``: from MODEL.WEIGHTS or ImageNet (MODEL.BACKBONE.PRETRAIN). A
        resumed run skips both (the checkpoint holds every weight), so it needs neither file nor network."""
        cfg = self.cfg
        model = build_model(cfg, num_classes, pretrained=initialise and not cfg.MODEL.WEIGHTS)
        if initialise and cfg.MODEL.WEIGHTS:
            load_model_weights(model, cfg.MODEL.WEIGHTS, cfg=cfg)
            self.logger.info("Loaded model weights from %s (classifier re-initialised)", cfg.MODEL.WEIGHTS)
        if not trains_classifier(cfg):
            fixed = [n for n, p in model.named_parameters() if not p.requires_grad]
            self.logger.info("MODEL.LOSSES.NAME has no classification loss: no classifier is built, and the %d "
                             "parameter tensors no configured loss reaches stay as initialised: %s", len(fixed),
                             ", ".join(fixed[:8]) + (" ..." if len(fixed) > 8 else ""))
        model = model.to(self.device)
        if cfg.MODEL.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        if cfg.MODEL.SYNC_BN and self.world_size > 1:
            model = to_sync_batchnorm(model, self.device)
        return model

    def _wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: the model, in DDP when distributed, compiled on request. ``self.model``
        stays the plain module (checkpoints, evaluation, EMA)."""
        if self.video:
            model = TrackletModel(model)
        if self.world_size > 1:
            model = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        return torch.compile(model) if self.cfg.MODEL.COMPILE else model

    # -- checkpoints -------------------------------------------------------------------------------------------
    def save(self, name: str, epoch: int) -> Path:
        """Write ``OUTPUT_DIR/name`` (rank 0 only) and wait until it is on disk; returns its path. (The hooks'
        periodic checkpoints are written in the background while training goes on.)"""
        path = self.checkpointer.save(name, epoch)
        self.checkpointer.wait()
        return path

    def resume(self, state: Optional[dict] = None) -> None:
        """Continue from ``OUTPUT_DIR/model_last.pt`` (``state``: its content, when already read): model,
        optimizer, schedule, loss scale, hook states (EMA weights, best metric, ...), training time, epoch and RNG
        states. The input pipelines need no state: their randomness is a function of (SEED, rank, epoch)."""
        path = self.output_dir / LAST
        self.start_epoch = int(self.checkpointer.resume(path, state)["epoch"])
        self.logger.info("Resumed from %s at epoch %d of %d (training time so far %s)", path, self.start_epoch,
                         self.max_epochs, format_duration(self.clock.before))

    # -- training ----------------------------------------------------------------------------------------------
    def train_step(self, batch: Dict[str, object]) -> Dict[str, torch.Tensor]:
        """One optimisation step on a batch dict; returns the loss terms (device tensors, not synchronised)."""
        images = batch["images"].to(self.device, non_blocking=True)
        if self.cfg.MODEL.CHANNELS_LAST and images.dim() == 4:  # (clips of tracklets are 5-D)
            images = images.contiguous(memory_format=torch.channels_last)
        pids = batch["pids"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            terms = self.criterion(self.train_model(images, pids, camids=batch["camids"].to(self.device)), pids)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(sum(terms.values())).backward()
        if self.cfg.SOLVER.GRAD_CLIP > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.SOLVER.GRAD_CLIP)
        self.scaler.step(self.optimizer)  # skipped by the fp16 scaler when gradients overflowed
        self.scaler.update()
        return terms

    def evaluate(self, epoch: int) -> dict:
        """Evaluate ``eval_model`` once (rank 0 scores, all ranks embed); returns the metrics dict on every
        rank and keeps the per-test-set results in ``last_eval`` on rank 0."""
        evals = self.evaluator.evaluate(self.eval_model, keep_rows=report_rows(self.cfg))  # rows the report draws
        metrics = broadcast_object(metrics_dict(evals) if evals is not None else None)
        if evals is not None:
            self.last_eval = evals
            weights = " (EMA weights)" if self.ema is not None else ""
            self.logger.info("Evaluation after epoch %d%s:\n%s", epoch, weights, format_results(evals))
        return metrics

    def train(self) -> dict:
        """Train to ``SOLVER.MAX_EPOCHS``; returns the final metrics (also in ``OUTPUT_DIR/metrics.json``)."""
        if self.start_epoch < self.max_epochs:
            self.logger.info("Training %s for epochs %d to %d (%d iterations each) on %s x %d process(es)",
                             self.cfg.MODEL.META_ARCHITECTURE, self.start_epoch + 1, self.max_epochs,
                             self.iters_per_epoch, self.device, self.world_size)
        else:  # resumed after the last epoch, before the final files were written
            self.logger.info("All %d epochs are trained; writing the final checkpoint and metrics", self.max_epochs)
        try:
            return super().train()  # a successful run ends with every checkpoint on disk (PeriodicCheckpointer)
        except BaseException:
            # The checkpoint being written in the background is finished before the error propagates (a crashed
            # run resumes from it); a failure to write it is logged, the original error raised.
            self.checkpointer.wait(raise_error=False)
            raise
