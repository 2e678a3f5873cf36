"""The pieces the published recipes needed (issue 23), each on its own: AGW's weighted-regularisation triplet and
fast-reid's label smoothing against plain-loop float64 formulas and finite differences, the layer freeze, fast-reid's
P x K sampler under DDP and resume, AutoAugment's draws, MGN's stripe pair features, the MSMT17 training lists, the
new keys' validation, and exact resume of a run that uses them all. tests/engine/test_recipe_parity.py holds them
against the peers' own code."""
from __future__ import annotations

import math
from typing import List, Sequence

import pytest
import torch
from torch import nn

from reid.checkpoint import load_checkpoint
from reid.config import load_cfg
from reid.data import autoaugment
from reid.data.samplers import RoundIdentitySampler
from reid.modeling import build_model
from reid.modeling.losses import CrossEntropyLoss, TripletLoss, build_classifier
from reid.utils.errors import ConfigError

from tests.data.test_data_datasets import cfg_for, make_msmt

LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def _distances(x: List[List[float]]) -> List[List[float]]:
    """Euclidean distances floored at 1e-6 (fast-reid's and reid's clamp of the squared distance at 1e-12)."""
    return [[math.sqrt(max(sum((a - b) ** 2 for a, b in zip(r, c)), 1e-12)) for c in x] for r in x]


def _weighted(values: Sequence[float], logits: Sequence[float], shift: float) -> float:
    """sum v exp(l - shift) / (sum exp(l - shift) + 1e-6): fast-reid's softmax weights with its shift and 1e-6."""
    e = [math.exp(v - shift) for v in logits]
    return sum(v * w for v, w in zip(values, e)) / (sum(e) + 1e-6)


def ref_weighted_triplet(x: List[List[float]], labels: Sequence[int]) -> float:
    """AGW's weighted regularisation triplet (Ye et al. 2021) as fast-reid computes it, one anchor at a time: the
    anchor among its positives, the softmax shifted by the largest positive distance (for the negatives by 0, the
    row maximum of fast-reid's masked matrix), soft margin, mean over the anchors."""
    d = _distances(x)
    total = 0.0
    for i, row in enumerate(d):
        pos = [row[j] for j in range(len(row)) if labels[j] == labels[i]]
        neg = [row[k] for k in range(len(row)) if labels[k] != labels[i]]
        d_ap = _weighted(pos, pos, max(pos))
        d_an = _weighted(neg, [-v for v in neg], 0.0)
        total += math.log1p(math.exp(d_ap - d_an))
    return total / len(d)


@pytest.mark.parametrize("scale", [0.3, 3.0])  # close features, and features far apart (the 1e-6 matters)
def test_weighted_regularisation_triplet_is_fastreids_formula(scale):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(12, 5, generator=g, dtype=torch.float64) * scale).requires_grad_(True)
    labels = torch.tensor(LABELS)
    loss = TripletLoss(margin=0.0, soft_margin=True, weighting="softmax")
    assert loss(x, labels).item() == pytest.approx(ref_weighted_triplet(x.tolist(), LABELS), rel=1e-12)
    assert torch.autograd.gradcheck(lambda t: loss(t, labels), (x,), eps=1e-6, atol=1e-8)


def test_fastreid_label_smoothing_spreads_epsilon_over_the_other_classes():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    eps, c = 0.1, 5

    def reference(z: List[List[float]]) -> float:
        total = 0.0
        for row, y in zip(z, labels.tolist()):
            log_p = [v - math.log(sum(math.exp(u) for u in row)) for v in row]
            total -= (1 - eps) * log_p[y] + sum(eps / (c - 1) * log_p[j] for j in range(c) if j != y)
        return total / len(z)

    loss = CrossEntropyLoss(eps, "others")
    assert loss(logits, labels).item() == pytest.approx(reference(logits.tolist()), rel=1e-12)
    assert torch.autograd.gradcheck(lambda t: loss(t, labels), (logits,), eps=1e-6, atol=1e-8)
    assert CrossEntropyLoss(eps, "uniform")(logits, labels).item() != pytest.approx(loss(logits, labels).item())


def test_biased_classifier_and_classifier_init_std():
    cfg = load_cfg(None, ["MODEL.HEADS.CLS_LAYER", "linear_bias", "MODEL.HEADS.CLS_INIT_STD", "0.01"])
    torch.manual_seed(0)
    clf = build_classifier(cfg, 2048, 751)
    assert clf.bias.shape == (751,) and torch.all(clf.bias == 0)
    assert clf.weight.std().item() == pytest.approx(0.01, rel=0.02)
    x = torch.randn(3, 2048)
    torch.testing.assert_close(clf(x), x @ clf.weight.t() + clf.bias)
    cfg = load_cfg(None, ["MODEL.HEADS.CLS_LAYER", "circle", "MODEL.HEADS.CLS_INIT_STD", "0.01"])
    assert build_classifier(cfg, 512, 10).weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_mgn_stripe_pair_features_are_fastreids_five():
    cfg = load_cfg("configs/Market1501/mgn_R50-ibn.yml", ["MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.LAYERS",
                                                          "[1, 2, 2, 1]", "MODEL.BACKBONE.WIDTH", "8"])
    model = build_model(cfg, 3).train()
    out = model(torch.randn(4, 3, 96, 32), torch.tensor([0, 0, 1, 1]))
    dims = [f.shape[1] for f in out["features"]]
    assert dims == [256, 256, 256, 512, 768] and len(out["logits"]) == 8
    model.eval()
    stripes = model(torch.randn(2, 3, 96, 32))  # eval: the 8 features, the stripes after the 3 global ones
    assert stripes.shape == (2, 8 * 256)


def test_naive_identity_sampler_ranks_and_resume():
    """Ranks get disjoint batches of one stream; an epoch's batches depend on (seed, epoch) alone."""
    pids = [pid for pid, size in enumerate([3, 5, 8, 2, 9, 4, 6, 7]) for _ in range(size)]
    straight = RoundIdentitySampler(pids, 8, 4, seed=3)
    epochs = []
    for e in range(5):
        straight.set_epoch(e)
        epochs.append(list(straight))
    fresh = RoundIdentitySampler(pids, 8, 4, seed=3)
    fresh.set_epoch(4)
    assert list(fresh) == epochs[4] and epochs[3] != epochs[4]
    fresh.set_epoch(1)  # back to an earlier epoch: the stream is drawn again
    assert list(fresh) == epochs[1]
    # Two ranks of 4 images each take alternate batches of the one-process stream of 4-image batches.
    one = RoundIdentitySampler(pids, 4, 4, seed=3)
    stream = list(one)
    batches = [stream[i:i + 4] for i in range(0, len(stream), 4)]
    for r in range(2):
        rank = RoundIdentitySampler(pids, 4, 4, seed=3, rank=r, world_size=2)
        mine = list(rank)
        assert len(mine) == len(pids) // 8 * 4
        assert mine == [i for b in batches[r::2][:len(mine) // 4] for i in b]
    with pytest.raises(ConfigError, match="fewer than one batch"):
        RoundIdentitySampler([0, 0, 1, 1, 2, 3, 4], 8, 2)  # P = 4 identities, but 7 images


def test_autoaugment_draws_depend_on_the_generator_and_do_nothing_unapplied():
    a = autoaugment.draw(50, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, autoaugment.draw(50, 0.3, torch.Generator().manual_seed(1)))
    assert a.shape == (50, autoaugment.COLUMNS) and 0 < a[:, 0].sum() < 50
    from PIL import Image

    image = Image.new("RGB", (16, 32), (10, 200, 90))
    assert autoaugment.apply(image, [0] + a[0, 1:].tolist()) is image


def test_msmt17_trains_on_list_train_alone_as_the_peers_do(tmp_path):
    make_msmt(tmp_path)
    from reid.data import build_dataset

    with_val = build_dataset(cfg_for(tmp_path), "MSMT17")
    cfg = cfg_for(tmp_path)
    cfg.DATASETS.MSMT17.WITH_VAL = False
    alone = build_dataset(cfg, "MSMT17")
    assert (len(with_val.train), len(alone.train)) == (3, 2)
    assert load_cfg("configs/MSMT17/sbs_R50.yml").DATASETS.MSMT17.WITH_VAL is False


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.WARMUP_ITERS", "100"], "not both"),
    (["SOLVER.DELAY_EPOCHS", "3"], "needs SOLVER.SCHED_STEP epoch"),
    (["SOLVER.FREEZE_ITERS", "10"], "need the modules to freeze"),
    (["SOLVER.FREEZE_ITERS", "10", "SOLVER.FREEZE_EPOCHS", "1", "MODEL.FREEZE_LAYERS", "['backbone']"], "not both"),
    (["INPUT.AUTOAUG.ENABLED", "True", "DATALOADER.PIPELINE", "gpu"], "only DATALOADER.PIPELINE workers"),
    (["INPUT.AUTOAUG.PROB", "1.5"], "INPUT.AUTOAUG.PROB"),
    (["MODEL.HEADS.CLS_INIT_STD", "-1.0"], "CLS_INIT_STD"),
    (["SOLVER.HEADS_LR_FACTOR", "-1.0"], "HEADS_LR_FACTOR"),
])
def test_recipe_keys_are_validated(opts, message):
    with pytest.raises(ConfigError, match=message):
        load_cfg(None, opts)


def test_cosine_with_no_epoch_left_after_warm_up_and_delay_is_an_error():
    from reid.solver import build_lr_scheduler, build_optimizer

    cfg = load_cfg("configs/Market1501/sbs_R50.yml", ["MODEL.BACKBONE.PRETRAIN", "False", "SOLVER.MAX_EPOCHS", "30"])
    opt = build_optimizer(cfg, nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="leaves no epoch for the cosine"):
        build_lr_scheduler(cfg, opt, 100)


# -- the freeze and exact resume, in tiny training runs ---------------------------------------------------------------
RECIPE_KEYS = ["SOLVER.SCHED", "cosine", "SOLVER.SCHED_STEP", "epoch", "SOLVER.WARMUP_EPOCHS", "0",
               "SOLVER.WARMUP_ITERS", "3", "SOLVER.DELAY_EPOCHS", "1", "SOLVER.OPTIMIZER", "AMSGrad",
               "SOLVER.HEADS_LR_FACTOR", "2.0", "DATALOADER.SAMPLER", "naive_identity", "INPUT.AUTOAUG.ENABLED", "True",
               "INPUT.AUTOAUG.PROB", "0.5", "INPUT.REA.FILL", "mean", "MODEL.LOSSES.NAME",
               "['CrossEntropyLoss', 'TripletLoss']", "MODEL.LOSSES.CE.SMOOTHING", "others",
               "MODEL.LOSSES.TRIPLET.WEIGHTING", "softmax", "MODEL.LOSSES.TRIPLET.SOFT_MARGIN", "True",
               "MODEL.HEADS.CLS_LAYER", "linear_bias", "MODEL.FREEZE_LAYERS", "['backbone']"]


@pytest.mark.usefixtures("single_thread")
def test_frozen_layers_get_no_update_and_keep_their_statistics(tiny_train_cfg):
    from reid.engine.trainer import Trainer

    trainer = Trainer(tiny_train_cfg(*RECIPE_KEYS, "SOLVER.FREEZE_ITERS", "1000", "TEST.EVAL_PERIOD", "5",
                                     "SOLVER.MAX_EPOCHS", "1", "SOLVER.SCHED", "multistep", "SOLVER.DELAY_EPOCHS", "0"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    backbone = [k for k in before if k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)  # weights and BN statistics
    assert not torch.equal(before["head.classifier.weight"], after["head.classifier.weight"])
    with pytest.raises(ConfigError, match="modules this model lacks: \\['trunk'\\]"):
        Trainer(tiny_train_cfg(*RECIPE_KEYS, "SOLVER.FREEZE_ITERS", "3", "MODEL.FREEZE_LAYERS", "['trunk']",
                               "OUTPUT_DIR", str(trainer.output_dir) + "-bad", "SOLVER.MAX_EPOCHS", "3")).train()


class _Crash(Exception):
    pass


@pytest.mark.usefixtures("single_thread")
def test_a_recipe_run_resumed_mid_freeze_and_warm_up_ends_as_an_uninterrupted_one(tiny_train_cfg, tmp_path):
    """Warm-up in iterations, the freeze released inside epoch 2, the delayed epoch-stepped cosine, AMSGrad,
    fast-reid's sampler, AutoAugment and mean-filled erasing: killed in epoch 2, resumed from model_last.pt."""
    from reid.engine.trainer import Trainer

    def cfg(out):
        return tiny_train_cfg(*RECIPE_KEYS, "SOLVER.FREEZE_ITERS", "5", "SOLVER.MAX_EPOCHS", "3", "TEST.EVAL_PERIOD",
                              "3", "SEED", "4", "OUTPUT_DIR", str(tmp_path / out))

    Trainer(cfg("straight")).train()
    crashing = Trainer(cfg("crashed"))
    assert crashing.iters_per_epoch >= 3  # the freeze (5 iterations) ends inside the second epoch
    original, calls = crashing.train_step, []

    def train_step(batch):
        calls.append(1)
        if len(calls) == crashing.iters_per_epoch + 2:
            raise _Crash
        return original(batch)

    crashing.train_step = train_step
    with pytest.raises(_Crash):
        crashing.train()
    Trainer(cfg("crashed"), resume=True).train()
    a, b = (load_checkpoint(tmp_path / d / "model_final.pt")["model"] for d in ("straight", "crashed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mean_filled_erasing_is_the_same_pixel_for_pixel_in_both_appliers():
    from reid.data.augment import Augmenter, TrainAugmentation

    cfg = load_cfg(None, ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.REA.FILL", "mean", "INPUT.REA.PROB", "1.0"])
    aug = TrainAugmentation.from_cfg(cfg)
    params = aug.draw(6, torch.Generator().manual_seed(2))
    x = torch.randint(0, 256, (6, 3, 32, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    per_image, batched = Augmenter(aug).images(list(x), params), Augmenter(aug).batch(x, params)
    torch.testing.assert_close(per_image, batched)
    top, left, h, w = params.erase[0].tolist()
    assert h and torch.all(per_image[0, :, top:top + h, left:left + w] == 0)  # the mean pixel, normalised
