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
