"""Registries, build_criterion / build_classifier from the config, and their error messages."""
from __future__ import annotations

import pytest
import torch

from reid.config import get_cfg
from reid.modeling.losses import (CLASSIFIER_REGISTRY, LOSS_REGISTRY, BinomialDevianceLoss, CircleClassifier,
                                  ContrastiveLoss, CrossEntropyLoss, LinearClassifier, MultiSimilarityLoss,
                                  MultiSimilarityMiner, PairwiseCircleLoss, TripletLoss, build_classifier,
                                  build_criterion)
from reid.utils.errors import ConfigError, ReIDError

NAMES = ["CrossEntropyLoss", "PairwiseCircleLoss", "MultiSimilarityLoss", "TripletLoss", "ContrastiveLoss",
         "LiftedStructureLoss", "BinomialDevianceLoss"]


def test_registry_holds_every_loss_with_kind_and_from_config():
    assert sorted(LOSS_REGISTRY) == sorted(NAMES)
    cfg = get_cfg()
    for name in NAMES:
        cls = LOSS_REGISTRY.get(name)
        assert cls.kind in ("class", "pair")
        assert isinstance(cls.from_config(cfg), cls)
        assert cfg.MODEL.LOSSES[cls.cfg_key].WEIGHT >= 0  # every loss has its config section and weight
    assert sorted(CLASSIFIER_REGISTRY) == ["circle", "cosface", "linear", "linear_bias"]


def test_config_defaults_reach_the_modules():
    cfg = get_cfg()
    circle = PairwiseCircleLoss.from_config(cfg)
    assert (circle.m, circle.gamma, circle.miner) == (0.25, 128.0, None)
    ms = MultiSimilarityLoss.from_config(cfg)
    assert (ms.alpha, ms.beta, ms.base, ms.miner.epsilon) == (2.0, 50.0, 0.5, 0.1)
    trip = TripletLoss.from_config(cfg)
    assert (trip.margin, trip.soft_margin, trip.normalize) == (0.3, False, False)
    assert CrossEntropyLoss.from_config(cfg).epsilon == 0.1
    cfg.MODEL.LOSSES.MS.MINE = False
    assert MultiSimilarityLoss.from_config(cfg).miner is None


def _outputs(seed=0, heads=2, n=16, dim=8, classes=4):
    g = torch.Generator().manual_seed(seed)
    return {"logits": [torch.randn(n, classes, generator=g, requires_grad=True) for _ in range(heads)],
            "features": [torch.randn(n, dim, generator=g, requires_grad=True) for _ in range(heads)]}


def test_criterion_averages_weighted_terms_over_heads():
    """Each term is weight x the MEAN over heads (it used to be the sum): MGN's eight classification terms and
    three pair terms then weigh like the one term of a Baseline, as fast-reid's MGN (1/8, 1/5) and MGN
    re-implementations normalise them. Three logits heads and two feature heads make mean != sum / 2."""
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ["CrossEntropyLoss", "PairwiseCircleLoss", "TripletLoss"]
    cfg.MODEL.LOSSES.CE.WEIGHT = 0.5
    cfg.MODEL.LOSSES.TRIPLET.WEIGHT = 2.0
    criterion = build_criterion(cfg)
    out, pids = _outputs(heads=3), torch.arange(4).repeat_interleave(4)
    out["features"] = out["features"][:2]
    terms = criterion(out, pids)
    assert list(terms) == ["loss_ce", "loss_circle", "loss_triplet"]
    ce, circle, trip = CrossEntropyLoss(0.1), PairwiseCircleLoss(0.25, 128.0), TripletLoss(0.3)
    torch.testing.assert_close(terms["loss_ce"], 0.5 * sum(ce(t, pids) for t in out["logits"]) / 3)
    torch.testing.assert_close(terms["loss_circle"], sum(circle(t, pids) for t in out["features"]) / 2)
    torch.testing.assert_close(terms["loss_triplet"], 2.0 * sum(trip(t, pids) for t in out["features"]) / 2)
    sum(terms.values()).backward()
    assert all(t.grad is not None for t in out["logits"] + out["features"])


def test_miner_from_config_combines_ms_mining_with_other_weightings():
    cfg = get_cfg()
    cfg.MODEL.LOSSES.BINOMIAL.MINER = "MultiSimilarityMiner"  # the GPW paper's "Binomial + VTHM"
    cfg.MODEL.LOSSES.MS.EPSILON = 0.05
    built = BinomialDevianceLoss.from_config(cfg)
    assert isinstance(built.miner, MultiSimilarityMiner) and built.miner.epsilon == 0.05
    x, labels = torch.randn(16, 8), torch.arange(4).repeat_interleave(4)
    manual = BinomialDevianceLoss(miner=MultiSimilarityMiner(0.05))
    assert built(x, labels).item() == pytest.approx(manual(x, labels).item())
    assert built(x, labels).item() != pytest.approx(BinomialDevianceLoss()(x, labels).item())
    cfg.MODEL.LOSSES.CONTRASTIVE.MINER = "BatchHardMiner"
    assert ContrastiveLoss.from_config(cfg)(x, labels).item() > 0


@pytest.mark.parametrize("key,value,match", [
    ("MODEL.LOSSES.NAME", ["CrossEntropyLos"], "Did you mean 'CrossEntropyLoss'"),
    ("MODEL.LOSSES.NAME", [], "non-empty"),
    ("MODEL.LOSSES.NAME", ["TripletLoss", "TripletLoss"], "twice"),
    ("MODEL.LOSSES.CE.WEIGHT", -1.0, "MODEL.LOSSES.CE.WEIGHT"),
    ("MODEL.LOSSES.CIRCLE.GAMMA", 0.0, "MODEL.LOSSES.CIRCLE.GAMMA"),
    ("MODEL.LOSSES.CIRCLE.MARGIN", 1.5, "MODEL.LOSSES.CIRCLE.MARGIN"),
    ("MODEL.LOSSES.CIRCLE.MINER", "MSMiner", "MODEL.LOSSES.CIRCLE.MINER"),
    ("MODEL.LOSSES.CE.EPSILON", 1.0, "MODEL.LOSSES.CE.EPSILON"),
    ("MODEL.LOSSES.MS.EPSILON", -0.1, "MODEL.LOSSES.MS.EPSILON"),
    ("MODEL.LOSSES.TRIPLET.MARGIN", float("nan"), "MODEL.LOSSES.TRIPLET.MARGIN"),
])
def test_criterion_config_errors_name_the_key(key, value, match):
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = list(NAMES)
    node, leaf = cfg, key.split(".")
    for part in leaf[:-1]:
        node = node[part]
    node[leaf[-1]] = value
    with pytest.raises(ConfigError, match=match):
        build_criterion(cfg)


def test_missing_model_output_is_a_clear_error():
    cfg = get_cfg()
    with pytest.raises(ReIDError, match="no 'logits'"):
        build_criterion(cfg)({"features": [torch.randn(4, 3)]}, torch.tensor([0, 0, 1, 1]))


@pytest.mark.parametrize("name", ["linear", "circle", "cosface"])
def test_build_classifier(name):
    cfg = get_cfg()
    cfg.MODEL.HEADS.CLS_LAYER = name
    cls = build_classifier(cfg, 32, 10)
    feats, labels = torch.randn(6, 32), torch.arange(6)
    plain, margin = cls(feats), cls(feats, labels)
    assert plain.shape == margin.shape == (6, 10)
    if name == "linear":
        assert isinstance(cls, LinearClassifier) and 0.0005 < cls.weight.std().item() < 0.002
        torch.testing.assert_close(plain, margin)
    else:
        cosine = torch.nn.functional.normalize(feats) @ torch.nn.functional.normalize(cls.weight).t()
        torch.testing.assert_close(plain, cfg.MODEL.HEADS.SCALE * cosine)  # no labels: scaled cosine
        assert not torch.allclose(plain, margin)
        other = torch.ones_like(margin, dtype=torch.bool)
        other[torch.arange(6), labels] = False
        if name == "cosface":  # the margin touches only the target column
            torch.testing.assert_close(plain[other], margin[other])


def test_classifier_parameters_are_named_for_checkpoint_skipping():
    assert [n for n, _ in CircleClassifier(8, 3).named_parameters()] == ["weight"]


@pytest.mark.parametrize("key,value,match", [
    ("CLS_LAYER", "arcface", "MODEL.HEADS.CLS_LAYER"),
    ("SCALE", -1.0, "MODEL.HEADS.SCALE"),
    ("MARGIN", 1.0, "MODEL.HEADS.MARGIN"),
])
def test_classifier_config_errors(key, value, match):
    cfg = get_cfg()
    cfg.MODEL.HEADS[key] = value
    with pytest.raises(ConfigError, match=match):
        build_classifier(cfg, 8, 3)
