"""The peers' published training recipes, run by the peers' own code, for tests/engine/test_recipe_parity.py.

fast-reid's recipes are its ``configs/Base-*.yml`` (JDAI-CV/fast-reid, the files its pip release 1.4 was built
from; transcribed below as data, with the model-zoo configs' R50-ibn variants), trained by its own ``build_model``,
``build_optimizer`` (the optimizer class wrapped for FREEZE_ITERS), ``build_lr_scheduler``, ``SimpleTrainer`` loop
and ``LRScheduler`` / ``LayerFreeze`` hooks, in the order its ``DefaultTrainer.build_hooks`` registers them, on
images its ``build_transforms`` augmented. torchreid's OSNet recipe (``configs/im_osnet_x1_0_softmax_256x128_
amsgrad.yaml`` over its ``scripts/default_config.py``) is trained by its ``build_optimizer``,
``build_lr_scheduler`` and ``ImageSoftmaxEngine.train`` epochs on images its ``build_transforms`` gave.

fast-reid 1.4's data, engine and evaluation packages import ``torch._six`` (removed in torch 2) and
``collections.Mapping`` (removed in Python 3.10): :func:`peer_imports` provides both while they are imported, in
this test process only. reid itself never imports a peer.
"""
from __future__ import annotations

import collections
import collections.abc
import contextlib
import copy
import io
import random
import sys
import tempfile
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from tests.support.peer_models import fastreid_config, realistic_, require


@contextlib.contextmanager
def peer_imports() -> Iterator[None]:
    """``torch._six`` (with ``string_classes``) and ``collections.Mapping`` for the peers' imports, then removed."""
    require("fastreid")
    with pytest.MonkeyPatch.context() as mp:
        six = types.ModuleType("torch._six")
        six.string_classes = (str,)
        mp.setitem(sys.modules, "torch._six", six)
        mp.setattr(collections, "Mapping", collections.abc.Mapping, raising=False)
        yield


def fastreid():
    """fast-reid's modules the recipes use."""
    with peer_imports():
        from fastreid.config import get_cfg
        from fastreid.data.samplers import NaiveIdentitySampler
        from fastreid.data.transforms import autoaugment, build_transforms
        from fastreid.engine import hooks
        from fastreid.engine.train_loop import SimpleTrainer
        from fastreid.modeling import build_model
        from fastreid.solver import build_lr_scheduler, build_optimizer
        from fastreid.utils.events import EventStorage
    return types.SimpleNamespace(**{k: v for k, v in locals().items() if not k.startswith("_")})


def torchreid():
    require("torchreid")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid import models
        from torchreid.reid.data.transforms import build_transforms
        from torchreid.reid.engine import ImageSoftmaxEngine
        from torchreid.reid.optim import build_lr_scheduler, build_optimizer
    return types.SimpleNamespace(**{k: v for k, v in locals().items() if not k.startswith("_")})


def quiet(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` without what it prints (torchreid prints as it builds)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


# fast-reid's configs/Base-bagtricks.yml, Base-AGW.yml, Base-SBS.yml and Base-MGN.yml.
BAGTRICKS = {
    "MODEL": {"META_ARCHITECTURE": "Baseline",
              "BACKBONE": {"NAME": "build_resnet_backbone", "NORM": "BN", "DEPTH": "50x", "LAST_STRIDE": 1,
                           "FEAT_DIM": 2048, "WITH_IBN": False, "PRETRAIN": True},
              "HEADS": {"NAME": "EmbeddingHead", "NORM": "BN", "WITH_BNNECK": True, "POOL_LAYER": "GlobalAvgPool",
                        "NECK_FEAT": "before", "CLS_LAYER": "Linear"},
              "LOSSES": {"NAME": ["CrossEntropyLoss", "TripletLoss"], "CE": {"EPSILON": 0.1, "SCALE": 1.0},
                         "TRI": {"MARGIN": 0.3, "HARD_MINING": True, "NORM_FEAT": False, "SCALE": 1.0}}},
    "INPUT": {"SIZE_TRAIN": [256, 128], "SIZE_TEST": [256, 128], "REA": {"ENABLED": True, "PROB": 0.5},
              "FLIP": {"ENABLED": True}, "PADDING": {"ENABLED": True}},
    "DATALOADER": {"SAMPLER_TRAIN": "NaiveIdentitySampler", "NUM_INSTANCE": 4, "NUM_WORKERS": 8},
    "SOLVER": {"AMP": {"ENABLED": True}, "OPT": "Adam", "MAX_EPOCH": 120, "BASE_LR": 0.00035, "WEIGHT_DECAY": 0.0005,
               "WEIGHT_DECAY_NORM": 0.0005, "IMS_PER_BATCH": 64, "SCHED": "MultiStepLR", "STEPS": [40, 90],
               "GAMMA": 0.1, "WARMUP_FACTOR": 0.1, "WARMUP_ITERS": 2000, "CHECKPOINT_PERIOD": 30},
    "TEST": {"EVAL_PERIOD": 30, "IMS_PER_BATCH": 128},
}
AGW = merge(BAGTRICKS, {"MODEL": {"BACKBONE": {"WITH_NL": True}, "HEADS": {"POOL_LAYER": "GeneralizedMeanPooling"},
                                  "LOSSES": {"TRI": {"MARGIN": 0.0, "HARD_MINING": False}}}})
SBS = merge(BAGTRICKS, {
    "MODEL": {"FREEZE_LAYERS": ["backbone"], "BACKBONE": {"WITH_NL": True},
              "HEADS": {"NECK_FEAT": "after", "POOL_LAYER": "GeneralizedMeanPoolingP", "CLS_LAYER": "CircleSoftmax",
                        "SCALE": 64, "MARGIN": 0.35},
              "LOSSES": {"TRI": {"MARGIN": 0.0, "HARD_MINING": True}}},
    "INPUT": {"SIZE_TRAIN": [384, 128], "SIZE_TEST": [384, 128], "AUTOAUG": {"ENABLED": True, "PROB": 0.1}},
    "DATALOADER": {"NUM_INSTANCE": 16},
    "SOLVER": {"MAX_EPOCH": 60, "SCHED": "CosineAnnealingLR", "DELAY_EPOCHS": 30, "ETA_MIN_LR": 0.0000007,
               "FREEZE_ITERS": 1000, "CHECKPOINT_PERIOD": 20},
    "TEST": {"EVAL_PERIOD": 10},
})
MGN = merge(SBS, {"MODEL": {"META_ARCHITECTURE": "MGN", "FREEZE_LAYERS": ["backbone", "b1", "b2", "b3"],
                            "BACKBONE": {"WITH_NL": False}, "HEADS": {"EMBEDDING_DIM": 256}}})
IBN = {"MODEL": {"BACKBONE": {"WITH_IBN": True}}}
FASTREID: Dict[str, Dict[str, Any]] = {
    "bagtricks_R50": BAGTRICKS, "bagtricks_R50-ibn": merge(BAGTRICKS, IBN), "AGW_R50": AGW, "sbs_R50": SBS,
    "sbs_R50-ibn": merge(SBS, IBN), "mgn_R50-ibn": merge(MGN, IBN),
}
# torchreid's configs/im_osnet_x1_0_softmax_256x128_amsgrad.yaml over scripts/default_config.py (what the engine uses)
OSNET = {"name": "osnet_x1_0", "height": 256, "width": 128, "transforms": ["random_flip"], "label_smooth": True,
         "optim": "amsgrad", "lr": 0.0015, "weight_decay": 5e-4, "adam_beta1": 0.9, "adam_beta2": 0.999,
         "max_epoch": 150, "batch_size": 64, "fixbase_epoch": 10, "open_layers": ["classifier"],
         "lr_scheduler": "single_step", "stepsize": [60], "gamma": 0.1}


def fastreid_cfg(conf: Mapping[str, Any], **solver: Any):
    """fast-reid's CfgNode for the recipe ``conf`` (merged over its defaults from a YAML file, as its tools do)."""
    fr = fastreid()
    cfg = fr.get_cfg()
    with tempfile.TemporaryDirectory() as tmp:
        cfg.merge_from_file(str(fastreid_config(dict(conf), Path(tmp) / "config.yaml")))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    for key, value in solver.items():
        node, name = cfg, key.split(".")
        for part in name[:-1]:
            node = node[part]
        node[name[-1]] = value
    return cfg


def fastreid_model(cfg, seed: int = 0) -> torch.nn.Module:
    """fast-reid's model of ``cfg`` with realistic random weights (peer_models.realistic_), in eval mode."""
    torch.manual_seed(seed)  # the peer initialises from the global generator
    model = fastreid().build_model(cfg)
    images = torch.rand(8, 3, *cfg.INPUT.SIZE_TRAIN, generator=torch.Generator().manual_seed(seed)) * 255
    return realistic_(model, images, seed)


# -- data ----------------------------------------------------------------------------------------------------------
def person_images(num_ids: int, per_id: int, size: Tuple[int, int] = (96, 48), seed: int = 0) -> List[Image.Image]:
    """``num_ids`` x ``per_id`` RGB images (identity-major): a colour per identity, smooth random texture per image."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_ids):
        colour = rng.uniform(40, 215, 3)
        for _ in range(per_id):
            coarse = rng.normal(0, 40, (size[0] // 8, size[1] // 8, 3))
            texture = np.kron(coarse, np.ones((8, 8, 1))) + rng.normal(0, 12, (*size, 3))
            out.append(Image.fromarray(np.clip(colour + texture, 0, 255).astype(np.uint8)))
    return out


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's and torch's global generators (the peers' transforms draw from them), restoring both after."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def augmented(transform: Callable, images: Sequence[Image.Image], seed: int) -> torch.Tensor:
    """The peer's training transform applied to ``images``, drawing from seeded global generators."""
    with seeded(seed):
        return torch.stack([transform(im) for im in images])


# -- fast-reid's training loop -------------------------------------------------------------------------------------
def train_fastreid(cfg, model: torch.nn.Module, batches: Sequence[Dict[str, torch.Tensor]],
                   iters_per_epoch: int) -> Tuple[List[Dict[str, float]], List[List[float]]]:
    """Train ``model`` on ``batches`` ({"images": 0-255, "targets"}) as fast-reid's DefaultTrainer does: its
    optimizer and schedulers, its SimpleTrainer step and its LRScheduler and LayerFreeze hooks in their order.
    Returns the loss terms of every step and the LR of every parameter group at every step."""
    fr = fastreid()
    optimizer, _ = fr.build_optimizer(cfg, model, contiguous=False)  # contiguous buffers: the same update, fused

    class Trainer(fr.SimpleTrainer):
        grad_scaler = None  # fp32 (the hooks read it)

        def run_step(self):
            lrs.append([g["lr"] for g in self.optimizer.param_groups])
            super().run_step()

    losses: List[Dict[str, float]] = []
    lrs: List[List[float]] = []
    model.register_forward_hook(lambda m, inputs, out: losses.append({k: v.item() for k, v in out.items()}))
    stream = ({"images": b["images"].clone(), "targets": b["targets"]} for b in batches)  # it normalises in place
    trainer = Trainer(model, stream, optimizer, None)
    trainer.warmup_iters, trainer.delay_epochs = cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.DELAY_EPOCHS
    scheduler = fr.build_lr_scheduler(cfg, optimizer, iters_per_epoch)
    hooks = [fr.hooks.LRScheduler(optimizer, scheduler)]
    if cfg.MODEL.FREEZE_LAYERS and cfg.SOLVER.FREEZE_ITERS > 0:
        hooks.append(fr.hooks.LayerFreeze(model, cfg.MODEL.FREEZE_LAYERS, cfg.SOLVER.FREEZE_ITERS))
    trainer.register_hooks(hooks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(0, cfg.SOLVER.MAX_EPOCH, iters_per_epoch)
    return losses, lrs


def fastreid_lr_trace(cfg, model: torch.nn.Module, iters_per_epoch: int) -> List[List[float]]:
    """Every group's LR at every iteration of the whole schedule, from fast-reid's build_lr_scheduler and
    LRScheduler hook run by its training loop (with steps that update nothing)."""
    fr = fastreid()
    optimizer, _ = fr.build_optimizer(cfg, model, contiguous=False)
    lrs: List[List[float]] = []

    class Trainer(fr.SimpleTrainer):
        grad_scaler = None

        def run_step(self):
            lrs.append([g["lr"] for g in self.optimizer.param_groups])
            self.optimizer.step()  # no gradients: no update

    trainer = Trainer(model, iter(()), optimizer, None)
    trainer.warmup_iters, trainer.delay_epochs = cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.DELAY_EPOCHS
    trainer.register_hooks([fr.hooks.LRScheduler(optimizer, fr.build_lr_scheduler(cfg, optimizer, iters_per_epoch))])
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        trainer.train(0, cfg.SOLVER.MAX_EPOCH, iters_per_epoch)
    return lrs


def fastreid_param_groups(optimizer_params: Sequence[Dict[str, Any]], model: torch.nn.Module) -> List[str]:
    """The parameter name of each of fast-reid's one-parameter groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(g["params"][0])] for g in optimizer_params]


# -- torchreid's training loop -------------------------------------------------------------------------------------
class _EpochBatches:
    """torchreid's train_loader: the batches of the engine's current epoch."""

    def __init__(self, batches: Sequence[Dict[str, torch.Tensor]], iters_per_epoch: int) -> None:
        self.batches, self.iters_per_epoch, self.engine = batches, iters_per_epoch, None

    def __len__(self) -> int:
        return self.iters_per_epoch

    def __iter__(self):
        start = self.engine.epoch * self.iters_per_epoch
        return iter(self.batches[start:start + self.iters_per_epoch])


def torchreid_engine(model: torch.nn.Module, num_classes: int, batches: Sequence[Dict[str, torch.Tensor]],
                     iters_per_epoch: int, **recipe: Any):
    """torchreid's ImageSoftmaxEngine with its optimizer and scheduler for the OSNet ``recipe``."""
    tr = torchreid()
    r = {**OSNET, **recipe}
    optimizer = tr.build_optimizer(model, optim=r["optim"], lr=r["lr"], weight_decay=r["weight_decay"],
                                   adam_beta1=r["adam_beta1"], adam_beta2=r["adam_beta2"])
    scheduler = tr.build_lr_scheduler(optimizer, lr_scheduler=r["lr_scheduler"], stepsize=r["stepsize"],
                                      gamma=r["gamma"], max_epoch=r["max_epoch"])
    loader = _EpochBatches(batches, iters_per_epoch)
    manager = types.SimpleNamespace(train_loader=loader, test_loader={}, num_train_pids=num_classes,
                                    sources=["parity"])
    with contextlib.redirect_stdout(io.StringIO()):
        engine = tr.ImageSoftmaxEngine(manager, model, optimizer=optimizer, scheduler=scheduler, use_gpu=False,
                                       label_smooth=r["label_smooth"])
    loader.engine = engine
    return engine, r


def train_torchreid(engine, recipe: Dict[str, Any]) -> Tuple[List[Dict[str, float]], List[List[float]]]:
    """Run the engine's training epochs as its ``run`` does (without the evaluations); returns the loss of every
    step and every group's LR at every step."""
    losses: List[Dict[str, float]] = []
    lrs: List[List[float]] = []
    step = engine.forward_backward

    def forward_backward(data):
        lrs.append([g["lr"] for g in engine.optimizer.param_groups])
        summary = step(data)
        losses.append({"loss": summary["loss"]})
        return summary

    engine.forward_backward = forward_backward
    engine.max_epoch = recipe["max_epoch"]
    with contextlib.redirect_stdout(io.StringIO()):
        for engine.epoch in range(recipe["max_epoch"]):
            engine.train(print_freq=10 ** 9, fixbase_epoch=recipe["fixbase_epoch"], open_layers=recipe["open_layers"])
    return losses, lrs
