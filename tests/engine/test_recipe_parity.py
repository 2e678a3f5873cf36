"""reid trains the peers' published recipes step for step (issue 23), checked against the peers' own code.

For every recipe of configs/{Market1501,MSMT17} (fast-reid's BoT, BoT-ibn, AGW, SBS, SBS-ibn, MGN-ibn; torchreid's
OSNet x1.0), reid's ``Trainer`` runs the recipe's config file and the peer runs its own recipe (tests/support/
peer_recipes.py): from the same initial weights (the peer's model converted by reid's importer, which also checks
that the config builds the peer's architecture; classifier included), on the same augmented tensors (made by the
peer's own training transform), with the lengths shrunk alike in both (2 iterations an epoch, 2 epochs, 2 images of
2 identities a batch; warm-up 2 iterations, freeze 3, SBS's delay 1 epoch, BoT's and OSNet's decay after epoch 1,
so the run crosses the end of warm-up, an epoch end with the backbone frozen, the end of the freeze and a decay
step). Every step's loss terms agree to 1e-5 and every parameter and BatchNorm statistic afterwards to 1e-4
(relative). The models run in float64: in float32 neither reid nor the peer itself reproduces a run past the first
steps, because Adam's first updates, lr * g / (|g| + 1e-8), turn the last-bit rounding of near-zero gradients into
differences of a whole step; :func:`test_float32_runs_differ_from_the_peer_as_the_peer_differs_from_itself`
measures that floor and holds reid to it. Warm-up ending inside an epoch, the delayed cosine and the LR factors
are checked over whole schedules without models (their cost is in the models' steps).

The learning rate of every parameter group at every iteration of whole schedules (shrunk, and Market-1501's real
one) equals the peers' schedulers'; every augmentation op gives the peer's pixels for the same parameters; the
random parameters and the sampler's batches follow the peers' distributions (checked by drawing).

Under REID_REQUIRE_PEERS=1 (CI) a missing peer is an error, never a skip. ``pytest -s`` prints the differences.
"""
from __future__ import annotations

import math
import re
import sys
from collections import Counter
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from reid.checkpoint.convert import fastreid as fastreid_convert
from reid.checkpoint.convert import torchreid as torchreid_convert
from reid.checkpoint.convert.core import map_state
from reid.config import load_cfg
from reid.data import autoaugment
from reid.data.augment import Augmenter, TrainAugmentation
from reid.data.datasets import ImageRecord, ReIDDataset
from reid.data.samplers import RoundIdentitySampler
from reid.data.transforms import build_resize
from reid.engine.hooks import HookBase, LayerFreeze, LRScheduler
from reid.engine.trainer import Trainer
from reid.modeling import build_model
from reid.registry import PIPELINE_REGISTRY
from reid.solver import build_lr_scheduler, build_optimizer
from tests.support import peer_recipes as peers
from tests.support.peer_models import torchreid_model

pytestmark = pytest.mark.usefixtures("single_thread")

NUM_IDS, PER_ID, K = 4, 6, 2  # training identities and their images; a batch is 2 identities x K images
ITERS_PER_EPOCH, EPOCHS = 2, 2
LOSS_RTOL, PARAM_RTOL = 1e-5, 1e-4
DTYPE = torch.float64
# fast-reid's loss terms (MGN: one per head, x 1/8 and x 1/5) -> reid's criterion terms (each the mean over heads)
TERMS = {"loss_cls": "loss_ce", "loss_triplet": "loss_triplet", "loss": "loss_ce"}
IMAGES = peers.person_images(NUM_IDS, PER_ID)


def _size(recipe: str) -> List[int]:
    return [96, 16] if recipe.startswith("mgn") else [32, 16]  # MGN's stripes need a map height divisible by 6


def _common_opts(recipe: str, tmp_path) -> List[str]:
    """reid overrides of every parity run. The parity pipeline hands reid the peer's augmented tensors (the
    augmentation is compared on its own below), so INPUT.AUTOAUG, which the workers pipeline runs, is off."""
    size = str(_size(recipe))
    return ["INPUT.SIZE_TRAIN", size, "INPUT.SIZE_TEST", size, "SOLVER.IMS_PER_BATCH", str(2 * K),
            "DATALOADER.NUM_INSTANCE", str(K), "SOLVER.MAX_EPOCHS", str(EPOCHS), "SOLVER.AMP", "off",
            "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DEVICE", "cpu", "DATALOADER.PIPELINE", "parity",
            "DATALOADER.NUM_WORKERS", "0", "INPUT.AUTOAUG.ENABLED", "False", "TEST.EVAL_PERIOD", "100",
            "DATASETS.NAMES", "['Synthetic']", "DATASETS.TESTS", "['Synthetic']",
            "VIS.REPORT", "False", "OUTPUT_DIR", str(tmp_path / "reid")]


def _fastreid_shrunk(conf: dict, recipe: str) -> Dict[str, object]:
    """The shrunk lengths in fast-reid's keys (reid gets the same values, :func:`_fastreid_opts`)."""
    solver = conf["SOLVER"]
    return {"SOLVER.MAX_EPOCH": EPOCHS, "SOLVER.WARMUP_ITERS": 2, "SOLVER.STEPS": [1], "SOLVER.IMS_PER_BATCH": 2 * K,
            "SOLVER.DELAY_EPOCHS": 1 if solver.get("DELAY_EPOCHS") else 0,
            "SOLVER.FREEZE_ITERS": 3 if solver.get("FREEZE_ITERS") else 0, "SOLVER.AMP.ENABLED": False,
            "DATALOADER.NUM_INSTANCE": K, "MODEL.HEADS.NUM_CLASSES": NUM_IDS,
            "INPUT.SIZE_TRAIN": _size(recipe), "INPUT.SIZE_TEST": _size(recipe)}


def _fastreid_opts(shrunk: Dict[str, object]) -> List[str]:
    s = {k.split(".")[-1]: v for k, v in shrunk.items()}
    return ["SOLVER.WARMUP_ITERS", str(s["WARMUP_ITERS"]), "SOLVER.STEPS", str(s["STEPS"]), "SOLVER.DELAY_EPOCHS",
            str(s["DELAY_EPOCHS"]), "SOLVER.FREEZE_ITERS", str(s["FREEZE_ITERS"])]


# -- reid's side ---------------------------------------------------------------------------------------------------
class _Batches:
    """The training pipeline DATALOADER.PIPELINE parity (registered by the ``reid_trainer`` fixture): given
    batches, epoch by epoch."""

    def __init__(self, batches: Sequence[Dict[str, object]]) -> None:
        self.batches, self.epoch = batches, 0

    def __len__(self) -> int:
        return ITERS_PER_EPOCH

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def close(self) -> None:
        pass

    def __iter__(self):
        return iter(self.batches[self.epoch * ITERS_PER_EPOCH:(self.epoch + 1) * ITERS_PER_EPOCH])


class _Recorder(HookBase):
    """Every step's loss terms and the LR each parameter group had in it (runs before the LR schedule steps)."""

    priority = 10

    def __init__(self) -> None:
        self.losses: List[Dict[str, float]] = []
        self.lrs: List[List[float]] = []

    def after_step(self) -> None:
        self.losses.append({k: v.item() for k, v in self.trainer.terms.items()})
        self.lrs.append([g["lr"] for g in self.trainer.optimizer.param_groups])


class _ParityTrainer(Trainer):
    """reid's Trainer with the hooks that shape training (the LR schedule, the layer freeze) and a recorder; no
    evaluation, checkpoints or reports."""

    def build_hooks(self):
        self.recorder = _Recorder()
        return [h for h in super().build_hooks() if isinstance(h, (LRScheduler, LayerFreeze))] + [self.recorder]


@pytest.fixture
def reid_trainer(monkeypatch):
    """``make(cfg, batches)``: reid's Trainer on the config (its pipeline giving ``batches``), model in DTYPE."""
    given: Dict[str, object] = {}
    records = [ImageRecord(f"parity/{i}.jpg", i // PER_ID, 0) for i in range(NUM_IDS * PER_ID)]
    # Named as the test set (DATASETS.TESTS Synthetic), with a query that has a match, so that a trainer checking
    # its test sets before training takes this one as parsed; nothing is evaluated.
    query, gallery = [ImageRecord("parity/q.jpg", 1, 0)], [ImageRecord("parity/g.jpg", 1, 1)]
    dataset = ReIDDataset("Synthetic", "parity", records, query, gallery)
    monkeypatch.setitem(PIPELINE_REGISTRY._obj, "parity",
                        lambda cfg, device, rank, world: (_Batches(given["batches"]), dataset))

    def make(cfg, batches) -> _ParityTrainer:
        given["batches"] = batches
        trainer = _ParityTrainer(cfg)
        trainer.model.to(DTYPE)
        return trainer

    return make


# -- data ----------------------------------------------------------------------------------------------------------
def _batch_order(seed: int = 1) -> List[int]:
    """Image indices of EPOCHS x ITERS_PER_EPOCH batches of 2 identities x K images."""
    rng = np.random.default_rng(seed)
    out: List[int] = []
    for _ in range(EPOCHS * ITERS_PER_EPOCH):
        for pid in rng.choice(NUM_IDS, 2, replace=False):
            out += (pid * PER_ID + rng.choice(PER_ID, K, replace=False)).tolist()
    return out


def _batches(transform: Callable, normalise: Callable[[torch.Tensor], torch.Tensor], peer_keys: Tuple[str, str]):
    """The same batches for both: the peer's training transform applied to the images (for the peer's model), and
    what reaches the peer's network after its own normalisation (for reid's)."""
    order = _batch_order()
    images = peers.augmented(transform, [IMAGES[i] for i in order], seed=2).to(DTYPE)
    pids = torch.tensor([i // PER_ID for i in order])
    theirs, ours = [], []
    for b in range(EPOCHS * ITERS_PER_EPOCH):
        x, y = images[b * 2 * K:(b + 1) * 2 * K], pids[b * 2 * K:(b + 1) * 2 * K]
        theirs.append({peer_keys[0]: x, peer_keys[1]: y})
        ours.append({"images": normalise(x), "pids": y, "camids": torch.zeros_like(y), "paths": []})
    return theirs, ours


def _fastreid_normalise(cfg) -> Callable[[torch.Tensor], torch.Tensor]:
    """fast-reid's model input normalisation (its preprocess_image), on the 0-255 tensors its transform gives."""
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, -1, 1, 1).to(DTYPE)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, -1, 1, 1).to(DTYPE)
    return lambda x: x.sub(mean).div(std)


# -- comparisons ---------------------------------------------------------------------------------------------------
def _loss_differences(theirs: List[Dict[str, float]], ours: List[Dict[str, float]]) -> float:
    """Largest relative difference of the summed loss terms of each kind, step by step."""
    assert len(theirs) == len(ours) == EPOCHS * ITERS_PER_EPOCH
    worst = 0.0
    for step, (a, b) in enumerate(zip(theirs, ours)):
        summed: Dict[str, float] = {}
        for name, value in a.items():
            kind = next(t for t in TERMS if name == t or name.startswith(t + "_"))
            summed[TERMS[kind]] = summed.get(TERMS[kind], 0.0) + value
        assert set(summed) == set(b), (step, a, b)
        for name, value in summed.items():
            rel = abs(b[name] - value) / max(abs(value), 1e-12)
            worst = max(worst, rel)
            assert rel <= LOSS_RTOL, f"step {step} {name}: reid {b[name]!r}, peer {value!r}"
    return worst


def _parameter_differences(peer: Dict[str, torch.Tensor], ours: Dict[str, torch.Tensor],
                           initial: Dict[str, torch.Tensor]) -> float:
    """Largest difference of a tensor relative to its largest value (parameters and BN statistics)."""
    worst, moved = 0.0, 0
    for name, value in peer.items():
        err = (ours[name].to(value.dtype) - value).abs().max().item()
        rel = err / max(value.abs().max().item(), 1e-12)
        worst = max(worst, rel)
        assert rel <= PARAM_RTOL, f"{name}: differs by {err:.3g} ({rel:.3g} of its scale)"
        moved += not torch.equal(value, initial[name])
    assert moved > len(peer) // 2, "too few tensors changed for the comparison to mean anything"
    return worst


def _same_lrs(theirs: List[List[float]], ours: List[List[float]]) -> None:
    """Every group has one LR in these recipes (all factors are 1): the same at every step."""
    assert len(theirs) == len(ours)
    for step, (a, b) in enumerate(zip(theirs, ours)):
        assert len(set(a)) == len(set(b)) == 1 and math.isclose(a[0], b[0], rel_tol=1e-12), (step, a, b)


def _mapped(rules, state: Dict[str, torch.Tensor], ours: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The peer's tensors (copies) under reid's names by ``rules`` (the first that matches a whole key: the
    classifier's, then the importer's), num_batches_tracked left out."""
    out = {}
    for key, value in state.items():
        found = next(((m, t) for m, t in ((re.fullmatch(p, key), t) for p, t in rules) if m), None)
        if found is not None and found[1] is not None and not key.endswith("num_batches_tracked"):
            name = found[0].expand(found[1])
            out[name] = value.detach().reshape(ours[name].shape).clone()
    return out


def _converted(plan, model: nn.Module, classifier_rules) -> Tuple[Dict[str, torch.Tensor], List]:
    """(reid's state dict from the peer's, the name rules): the importer's strict mapping (so the recipe config
    builds the peer's architecture), plus the classifier of the training identities."""
    state = {k: v.clone() for k, v in map_state(plan, model)[0].items()}
    rules = list(classifier_rules) + list(plan.rules)
    state.update({k: v for k, v in _mapped(rules, plan.state, model.state_dict()).items() if "classifier" in k})
    return state, rules


FASTREID_CLASSIFIERS = {"Baseline": [(r"heads\.weight", "head.classifier.weight")],
                        "MGN": [(rf"{name}\.weight", f"heads.{i}.classifier.weight")
                                for i, name in enumerate(fastreid_convert._MGN_HEADS)]}
TORCHREID_CLASSIFIER = [(r"classifier\.(weight|bias)", r"head.classifier.\1")]


# -- training-step parity --------------------------------------------------------------------------------------------
def _train_both(name: str, trainer: _ParityTrainer, peer: nn.Module, plan, classifier_rules,
                train_peer: Callable[[], Tuple[list, list]]) -> Tuple[float, float]:
    """Load the peer's initial weights into reid's model, train the peer (``train_peer``) and reid, compare."""
    state, rules = _converted(plan, trainer.model, classifier_rules)
    initial = _mapped(rules, peer.state_dict(), trainer.model.state_dict())
    trainer.model.load_state_dict(state)  # the peer's initial weights, classifier included
    peer_losses, peer_lrs = train_peer()
    trainer.train()
    _same_lrs(peer_lrs, trainer.recorder.lrs)
    loss = _loss_differences(peer_losses, trainer.recorder.losses)
    params = _parameter_differences(_mapped(rules, peer.state_dict(), trainer.model.state_dict()),
                                    trainer.model.state_dict(), initial)
    print(f"\n{name}: largest loss difference {loss:.2e}, parameter difference {params:.2e} (relative, "
          f"{str(DTYPE).split('.')[-1]})")
    return loss, params


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(peers.FASTREID))
def test_fastreid_recipe_trains_step_for_step(recipe, tmp_path, reid_trainer):
    conf = peers.FASTREID[recipe]
    shrunk = _fastreid_shrunk(conf, recipe)
    peer_cfg = peers.fastreid_cfg(conf, **shrunk)
    peer = peers.fastreid_model(peer_cfg).to(DTYPE)
    theirs, ours = _batches(peers.fastreid().build_transforms(peer_cfg, is_train=True), _fastreid_normalise(peer_cfg),
                            ("images", "targets"))
    cfg = load_cfg(f"configs/Market1501/{recipe}.yml", _common_opts(recipe, tmp_path) + _fastreid_opts(shrunk))
    trainer = reid_trainer(cfg, ours)
    plan = fastreid_convert.plan({"model": peer.state_dict()}, "peer", conf)
    _train_both(recipe, trainer, peer, plan, FASTREID_CLASSIFIERS[cfg.MODEL.META_ARCHITECTURE],
                lambda: peers.train_fastreid(peer_cfg, peer, theirs, ITERS_PER_EPOCH))


def _osnet(tmp_path, reid_trainer, nudge: bool = False):
    """torchreid's OSNet recipe (its model, transform and engine) and reid's trainer on osnet_x1_0.yml, shrunk:
    the classifier alone trains in epoch 1, StepLR(step_size 1) decays after it (reid's STEPS [1]).
    ``nudge``: the peer's inputs moved up by one float ulp."""
    tr = peers.torchreid()
    size = _size("osnet_x1_0")
    peer = torchreid_model("osnet_x1_0", NUM_IDS, tuple(size)).to(DTYPE)
    transform, _ = peers.quiet(tr.build_transforms, *size, transforms=peers.OSNET["transforms"])
    theirs, ours = _batches(transform, lambda x: x, ("img", "pid"))
    if nudge:
        theirs = [{"img": torch.nextafter(b["img"], b["img"] + 1), "pid": b["pid"]} for b in theirs]
    cfg = load_cfg("configs/Market1501/osnet_x1_0.yml", _common_opts("osnet_x1_0", tmp_path) + [
        "SOLVER.FREEZE_EPOCHS", "1", "SOLVER.STEPS", "[1]"])
    engine, recipe = peers.torchreid_engine(peer, NUM_IDS, theirs, ITERS_PER_EPOCH, max_epoch=EPOCHS, fixbase_epoch=1,
                                            stepsize=[1])
    plan = torchreid_convert.plan({"state_dict": peer.state_dict()}, "peer", "osnet_x1_0")
    trainer = reid_trainer(cfg, ours) if reid_trainer is not None else None
    return trainer, peer, plan, lambda: peers.train_torchreid(engine, recipe)


def test_torchreid_osnet_recipe_trains_step_for_step(tmp_path, reid_trainer):
    # torchreid builds its smoothed targets in float32 whatever the logits' type (0.9 -> 0.89999998): in float64
    # its losses differ from reid's by ~4e-8 from the first step.
    trainer, peer, plan, train_peer = _osnet(tmp_path, reid_trainer)
    _train_both("osnet_x1_0", trainer, peer, plan, TORCHREID_CLASSIFIER, train_peer)


def test_float32_runs_differ_from_the_peer_as_the_peer_differs_from_itself(tmp_path, reid_trainer, monkeypatch):
    """In float32 torchreid's own OSNet run and the same run on inputs moved by one ulp part ways once Adam
    (AMSGrad) amplifies the rounding of near-zero gradients; reid's float32 run is held to that floor (at most 4 x
    it)."""
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "DTYPE", torch.float32)
    monkeypatch.setattr(module, "LOSS_RTOL", 1.0)  # the floor, not 1e-5, is the bound here
    monkeypatch.setattr(module, "PARAM_RTOL", 1.0)
    _, twin, plan, train_twin = _osnet(tmp_path / "twin", None, nudge=True)
    twin_losses, _ = train_twin()
    trainer, peer, plan, train_peer = _osnet(tmp_path, reid_trainer)
    kept = {}
    loss, params = _train_both("osnet_x1_0 reid vs torchreid", trainer, peer, plan, TORCHREID_CLASSIFIER,
                               lambda: kept.setdefault("peer", train_peer()))
    rules = TORCHREID_CLASSIFIER + list(plan.rules)
    ours = trainer.model.state_dict()
    twin_state, peer_state = _mapped(rules, twin.state_dict(), ours), _mapped(rules, peer.state_dict(), ours)
    floor_params = max((twin_state[k] - v).abs().max().item() / v.abs().max().item() for k, v in peer_state.items())
    floor_loss = max(abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(twin_losses, kept["peer"][0]))
    print(f"\nfloat32 osnet_x1_0: torchreid vs itself on 1-ulp inputs: loss {floor_loss:.2e}, parameters "
          f"{floor_params:.2e}")
    assert floor_params > 0 and loss <= 4 * max(floor_loss, LOSS_RTOL) and params <= 4 * floor_params


# -- learning rates over whole schedules -----------------------------------------------------------------------------
def _lr_per_parameter(optimizer, names: Dict[int, str], lrs: List[List[float]]) -> List[Dict[str, float]]:
    """Per iteration, {parameter name: the LR of its group}."""
    groups = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    return [{n: lr for group, lr in zip(groups, step) for n in group} for step in lrs]


def _reid_lr_trace(cfg, model: nn.Module, iters: int, iters_per_epoch: int):
    """reid's optimizer groups and schedule, stepped by its LRScheduler hook after every iteration."""
    optimizer = build_optimizer(cfg, model)
    hook = LRScheduler()
    hook.trainer = type("T", (), {"scheduler": build_lr_scheduler(cfg, optimizer, iters_per_epoch)})()
    lrs = []
    for _ in range(iters):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        hook.after_step()
    return optimizer, lrs


# (recipe, iterations per epoch, fast-reid overrides): warm-up ending inside an epoch, a delay longer or shorter
# than the warm-up, bias and heads LR factors (each group's LR, the cosine's common floor).
SCHEDULES = [
    ("bagtricks_R50", 5, {"SOLVER.MAX_EPOCH": 12, "SOLVER.WARMUP_ITERS": 7, "SOLVER.STEPS": [3, 6]}),
    ("sbs_R50", 5, {"SOLVER.MAX_EPOCH": 12, "SOLVER.WARMUP_ITERS": 7, "SOLVER.DELAY_EPOCHS": 4}),
    ("sbs_R50", 4, {"SOLVER.MAX_EPOCH": 9, "SOLVER.WARMUP_ITERS": 13, "SOLVER.DELAY_EPOCHS": 2}),
]


@pytest.mark.parametrize("recipe, iters_per_epoch, shrunk", SCHEDULES)
def test_every_group_has_fastreids_lr_at_every_iteration(recipe, iters_per_epoch, shrunk):
    solver = {**shrunk, "SOLVER.BIAS_LR_FACTOR": 2.0, "SOLVER.HEADS_LR_FACTOR": 10.0,
              "MODEL.BACKBONE.DEPTH": "18x", "MODEL.BACKBONE.WITH_NL": False, "MODEL.HEADS.NUM_CLASSES": 3}
    conf = peers.FASTREID[recipe]
    peer_cfg = peers.fastreid_cfg(conf, **solver)
    torch.manual_seed(0)
    peer = peers.fastreid().build_model(peer_cfg)
    peer_lrs = peers.fastreid_lr_trace(peer_cfg, peer, iters_per_epoch)
    peer_opt, _ = peers.fastreid().build_optimizer(peer_cfg, peer, contiguous=False)

    opts = ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.WITH_NL", "False", "MODEL.BACKBONE.PRETRAIN", "False",
            "SOLVER.BIAS_LR_FACTOR", "2.0", "SOLVER.HEADS_LR_FACTOR", "10.0", "SOLVER.MAX_EPOCHS",
            str(shrunk["SOLVER.MAX_EPOCH"]), "SOLVER.WARMUP_ITERS", str(shrunk["SOLVER.WARMUP_ITERS"])]
    opts += ["SOLVER.STEPS", str(shrunk["SOLVER.STEPS"])] if "SOLVER.STEPS" in shrunk else []
    opts += ["SOLVER.DELAY_EPOCHS", str(shrunk["SOLVER.DELAY_EPOCHS"])] if "SOLVER.DELAY_EPOCHS" in shrunk else []
    cfg = load_cfg(f"configs/Market1501/{recipe}.yml", opts)
    model = build_model(cfg, 3)
    optimizer, lrs = _reid_lr_trace(cfg, model, len(peer_lrs), iters_per_epoch)

    plan = fastreid_convert.plan({"model": peer.state_dict()}, "peer", peers.merge(conf, {"MODEL": {
        "BACKBONE": {"DEPTH": "18x", "WITH_NL": False}}}))
    rules = FASTREID_CLASSIFIERS["Baseline"] + list(plan.rules)
    to_ours = {}
    for name, _ in peer.named_parameters():
        found = next((m.expand(t) for m, t in ((re.fullmatch(p, name), t) for p, t in rules) if m), None)
        to_ours[name] = found
    theirs = _lr_per_parameter(peer_opt, {id(p): to_ours[n] for n, p in peer.named_parameters()}, peer_lrs)
    ours = _lr_per_parameter(optimizer, {id(p): n for n, p in model.named_parameters()}, lrs)
    assert len(theirs) == shrunk["SOLVER.MAX_EPOCH"] * iters_per_epoch and len(set(map(len, theirs))) == 1
    assert len({lr for step in theirs for lr in step.values()}) > 10  # warm-up, decay and 4 group LRs
    for it, (a, b) in enumerate(zip(theirs, ours)):
        assert a.keys() == b.keys()
        bad = {n: (a[n], b[n]) for n in a if not math.isclose(a[n], b[n], rel_tol=1e-12)}
        assert not bad, f"iteration {it}: {list(bad.items())[:4]}"


@pytest.mark.parametrize("recipe, dataset_images", [("bagtricks_R50", 12936), ("sbs_R50", 12936)])
def test_the_real_market1501_schedule_is_fastreids(recipe, dataset_images):
    """All 24,240 (BoT) / 12,120 (SBS) iterations of Market-1501: fast-reid's epoch is images // 64 iterations."""
    ipe = dataset_images // 64
    conf = peers.FASTREID[recipe]
    peer_cfg = peers.fastreid_cfg(conf)
    module = nn.Linear(2, 2, bias=False)
    peer_lrs = peers.fastreid_lr_trace(peer_cfg, module, ipe)
    cfg = load_cfg(f"configs/Market1501/{recipe}.yml", ["MODEL.BACKBONE.PRETRAIN", "False"])
    _, lrs = _reid_lr_trace(cfg, nn.Linear(2, 2, bias=False), len(peer_lrs), ipe)
    assert len(lrs) == cfg.SOLVER.MAX_EPOCHS * ipe
    worst = max(abs(a[0] - b[0]) / a[0] for a, b in zip(peer_lrs, lrs))
    print(f"\n{recipe}: {len(lrs)} iterations, largest relative LR difference {worst:.1e}")
    assert worst <= 1e-12


def test_every_iteration_has_torchreids_lr():
    """torchreid's engine steps StepLR(60) after every epoch: x0.1 after epochs 60 and 120 (reid's STEPS
    [60, 120]); shrunk to StepLR(3) over 8 epochs, then the real 150 epochs."""
    class Net(nn.Module):  # torchreid's open_layers need a ``classifier``
        def __init__(self):
            super().__init__()
            self.body, self.classifier = nn.Linear(2, 2), nn.Linear(2, 2)

    for epochs, step, steps in ((8, 3, "[3, 6]"), (150, 60, "[60, 120]")):
        batches = [{"img": torch.zeros(1, 2), "pid": torch.zeros(1, dtype=torch.long)}] * (epochs * 2)
        engine, recipe = peers.torchreid_engine(Net(), 2, batches, 2, max_epoch=epochs, stepsize=[step],
                                                fixbase_epoch=1)
        engine.forward_backward = lambda data: {"loss": 0.0}
        peer_lrs = []
        original = engine.update_lr
        engine.update_lr = lambda: (peer_lrs.append(engine.optimizer.param_groups[0]["lr"]), original())
        peers.train_torchreid(engine, recipe)
        cfg = load_cfg("configs/Market1501/osnet_x1_0.yml", ["SOLVER.MAX_EPOCHS", str(epochs), "SOLVER.STEPS", steps,
                                                             "MODEL.BACKBONE.PRETRAIN", "False"])
        _, lrs = _reid_lr_trace(cfg, Net(), epochs * 2, 2)
        assert [step[0] for step in lrs[::2]] == pytest.approx(peer_lrs, rel=1e-12)
        assert len(set(peer_lrs)) == 3


# -- augmentation ----------------------------------------------------------------------------------------------------
def _same_rate(a: Sequence[float], b: Sequence[float], what: str, z: float = 5.0) -> None:
    """Two-sample z-test: the means of two samples agree within ``z`` standard errors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) <= z * se + 1e-12, f"{what}: {a.mean():.4f} vs {b.mean():.4f} (se {se:.4f})"


def _same_distribution(a: Sequence, b: Sequence, what: str) -> None:
    """Chi-square test of two samples of a discrete variable (p > 1e-4; the draws are seeded)."""
    from scipy.stats import chi2_contingency

    keys = sorted(set(a) | set(b))
    ca, cb = Counter(a), Counter(b)
    p = chi2_contingency(np.array([[ca[k] for k in keys], [cb[k] for k in keys]])).pvalue
    assert p > 1e-4, f"{what}: p = {p:.2g}; peer {sorted(ca.items())[:12]}, reid {sorted(cb.items())[:12]}"


def test_every_autoaugment_op_gives_fastreids_pixels(monkeypatch):
    """Each operation of the policy at its magnitude, both directions and both filters, on a person image."""
    aa = peers.fastreid().autoaugment
    names = {"Posterize": "PosterizeOriginal"}  # the "original" policy's posterize (4 .. 8 bits kept)
    image = IMAGES[3]
    checked = 0
    for name, level in sorted({(n, m) for sub in autoaugment.POLICY for n, _, m in sub}):
        peer_name = names.get(name, name)
        for negate in (False, True):
            monkeypatch.setattr(aa, "_randomly_negate", lambda v: -v if negate else v)
            args = aa.LEVEL_TO_ARG[peer_name](level, aa._HPARAMS_DEFAULT) if aa.LEVEL_TO_ARG[peer_name] else ()
            for resample in autoaugment.RESAMPLE:
                theirs = aa.NAME_TO_OP[peer_name](image, *args, fillcolor=aa._FILL, resample=resample)
                ours = autoaugment.OPERATIONS[name](image, float(level), negate, resample)
                assert np.array_equal(np.asarray(theirs), np.asarray(ours)), (name, level, negate, resample)
                checked += 1
    assert checked == 4 * len({(n, m) for sub in autoaugment.POLICY for n, _, m in sub})


def test_autoaugment_parameters_follow_fastreids_distribution(monkeypatch):
    """fast-reid's RandomApply([AutoAugment()]) run 3000 times with every operation spied on, against 3000 rows
    drawn by reid: how often it applies, which sub-policy, which operations, their direction and filter."""
    fr = peers.fastreid()
    aa, n, prob = fr.autoaugment, 3000, 0.5
    cfg = peers.fastreid_cfg(peers.SBS, **{"INPUT.AUTOAUG.PROB": prob})
    apply = fr.build_transforms(cfg, is_train=True).transforms[0]  # T.RandomApply([AutoAugment()], p)
    auto = apply.transforms[0]
    calls: List[tuple] = []
    resamples: List[int] = []
    choose = aa._interpolation  # the peer's draw of the filter, recorded
    monkeypatch.setattr(aa, "_interpolation", lambda kwargs: resamples.append(choose(kwargs)) or resamples[-1])

    class Spy:
        """Records the visit of one operation of the policy, and its call (with its arguments) when it applies."""

        def __init__(self, op, sub: int, slot: int) -> None:
            self.op, self.sub, self.slot, self.fn = op, sub, slot, op.aug_fn
            op.aug_fn = self.applied

        def applied(self, img, *args, **kwargs):
            calls.append((self.sub, self.slot, "applied", args))
            return self.fn(img, *args, **kwargs)

        def __call__(self, img):
            calls.append((self.sub, self.slot, "visited", ()))
            return self.op(img)

    auto.policy = [[Spy(op, s, i) for i, op in enumerate(sub)] for s, sub in enumerate(auto.policy)]
    tiny = Image.new("RGB", (4, 8), (90, 120, 150))
    theirs = []
    with peers.seeded(0):
        for _ in range(n):
            start = len(calls)
            apply(tiny)
            mine = calls[start:]
            visited = [c for c in mine if c[2] == "visited"]
            theirs.append((bool(visited), visited[0][0] if visited else -1,
                           tuple(any(c[1] == slot and c[2] == "applied" for c in mine) for slot in (0, 1)),
                           tuple(c[3][0] < 0 for c in mine if c[2] == "applied" and c[3] and
                                 autoaugment.POLICY[c[0]][c[1]][0] in ("Rotate", "ShearX"))))
    rows = autoaugment.draw(n, prob, torch.Generator().manual_seed(0)).tolist()
    ours = [(bool(r[0]), r[1] if r[0] else -1, (bool(r[2]), bool(r[5])),
             tuple(bool(r[3 + 3 * slot]) for slot in (0, 1) if r[2 + 3 * slot] and
                   autoaugment.POLICY[r[1]][slot][0] in ("Rotate", "ShearX"))) for r in rows]
    _same_rate([t[0] for t in theirs], [o[0] for o in ours], "applied")
    _same_distribution([t[1] for t in theirs if t[0]], [o[1] for o in ours if o[0]], "sub-policy")
    _same_distribution([(t[1], t[2]) for t in theirs if t[0]], [(o[1], o[2]) for o in ours if o[0]],
                       "operations applied per sub-policy")
    _same_rate([s for t in theirs for s in t[3]], [s for o in ours for s in o[3]], "negated rotations and shears")
    ours_bicubic = [r[4 + 3 * slot] for r in rows for slot in (0, 1)
                    if r[0] and r[2 + 3 * slot] and autoaugment.POLICY[r[1]][slot][0] in ("Rotate", "ShearX")]
    _same_rate([r == Image.BICUBIC for r in resamples], ours_bicubic, "bicubic filter")
    assert len(resamples) > 200



def _reid_augmented(cfg, images: Sequence[Image.Image], params) -> torch.Tensor:
    """reid's workers path on decoded images: AutoAugment, the resize, then flip, pad + crop, normalise, erase."""
    aug = TrainAugmentation.from_cfg(cfg)
    resize = build_resize(cfg, cfg.INPUT.SIZE_TRAIN)
    return Augmenter(aug).images([TF.pil_to_tensor(resize(aug.before_resize(im, params, i)))
                                  for i, im in enumerate(images)], params)


def test_the_training_pipelines_give_the_peers_pixels_for_the_same_parameters():
    """fast-reid's ops (its Resize, Pad, then the crop, flip, ToTensor and erase with the mean that its
    RandomCrop, RandomHorizontalFlip and RandomErasing apply) and torchreid's (Resize, flip, ToTensor, Normalize)
    on Market-1501-sized images, against reid's per-image path with the same drawn parameters; fast-reid crops
    before it flips, so its left offset is reid's 2 x padding - left for a flipped image."""
    fr = peers.fastreid()
    images = [im.resize((64, 128)) for im in IMAGES[:12]]
    peer_cfg = peers.fastreid_cfg(peers.BAGTRICKS, **{"INPUT.SIZE_TRAIN": [64, 32]})
    steps = {type(t).__name__: t for t in fr.build_transforms(peer_cfg, is_train=True).transforms}
    cfg = load_cfg("configs/Market1501/bagtricks_R50.yml", ["INPUT.SIZE_TRAIN", "[64, 32]"])
    aug = TrainAugmentation.from_cfg(cfg)
    params = aug.draw(len(images), torch.Generator().manual_seed(3))
    assert params.flip.any() and (params.erase[:, 2] > 0).any() and not params.flip.all()
    value = torch.tensor(peer_cfg.INPUT.REA.VALUE)[:, None, None]
    normalise = _fastreid_normalise(peer_cfg)
    theirs = []
    for i, im in enumerate(images):
        top, left = params.crop[i].tolist()
        padded = steps["Pad"](steps["Resize"](im))
        x = TF.crop(padded, top, 2 * cfg.INPUT.PADDING - left if params.flip[i] else left, 64, 32)
        x = steps["ToTensor"](TF.hflip(x) if params.flip[i] else x)
        t, l, h, w = params.erase[i].tolist()
        theirs.append(TF.erase(x, t, l, h, w, value) if h else x)
    theirs = normalise(torch.stack(theirs).to(DTYPE)).float()
    levels = ((theirs - _reid_augmented(cfg, images, params)).abs().max() * 0.229 * 255).item()  # in 0-255 levels
    assert levels < 1 / 255, levels  # the normalisations' float rounding only

    tr = peers.torchreid()
    transform, _ = peers.quiet(tr.build_transforms, 64, 32, transforms=peers.OSNET["transforms"])
    steps = {type(t).__name__: t for t in transform.transforms}
    cfg = load_cfg("configs/Market1501/osnet_x1_0.yml", ["INPUT.SIZE_TRAIN", "[64, 32]"])
    params = TrainAugmentation.from_cfg(cfg).draw(len(images), torch.Generator().manual_seed(4))
    theirs = torch.stack([steps["Normalize"](steps["ToTensor"](TF.hflip(steps["Resize"](im)) if f else
                                                               steps["Resize"](im)))
                          for im, f in zip(images, params.flip.tolist())])
    levels = ((theirs - _reid_augmented(cfg, images, params)).abs().max() * 0.229 * 255).item()
    assert levels < 1 / 255, levels


def _encoded(h: int, w: int) -> Image.Image:
    """An image whose pixels tell their own row and column (R = 10 + 7 row, G = 10 + 15 column)."""
    rows, cols = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([10 + 7 * rows, 10 + 15 * cols, np.full_like(rows, 200)], -1).astype(np.uint8))


def _read_back(x: torch.Tensor, h: int, w: int) -> Dict[str, np.ndarray]:
    """Flip, crop offsets and erased rectangle of augmented 0-255 images of :func:`_encoded` (pad 4)."""
    r, c = h // 2, w // 2 - 1
    row, col_a, col_b = (x[:, 0, r, c] - 10) / 7, (x[:, 1, r, c] - 10) / 15, (x[:, 1, r, c + 1] - 10) / 15
    flipped = col_b < col_a
    erased = (x[:, 2] != 200) & (x[:, 2] != 0)  # blue is 200 in the image, 0 in the padding
    return {"flip": flipped.float().numpy(), "top": (row - r).numpy(),
            "left": torch.where(flipped, w - 1 - col_a - c, col_a - c).numpy(),
            "erased": erased.any(2).any(1).float().numpy(), "area": erased.float().mean((1, 2)).numpy()}


def test_random_parameters_follow_the_fastreid_pipelines_distribution():
    """fast-reid's own training transform (pad 4, crop, flip, erasing with the mean) on an image that encodes its
    pixel positions, 2000 times, against reid's path: the flip rate, each crop offset's frequency, the erasing
    rate and erased area."""
    fr = peers.fastreid()
    h, w, n = 32, 16, 2000
    peer_cfg = peers.fastreid_cfg(peers.BAGTRICKS, **{"INPUT.SIZE_TRAIN": [h, w], "INPUT.PADDING.SIZE": 4})
    cfg = load_cfg("configs/Market1501/bagtricks_R50.yml", ["INPUT.SIZE_TRAIN", f"[{h}, {w}]", "INPUT.PADDING", "4"])
    image = _encoded(h, w)
    theirs = _read_back(peers.augmented(fr.build_transforms(peer_cfg, is_train=True), [image] * n, seed=5), h, w)
    params = TrainAugmentation.from_cfg(cfg).draw(n, torch.Generator().manual_seed(5))
    x = _reid_augmented(cfg, [image] * n, params)
    mean, std = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(1, 3, 1, 1), torch.tensor(cfg.INPUT.PIXEL_STD).view(1, 3, 1, 1)
    ours = _read_back(torch.round((x * std + mean) * 255 * 1e3) / 1e3, h, w)
    clean_t, clean_o = theirs["erased"] == 0, ours["erased"] == 0  # offsets are read where nothing was erased
    for key in ("flip", "top", "left"):
        _same_rate(theirs[key][clean_t], ours[key][clean_o], key)
    for key in ("top", "left"):
        _same_distribution(theirs[key][clean_t].round().tolist(), ours[key][clean_o].round().tolist(), key)
    for key in ("erased", "area"):
        _same_rate(theirs[key], ours[key], key)


# -- the sampler -----------------------------------------------------------------------------------------------------
def test_naive_identity_sampler_draws_fastreids_batches():
    """fast-reid's NaiveIdentitySampler and reid's, 6000 batches each, on identities of 1 to 13 images (K 4, P 2):
    every batch P distinct identities x K images; how often each identity and each of its images comes; how an
    identity with fewer than K images is filled (the multiplicities of its images); a 9-image identity's groups
    are distinct images (its ninth left over in a round)."""
    fr = peers.fastreid()
    sizes = [1, 2, 3, 4, 5, 7, 9, 13]
    pids = [pid for pid, size in enumerate(sizes) for _ in range(size)]
    p, k, n = 2, 4, 6000
    with peers.peer_imports():
        stream = iter(fr.NaiveIdentitySampler([(f"{i}.jpg", pid, 0) for i, pid in enumerate(pids)], p * k, k, seed=7))
        theirs = [[next(stream) for _ in range(p * k)] for _ in range(n)]
    sampler = RoundIdentitySampler(pids, p * k, k, seed=7)
    ours: List[List[int]] = []
    for epoch in range(n):
        sampler.set_epoch(epoch)
        order = list(sampler)
        ours += [order[i:i + p * k] for i in range(0, len(order), p * k)]
        if len(ours) >= n:
            break
    assert len(sampler) == len(pids) // (p * k) * p * k  # fast-reid's epoch: images // batch iterations

    def describe(batches):
        ids, images, fills, distinct = [], [], [], []
        for b in batches:
            groups = [b[i:i + k] for i in range(0, len(b), k)]
            assert all(len({pids[j] for j in g}) == 1 for g in groups) and len({pids[g[0]] for g in groups}) == p
            for g in groups:
                pid = pids[g[0]]
                ids.append(pid)
                images += g
                if sizes[pid] < k:
                    fills.append((pid, tuple(sorted(Counter(g).values()))))
                else:
                    distinct.append(len(set(g)) == k)
        return ids, images, fills, distinct

    (ti, tm, tf, td), (oi, om, of, od) = describe(theirs), describe(ours[:n])
    assert all(td) and all(od)
    _same_distribution(ti, oi, "identities")
    _same_distribution(tm, om, "images")
    _same_distribution(tf, of, "filling of identities with fewer than K images")
