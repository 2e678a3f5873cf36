"""BN-Inception (Ioffe & Szegedy 2015), the Caffe-converted network of the deep metric learning papers.

The MS-loss / GPW papers, the Circle loss paper's retrieval experiments and pytorch-metric-learning's benchmarks use
the ImageNet weights that Cadene's ``pretrainedmodels`` converted from Caffe. The parameters here keep that file's
names (``conv1_7x7_s2``, ``inception_3a_1x1_bn``, ...), so the file loads as published; its ImageNet classifier
(``last_linear``) is ignored. The trunk ends at ``inception_5b`` (1,024 channels, 7 x 7 at 227 x 227); global
pooling and the 512-d embedding layer are the head (``MODEL.HEADS.POOL max``, ``REDUCTION linear``,
``EMBEDDING_DIM 512``, as the MS-loss code does).

The Caffe weights expect BGR pixels in 0..255 minus the mean (104, 117, 128). reid feeds every backbone RGB
images normalised with ``INPUT.PIXEL_MEAN`` / ``PIXEL_STD``: with the mean (128, 117, 104) / 255 and the std
1 / 255 of the configs they are 0..255 minus the mean; the network reverses the channel order itself.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from ...utils.errors import ConfigError
from .pretrained import imagenet_state_dict, load_backbone_weights
from .registry import BACKBONE_REGISTRY

IMAGENET_URL = "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"  # Cadene's pretrainedmodels
CAFFE_MEAN_RGB = (128.0, 117.0, 104.0)  # the converted weights' BGR mean (104, 117, 128), in RGB order
PUBLISHER_HEAD = "last_linear."  # the ImageNet classifier of the published file


class Inception(NamedTuple):
    """One inception block's widths; ``None`` for ``one`` and ``proj``: a grid-reduction block (stride 2, max pool,
    no 1x1 branch, the pooled input passed through)."""

    name: str
    one: Optional[int]  # 1x1 branch
    reduce: int  # 1x1 before the 3x3 branch
    three: int
    double_reduce: int  # 1x1 before the two stacked 3x3
    double: int
    proj: Optional[int]  # 1x1 after the pooling branch
    max_pool: bool = False  # the pooling branch's kind (5b: max with stride 1, the others average)


BLOCKS = (  # (Ioffe & Szegedy 2015, Fig. 5, as converted)
    Inception("3a", 64, 64, 64, 64, 96, 32),
    Inception("3b", 64, 64, 96, 64, 96, 64),
    Inception("3c", None, 128, 160, 64, 96, None),
    Inception("4a", 224, 64, 96, 96, 128, 128),
    Inception("4b", 192, 96, 128, 96, 128, 128),
    Inception("4c", 160, 128, 160, 128, 160, 128),
    Inception("4d", 96, 128, 192, 160, 192, 128),
    Inception("4e", None, 128, 192, 192, 256, None),
    Inception("5a", 352, 192, 320, 160, 224, 128),
    Inception("5b", 352, 192, 320, 192, 224, 128, max_pool=True),
)


class BNInception(nn.Module):
    """The trunk: stem, then the ten inception blocks; ``out_channels`` = 1,024."""

    def __init__(self) -> None:
        super().__init__()
        self._unit("conv1_7x7_s2", 3, 64, 7, 2)
        self._unit("conv2_3x3_reduce", 64, 64, 1)
        self._unit("conv2_3x3", 64, 192, 3)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # after conv1 and conv2, and in 3c / 4e
        channels = 192
        for b in BLOCKS:
            p = f"inception_{b.name}_"
            stride = 2 if b.one is None else 1
            if b.one is not None:
                self._unit(p + "1x1", channels, b.one, 1)
            self._unit(p + "3x3_reduce", channels, b.reduce, 1)
            self._unit(p + "3x3", b.reduce, b.three, 3, stride)
            self._unit(p + "double_3x3_reduce", channels, b.double_reduce, 1)
            self._unit(p + "double_3x3_1", b.double_reduce, b.double, 3)
            self._unit(p + "double_3x3_2", b.double, b.double, 3, stride)
            if b.proj is not None:
                self._unit(p + "pool_proj", channels, b.proj, 1)
            channels = (b.one or 0) + b.three + b.double + (b.proj if b.proj is not None else channels)
        self.avg_pool = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        self.max_pool_same = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.out_channels = channels

    def _unit(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        """Conv ``name`` (with a bias, as Caffe's) and its BN ``name_bn``, flat attributes named as the publisher's."""
        setattr(self, name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2))
        setattr(self, name + "_bn", nn.BatchNorm2d(cout))

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Conv, BN, ReLU of the unit ``name``."""
        return torch.relu_(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def _block(self, b: Inception, x: torch.Tensor) -> torch.Tensor:
        p = f"inception_{b.name}_"
        three = self._run(p + "3x3", self._run(p + "3x3_reduce", x))
        double = self._run(p + "double_3x3_1", self._run(p + "double_3x3_reduce", x))
        double = self._run(p + "double_3x3_2", double)
        if b.one is None:
            return torch.cat([three, double, self.pool(x)], 1)
        pooled = (self.max_pool_same if b.max_pool else self.avg_pool)(x)
        return torch.cat([self._run(p + "1x1", x), three, double, self._run(p + "pool_proj", pooled)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB input normalised to 0..255 minus the mean (see the module); the weights were trained on BGR."""
        x = self.pool(self._run("conv1_7x7_s2", x.flip(1)))
        x = self.pool(self._run("conv2_3x3", self._run("conv2_3x3_reduce", x)))
        for b in BLOCKS:
            x = self._block(b, x)
        return x


def load_bninception_imagenet(model: BNInception, path: str = "") -> None:
    """Cadene's converted ImageNet weights from ``path`` (or a download); the classifier is not loaded."""
    state = imagenet_state_dict(path, IMAGENET_URL, "BN-Inception")
    state = {k: v for k, v in state.items() if not k.startswith(PUBLISHER_HEAD)}
    load_backbone_weights(model, state, "BN-Inception", f"Use the pretrainedmodels BN-Inception file ({IMAGENET_URL}).")


def check_caffe_input(cfg) -> None:
    """The converted weights need 0..255-scale input: INPUT.PIXEL_MEAN / PIXEL_STD as the configs set them."""
    mean = [m * 255 for m in cfg.INPUT.PIXEL_MEAN]
    std = [s * 255 for s in cfg.INPUT.PIXEL_STD]
    if any(abs(m - c) > 0.5 for m, c in zip(mean, CAFFE_MEAN_RGB)) or any(abs(s - 1.0) > 1e-3 for s in std):
        raise ConfigError(
            f"BN-Inception's ImageNet weights (converted from Caffe) expect pixels in 0..255 minus the mean "
            f"{list(CAFFE_MEAN_RGB)} (RGB): set INPUT.PIXEL_MEAN [{', '.join(f'{c / 255:.8f}' for c in CAFFE_MEAN_RGB)}]"
            f" and INPUT.PIXEL_STD [0.00392157, 0.00392157, 0.00392157] (1/255), as "
            f"configs/*/bninception_*.yml do; got INPUT.PIXEL_MEAN {list(cfg.INPUT.PIXEL_MEAN)}, "
            f"INPUT.PIXEL_STD {list(cfg.INPUT.PIXEL_STD)}.")


@BACKBONE_REGISTRY.register("bninception")
def build_bninception_backbone(cfg) -> BNInception:
    """BN-Inception trunk with the publisher's parameter names, ImageNet-initialised on request."""
    model = BNInception()
    if cfg.MODEL.BACKBONE.PRETRAIN:
        check_caffe_input(cfg)
        load_bninception_imagenet(model, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    return model
