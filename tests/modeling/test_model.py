"""Baseline meta-architecture: eval embeddings, train outputs, BNNeck, pooling and reduction options."""
import pytest
import torch

from reid.config import load_cfg
from reid.modeling import build_model
from reid.utils.errors import ConfigError

TINY = ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 1, 1]", "MODEL.BACKBONE.WIDTH", "8"]


def test_eval_mode_returns_embeddings_and_train_mode_returns_heads():
    model = build_model(load_cfg(None, TINY), num_classes=7)
    assert not model.training
    x = torch.randn(4, 3, 64, 32)
    assert model(x).shape == (4, 64)
    model.train()
    out = model(x, torch.tensor([0, 0, 1, 1]))
    assert [t.shape for t in out["logits"]] == [(4, 7)]
    assert [t.shape for t in out["features"]] == [(4, 64)]
    assert model.num_classes == 7


def test_bnneck_embedding_is_bn_of_pooled_feature():
    model = build_model(load_cfg(None, TINY), num_classes=3)
    x = torch.randn(2, 3, 64, 32)
    pooled = model.head.pool(model.backbone(x)).flatten(1)
    assert torch.allclose(model(x), model.head.neck(pooled))
    assert not model.head.neck.bias.requires_grad  # BNNeck has no learnable shift


@pytest.mark.parametrize("opts, dim", [(["MODEL.HEADS.POOL", "gem"], 64),
                                       (["MODEL.HEADS.EMBEDDING_DIM", "16"], 16),
                                       (["MODEL.HEADS.NECK", "none", "MODEL.HEADS.CLS_LAYER", "linear"], 64)])
def test_head_options(opts, dim):
    model = build_model(load_cfg(None, TINY + opts), num_classes=3)
    assert model(torch.randn(2, 3, 64, 32)).shape == (2, dim)


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="Baseline"):
        build_model(load_cfg(None, TINY + ["MODEL.META_ARCHITECTURE", "Basline"]))
    with pytest.raises(ConfigError, match="POOL"):
        build_model(load_cfg(None, TINY + ["MODEL.HEADS.POOL", "median"]))


def test_loading_trained_weights_needs_no_imagenet_file(tmp_path):
    """Evaluating a checkpoint must not fetch ImageNet weights that the checkpoint overwrites anyway."""
    from reid.utils.errors import CheckpointError

    cfg = load_cfg(None, TINY + ["MODEL.BACKBONE.PRETRAIN", "True",
                                 "MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "missing.pth")])
    with pytest.raises(CheckpointError, match="missing.pth"):
        build_model(cfg)
    assert build_model(cfg, pretrained=False)(torch.randn(1, 3, 64, 32)).shape == (1, 64)
    assert cfg.MODEL.BACKBONE.PRETRAIN  # the caller's config is left alone


MGN_TINY = ["MODEL.META_ARCHITECTURE", "MGN", "MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 2, 1]",
            "MODEL.BACKBONE.WIDTH", "8", "MODEL.HEADS.EMBEDDING_DIM", "16"]


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("arch", [TINY, MGN_TINY, MGN_TINY + ["MODEL.MGN.CLASSIFIER", "concat"]],
                         ids=["baseline", "mgn", "mgn-concat"])
@pytest.mark.parametrize("losses, neck_feat", [
    ("['CrossEntropyLoss', 'PairwiseCircleLoss']", "before"),
    ("['CrossEntropyLoss']", "before"),
    ("['TripletLoss']", "before"),
    ("['PairwiseCircleLoss', 'TripletLoss']", "after"),
], ids=["class+pair", "class-only", "pair-only", "pair-only-after-neck"])
def test_every_trainable_parameter_gets_a_gradient(arch, losses, neck_feat):
    """DistributedDataParallel fails on a parameter that gets no gradient ("Expected to have finished reduction in
    the prior iteration"); single-process training would leave it as initialised. So a model has no classifier
    without a classification loss, and parameters no configured loss reaches are frozen."""
    from reid.modeling.losses import build_criterion, trains_classifier

    cfg = load_cfg(None, [*arch, "MODEL.LOSSES.NAME", losses, "MODEL.HEADS.NECK_FEAT", neck_feat])
    model = build_model(cfg, num_classes=5).train()
    criterion = build_criterion(cfg)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = model(torch.randn(8, 3, 96, 32), pids)
    sum(criterion(out, pids).values()).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert [n for n, p in trainable.items() if p.grad is None] == []
    has_classifier = any("classifier" in n for n, _ in model.named_parameters())
    assert has_classifier == trains_classifier(cfg) == bool(out["logits"])
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad and not n.endswith("neck.bias"))
    if trains_classifier(cfg):
        assert frozen == []
    elif arch is TINY:
        assert frozen == ([] if neck_feat == "after" else ["head.neck.weight"])
    else:  # MGN: the five stripe heads (and the global heads' necks when the pair losses see the pre-neck feature)
        stripe_heads = {2, 3, 5, 6, 7}  # heads in branch order: global; part2: global, 2 stripes; part3: global, 3
        head = lambda name: int(name.split(".")[1])  # noqa: E731
        assert {head(n) for n in frozen if not n.endswith("neck.weight")} == stripe_heads
        assert {head(n) for n in frozen if n.endswith("neck.weight")} == \
            (set(range(8)) if neck_feat == "before" else stripe_heads)
