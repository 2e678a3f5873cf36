"""The published backbones without their peers: IBN-a / IBN-b layouts, non-local placement, fast-reid's stem,
OSNet shapes and parameter counts, ImageNet files in the publishers' formats, and training under Baseline.
(Equality with fast-reid's and torchreid's own models is in test_convert_fastreid.py / test_convert_torchreid.py.)"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reid.config import load_cfg
from reid.modeling import build_backbone, build_model
from reid.modeling.backbones.layers import IBN, NonLocal
from reid.modeling.backbones.osnet import SPECS
from reid.modeling.losses import build_criterion
from reid.utils.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")
R50 = ["MODEL.BACKBONE.PRETRAIN", "False"]


def _backbone(*opts):
    return build_backbone(load_cfg(None, [*R50, *opts])).eval()


def test_ibn_a_puts_instance_norm_in_half_of_bn1_of_layer1_to_3():
    net = _backbone("MODEL.BACKBONE.WITH_IBN", "True")
    for i, stage in enumerate((net.layer1, net.layer2, net.layer3, net.layer4)):
        assert all(isinstance(b.bn1, IBN) == (i < 3) for b in stage)
    assert net.layer2[0].bn1.IN.num_features == net.layer2[0].bn1.BN.num_features == 64
    x = torch.randn(2, 128, 4, 4)
    ibn = net.layer2[0].bn1
    expected = torch.cat([nn.functional.instance_norm(x[:, :64], weight=ibn.IN.weight, bias=ibn.IN.bias),
                          ibn.BN(x[:, 64:])], dim=1)
    assert torch.allclose(ibn(x), expected, atol=1e-6)


def test_ibn_b_puts_instance_norm_in_the_stem_and_after_layer1_and_layer2():
    net = _backbone("MODEL.BACKBONE.WITH_IBN", "True", "MODEL.BACKBONE.IBN_TYPE", "b")
    assert isinstance(net.bn1, nn.InstanceNorm2d)
    with_in = [f"layer{i}.{j}" for i in range(1, 5) for j, b in enumerate(getattr(net, f"layer{i}")) if b.IN]
    assert with_in == ["layer1.2", "layer2.3"]
    assert sum(p.numel() for p in net.parameters()) == 23_509_568  # torchreid's resnet50_ibn_b without fc


def test_non_local_blocks_sit_after_the_last_blocks_of_layer2_and_layer3_and_start_as_identity():
    torch.manual_seed(0)
    plain = _backbone("MODEL.BACKBONE.MAXPOOL_CEIL", "True")
    net = _backbone("MODEL.BACKBONE.WITH_NL", "True", "MODEL.BACKBONE.MAXPOOL_CEIL", "True")
    assert net.non_local == {2: {2: 0, 3: 1}, 3: {3: 0, 4: 1, 5: 2}}  # fast-reid's R50 placement
    assert [type(m).__name__ for m in net.NL_3] == ["NonLocal"] * 3 and net.NL_2[0].g.out_channels == 1
    net.load_state_dict({**net.state_dict(), **plain.state_dict()})
    x = torch.randn(2, 3, 64, 32)
    assert torch.equal(net(x), plain(x))  # W's BN starts at zero: ImageNet weights keep their meaning
    r101 = build_backbone(load_cfg(None, [*R50, "MODEL.BACKBONE.DEPTH", "101", "MODEL.BACKBONE.WITH_NL", "True"]))
    assert sorted(r101.non_local[3]) == list(range(14, 23))
    with pytest.raises(ConfigError, match="DEPTH 50 and 101"):
        _backbone("MODEL.BACKBONE.DEPTH", "34", "MODEL.BACKBONE.WITH_NL", "True")


def test_non_local_block_against_its_formula():
    torch.manual_seed(1)
    block = NonLocal(8, 4).eval()
    nn.init.normal_(block.W[1].weight)
    x = torch.randn(2, 8, 3, 5)
    theta, phi, g = (conv(x).flatten(2) for conv in (block.theta, block.phi, block.g))  # (B, 4, 15)
    y = torch.einsum("bcn,bcm,bdm->bdn", theta, phi, g) / 15  # sum_m <theta_n, phi_m> g_m / N
    assert torch.allclose(block(x), x + block.W(y.reshape(2, 4, 3, 5)), atol=1e-5)


def test_fastreid_stem_pools_without_padding_in_ceil_mode():
    x = torch.arange(2 * 3 * 32 * 16, dtype=torch.float).reshape(2, 3, 32, 16)
    ceil = _backbone("MODEL.BACKBONE.MAXPOOL_CEIL", "True").maxpool
    assert torch.equal(ceil(x), nn.functional.max_pool2d(x, 3, 2, 0, ceil_mode=True))
    assert ceil(x).shape == _backbone().maxpool(x).shape  # same size as torchvision's, windows shifted by one


@pytest.mark.parametrize("name, params, dim", [("osnet_x1_0", 2_169_508, 512), ("osnet_x0_25", 201_864, 512),
                                               ("osnet_ain_x1_0", 2_169_508, 512)])
def test_osnet_baseline_parameter_counts_and_output(name, params, dim):
    """Parameter counts (trunk + fc, no classifier) are those of torchreid's models (its model zoo page lists
    2.2 M for x1_0 and 0.2 M for x0_25)."""
    cfg = load_cfg(None, ["MODEL.BACKBONE.NAME", name, "MODEL.HEADS.EMBEDDING_DIM", "512", "MODEL.HEADS.NECK", "none",
                          "MODEL.HEADS.REDUCTION", "linear_bn_relu", "MODEL.HEADS.POOL", "avg"])
    model = build_model(cfg, num_classes=5)
    assert sum(p.numel() for n, p in model.named_parameters() if "classifier" not in n) == params
    fmap = model.backbone(torch.zeros(1, 3, 256, 128))
    assert fmap.shape == (1, SPECS[name].channels[3], 16, 8)
    assert model(torch.zeros(2, 3, 256, 128)).shape == (2, dim)


@pytest.mark.parametrize("opts", [["MODEL.BACKBONE.NAME", "osnet_ain_x0_25"],
                                  ["MODEL.BACKBONE.DEPTH", "50", "MODEL.BACKBONE.LAYERS", "[1, 1, 2, 1]",
                                   "MODEL.BACKBONE.WIDTH", "8", "MODEL.BACKBONE.WITH_IBN", "True",
                                   "MODEL.BACKBONE.IBN_TYPE", "b"],
                                  ["MODEL.BACKBONE.DEPTH", "50", "MODEL.BACKBONE.LAYERS", "[1, 2, 2, 1]",
                                   "MODEL.BACKBONE.WIDTH", "8", "MODEL.BACKBONE.WITH_IBN", "True",
                                   "MODEL.BACKBONE.WITH_NL", "True", "MODEL.HEADS.POOL", "gem",
                                   "MODEL.HEADS.NECK_FEAT", "after", "MODEL.HEADS.EMBEDDING_DIM", "32",
                                   "MODEL.HEADS.REDUCTION", "conv"]])
def test_published_backbones_train_under_baseline(opts):
    cfg = load_cfg(None, [*opts, "MODEL.LOSSES.NAME", "['CrossEntropyLoss', 'TripletLoss']"])
    model = build_model(cfg, num_classes=4).train()
    pids = torch.arange(4).repeat_interleave(2)
    terms = build_criterion(cfg)(model(torch.randn(8, 3, 64, 32), pids), pids)
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def test_imagenet_files_in_the_publishers_formats(tmp_path):
    """Pan et al.'s IBN-Net files and torchreid's OSNet ImageNet files: the same names plus an ImageNet classifier
    (fc / classifier), stored bare or under 'state_dict' with 'module.' prefixes."""
    torch.manual_seed(0)
    ibn = _backbone("MODEL.BACKBONE.WITH_IBN", "True")
    pan = {**{k: torch.randn_like(v) if v.is_floating_point() else v for k, v in ibn.state_dict().items()},
           "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    torch.save(pan, tmp_path / "resnet50_ibn_a-d9d0bb7b.pth")
    loaded = _backbone("MODEL.BACKBONE.WITH_IBN", "True", "MODEL.BACKBONE.WITH_NL", "True",
                       "MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH",
                       str(tmp_path / "resnet50_ibn_a-d9d0bb7b.pth"))
    assert torch.equal(loaded.layer1[0].bn1.IN.weight, pan["layer1.0.bn1.IN.weight"])  # non-local blocks stay new
    with pytest.raises(CheckpointError, match="IBN_TYPE of the file"):  # an IBN-a file for an IBN-b model
        _backbone("MODEL.BACKBONE.WITH_IBN", "True", "MODEL.BACKBONE.IBN_TYPE", "b", "MODEL.BACKBONE.PRETRAIN",
                  "True", "MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "resnet50_ibn_a-d9d0bb7b.pth"))
    osnet = build_backbone(load_cfg(None, ["MODEL.BACKBONE.NAME", "osnet_x0_25"]))
    state = {f"module.{k}": torch.randn_like(v) if v.is_floating_point() else v for k, v in osnet.state_dict().items()}
    state.update({"module.fc.0.weight": torch.zeros(512, 128), "module.classifier.weight": torch.zeros(1000, 512)})
    torch.save({"state_dict": state}, tmp_path / "osnet_x0_25_imagenet.pth")
    cfg = ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "osnet_x0_25_imagenet.pth")]
    loaded = build_backbone(load_cfg(None, ["MODEL.BACKBONE.NAME", "osnet_x0_25", *cfg]))
    assert torch.equal(loaded.conv5.conv.weight, state["module.conv5.conv.weight"])
    with pytest.raises(CheckpointError, match="osnet_x0_5"):
        build_backbone(load_cfg(None, ["MODEL.BACKBONE.NAME", "osnet_x0_5", *cfg]))


def test_offline_imagenet_download_names_the_url_and_the_key(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match=r"IBN-Net/releases/download/v1.0/resnet101_ibn_b-c55f6dba.pth.*"
                                              r"PRETRAIN_PATH"):
        _backbone("MODEL.BACKBONE.DEPTH", "101", "MODEL.BACKBONE.WITH_IBN", "True", "MODEL.BACKBONE.IBN_TYPE", "b",
                  "MODEL.BACKBONE.PRETRAIN", "True")
    with pytest.raises(CheckpointError, match=r"drive.google.com/uc\?export=download&id=1rb8UN5.*PRETRAIN_PATH"):
        build_backbone(load_cfg(None, ["MODEL.BACKBONE.NAME", "osnet_x0_25", "MODEL.BACKBONE.PRETRAIN", "True"]))
