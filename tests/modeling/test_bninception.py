"""BN-Inception: the publisher's state dict (Cadene's pretrainedmodels, the file the metric learning papers load)
loads name for name, and the trunk computes what the peer's own definition computes on the same pixels."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from reid.config import load_cfg
from reid.modeling import build_backbone, build_model
from reid.modeling.backbones.bninception import CAFFE_MEAN_RGB, IMAGENET_URL, BNInception
from reid.modeling.losses import build_criterion
from reid.utils.errors import CheckpointError, ConfigError
from tests.support.peer_models import realistic_, require

pytestmark = pytest.mark.usefixtures("single_thread")
CAFFE_INPUT = ["INPUT.PIXEL_MEAN", str([c / 255 for c in CAFFE_MEAN_RGB]), "INPUT.PIXEL_STD", str([1 / 255] * 3)]
BACKBONE = ["MODEL.BACKBONE.NAME", "bninception"]


class _Trunk(torch.nn.Module):
    """The peer's feature extractor alone (its ImageNet head pools 7 x 7 maps only)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


@pytest.fixture(scope="module")
def peer_file(tmp_path_factory):
    """The peer's network with realistic weights (BN statistics measured on images) and its state dict saved as
    the publisher's file (``last_linear`` included)."""
    require("pretrainedmodels")
    peer = sys.modules["pretrainedmodels.models.bninception"].BNInception(num_classes=1000)
    torch.manual_seed(0)
    images = torch.rand(4, 3, 128, 128) * 255 - torch.tensor([104.0, 117.0, 128.0])[:, None, None]
    realistic_(_Trunk(peer), images)
    path = tmp_path_factory.mktemp("weights") / "bn_inception-52deb4733.pth"
    torch.save(peer.state_dict(), path)
    return peer.eval(), str(path)


def test_publisher_file_loads_and_forward_equals_the_peer(peer_file):
    peer, path = peer_file
    cfg = load_cfg(None, [*BACKBONE, "MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", path,
                          *CAFFE_INPUT])
    ours = build_backbone(cfg).eval()
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, peer.state_dict()[name]), name
    pixels = torch.randint(0, 256, (2, 3, 227, 227), generator=torch.Generator().manual_seed(1)).float()
    mean, std = torch.tensor(cfg.INPUT.PIXEL_MEAN)[:, None, None], torch.tensor(cfg.INPUT.PIXEL_STD)[:, None, None]
    with torch.no_grad():
        ref = peer.features(pixels.flip(1) - torch.tensor([104.0, 117.0, 128.0])[:, None, None])  # BGR, Caffe mean
        exact = ours(pixels - torch.tensor(CAFFE_MEAN_RGB)[:, None, None])  # the same numbers, in RGB order
        normalised = ours((pixels / 255 - mean) / std)  # through reid's normalisation: float32 rounding of the input
    assert exact.shape == (2, 1024, 7, 7)
    scale = ref.abs().max()
    diffs = [((out - ref).abs().max() / scale).item() for out in (exact, normalised)]
    print(f"\n[pretrainedmodels] BN-Inception trunk: max |diff| / max |ref| = {diffs[0]:.3g} (same input), "
          f"{diffs[1]:.3g} (reid's normalisation)")
    assert diffs[0] < 1e-6 and diffs[1] < 1e-4


def test_ms_loss_model_embeds_into_512_dims(peer_file):
    _, path = peer_file
    cfg = load_cfg(None, [*BACKBONE, "MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", path,
                          *CAFFE_INPUT, "MODEL.HEADS.POOL", "max", "MODEL.HEADS.REDUCTION", "linear",
                          "MODEL.HEADS.EMBEDDING_DIM", "512", "MODEL.HEADS.NECK", "none",
                          "MODEL.LOSSES.NAME", "['MultiSimilarityLoss']", "MODEL.HEADS.NUM_CLASSES", "10"])
    model = build_model(cfg).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 227, 227)).shape == (2, 512)


def test_missing_file_names_the_publisher_url_and_caffe_input_is_required(tmp_path):
    with pytest.raises(CheckpointError, match=IMAGENET_URL.replace(".", r"\.")):
        build_backbone(load_cfg(None, [*BACKBONE, "MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH",
                                       str(tmp_path / "missing.pth"), *CAFFE_INPUT]))
    with pytest.raises(ConfigError, match="INPUT.PIXEL_STD"):
        build_backbone(load_cfg(None, [*BACKBONE, "MODEL.BACKBONE.PRETRAIN", "True"]))
    bad = {k: v for k, v in BNInception().state_dict().items() if "5b" not in k}
    torch.save(bad, tmp_path / "truncated.pth")
    with pytest.raises(CheckpointError, match="missing"):
        build_backbone(load_cfg(None, [*BACKBONE, "MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH",
                                       str(tmp_path / "truncated.pth"), *CAFFE_INPUT]))


def test_trunk_without_weights_has_the_published_size():
    net = build_backbone(load_cfg(None, [*BACKBONE, "MODEL.BACKBONE.PRETRAIN", "False"]))
    assert net.out_channels == 1024
    assert sum(p.numel() for p in net.parameters()) == 11_295_240 - 1025 * 1000  # the peer's, less last_linear


DML_CONFIGS = sorted(str(p) for name in ("CUB200", "Cars196", "SOP", "InShop")
                     for p in (Path(__file__).resolve().parents[2] / "configs" / name).glob("*.yml"))


def test_every_metric_learning_config_trains_a_step():
    """Each of the 12 recipes builds (without ImageNet weights) and its pair loss gives gradients to every
    parameter on a P x K batch; the test embedding is 512-d."""
    assert len(DML_CONFIGS) == 12
    pids = torch.arange(3).repeat_interleave(2)
    for file in DML_CONFIGS:
        cfg = load_cfg(file, ["MODEL.BACKBONE.PRETRAIN", "False"])
        model = build_model(cfg, num_classes=3).train()
        terms = build_criterion(cfg)(model(torch.randn(6, 3, 64, 64), pids), pids)
        sum(terms.values()).backward()
        assert all(torch.isfinite(v) for v in terms.values()), file
        assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None], file
        with torch.no_grad():
            assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 512), file
