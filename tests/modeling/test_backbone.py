"""ResNet backbone: torchvision-compatible parameters, last stride, width/depth variants, ImageNet loading."""
import pytest
import torch
from torchvision.models import resnet50

from reid.config import load_cfg
from reid.modeling.backbones import build_backbone
from reid.utils.errors import CheckpointError, ConfigError


def test_resnet50_matches_torchvision_parameters_and_last_stride():
    ours = build_backbone(load_cfg(None, ["MODEL.BACKBONE.PRETRAIN", "False"]))
    ref = {k: v.shape for k, v in resnet50().state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref
    out = ours.eval()(torch.zeros(1, 3, 256, 128))
    assert out.shape == (1, 2048, 16, 8)  # last stride 1: 1/16 of the input


def test_tiny_variant_shapes():
    cfg = load_cfg(None, ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 1, 1]",
                          "MODEL.BACKBONE.WIDTH", "8", "MODEL.BACKBONE.LAST_STRIDE", "2"])
    net = build_backbone(cfg).eval()
    assert net.out_channels == 64
    assert net(torch.zeros(2, 3, 64, 32)).shape == (2, 64, 2, 1)


def test_imagenet_weights_from_local_file(tmp_path):
    ref = resnet50()
    torch.save(ref.state_dict(), tmp_path / "r50.pth")
    cfg = load_cfg(None, ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "r50.pth")])
    ours = build_backbone(cfg)
    assert torch.equal(ours.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)


def test_pretrain_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone(load_cfg(None, ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", "nope.pth"]))
    torch.save(resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match="WIDTH 64"):
        build_backbone(load_cfg(None, ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.WIDTH", "32",
                                       "MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "r50.pth")]))
    with pytest.raises(ConfigError, match="DEPTH"):
        build_backbone(load_cfg(None, ["MODEL.BACKBONE.DEPTH", "42"]))
