"""OSNet (Zhou et al., ICCV 2019) and OSNet-AIN (Zhou et al., TPAMI 2021) trunks with torchreid's parameter names.

An omni-scale block runs four streams of 1..4 lightweight 3x3 convolutions (1x1 + depthwise 3x3) on a bottleneck
and fuses them with one shared channel gate, so each channel can pick its receptive field. OSNet-AIN adds
instance normalisation inside some residual branches and in the stem (the TPAMI paper's searched cells).

The trunk ends at ``conv5`` (a 1x1 conv + BN + ReLU); torchreid's global pooling and ``fc`` (Linear + BN + ReLU
to 512-d) are the head here (``MODEL.HEADS.POOL avg``, ``REDUCTION linear_bn_relu``, ``EMBEDDING_DIM 512``,
``NECK none``), so a torchreid checkpoint maps onto ``backbone.*`` and ``head.reduction.*`` name for name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .pretrained import imagenet_state_dict, load_backbone_weights
from .registry import BACKBONE_REGISTRY

# Where an omni-scale block puts instance normalisation: nowhere, after the residual sum (osnet_ibn_x1_0, the
# IBN-b idea) or at the end of the residual branch, replacing conv3's BN (OSNet-AIN's "INin" blocks).
PLAIN, IN_AFTER, IN_INSIDE = "", "after", "inside"


class ConvLayer(nn.Module):
    """Conv + BN (or InstanceNorm) + optional ReLU; torchreid's ConvLayer / Conv1x1 / Conv1x1Linear."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 instance_norm: bool = False, relu: bool = True, norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = (nn.InstanceNorm2d(cout, affine=True) if instance_norm else nn.BatchNorm2d(cout)) if norm else None
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.relu is None else self.relu(x)


class LightConv3x3(nn.Module):
    """1x1 conv (linear) then depthwise 3x3 conv, BN, ReLU: a cheap 3x3 layer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, groups=channels)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class LightConvStream(nn.Module):
    """``depth`` LightConv3x3 layers in a row: one scale of an OSNet-AIN block (torchreid keeps them in
    ``layers``)."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[LightConv3x3(channels) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ChannelGate(nn.Module):
    """Unified aggregation gate: x * sigmoid(fc2(relu(fc1(avgpool(x))))), shared by the four streams."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * gate


class OSBlock(nn.Module):
    """Omni-scale residual block. ``ain`` selects OSNet-AIN's stream layout (``conv2.<t>.layers``) instead of
    OSNet's (``conv2a`` .. ``conv2d``); ``norm`` places instance normalisation (PLAIN, IN_AFTER, IN_INSIDE)."""

    def __init__(self, cin: int, cout: int, ain: bool = False, norm: str = PLAIN) -> None:
        super().__init__()
        mid = cout // 4
        self.conv1 = ConvLayer(cin, mid)
        if ain:
            self.conv2 = nn.ModuleList(LightConvStream(mid, t) for t in range(1, 5))
        else:
            self.conv2a = LightConv3x3(mid)
            for name, t in (("conv2b", 2), ("conv2c", 3), ("conv2d", 4)):
                setattr(self, name, nn.Sequential(*[LightConv3x3(mid) for _ in range(t)]))
        self.gate = ChannelGate(mid)
        self.conv3 = ConvLayer(mid, cout, relu=False, norm=norm != IN_INSIDE)
        self.downsample = ConvLayer(cin, cout, relu=False) if cin != cout else None
        self.IN = nn.InstanceNorm2d(cout, affine=True) if norm != PLAIN else None
        self.norm = norm

    def streams(self) -> List[nn.Module]:
        return list(self.conv2) if hasattr(self, "conv2") else [self.conv2a, self.conv2b, self.conv2c, self.conv2d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        fused = sum(self.gate(stream(x1)) for stream in self.streams())
        branch = self.conv3(fused)
        if self.norm == IN_INSIDE:
            branch = self.IN(branch)
        out = branch + (x if self.downsample is None else self.downsample(x))
        if self.norm == IN_AFTER:
            out = self.IN(out)
        return F.relu(out)


def _transition(channels: int) -> nn.Sequential:
    """1x1 conv + BN + ReLU, then 2x2 average pooling: OSNet's downsampling between stages."""
    return nn.Sequential(ConvLayer(channels, channels), nn.AvgPool2d(2, stride=2))


@dataclass(frozen=True)
class OSNetSpec:
    """Channels of the stem and the three stages, and the instance-norm placement of each stage's two blocks."""

    channels: Tuple[int, int, int, int]
    norms: Tuple[Tuple[str, str], Tuple[str, str], Tuple[str, str]] = ((PLAIN,) * 2,) * 3
    stem_in: bool = False  # InstanceNorm in the stem conv
    ain: bool = False  # OSNet-AIN stream layout and separate pool2 / pool3 transitions


_AIN_NORMS = ((IN_INSIDE, IN_INSIDE), (PLAIN, IN_INSIDE), (IN_INSIDE, PLAIN))  # the TPAMI paper's cells
_WIDTHS = {"x1_0": (64, 256, 384, 512), "x0_75": (48, 192, 288, 384), "x0_5": (32, 128, 192, 256),
           "x0_25": (16, 64, 96, 128)}
SPECS = {
    **{f"osnet_{w}": OSNetSpec(c) for w, c in _WIDTHS.items()},
    "osnet_ibn_x1_0": OSNetSpec(_WIDTHS["x1_0"], ((IN_AFTER,) * 2, (PLAIN,) * 2, (PLAIN,) * 2), stem_in=True),
    **{f"osnet_ain_{w}": OSNetSpec(c, _AIN_NORMS, stem_in=True, ain=True) for w, c in _WIDTHS.items()},
}
# torchreid's ImageNet weights (Google Drive file ids of its model zoo page and osnet.py / osnet_ain.py)
IMAGENET_DRIVE_IDS = {
    "osnet_x1_0": "1LaG1EJpHrxdAxKnSCJ_i0u-nbxSAeiFY", "osnet_x0_75": "1uwA9fElHOk3ZogwbeY5GkLI6QPTX70Hq",
    "osnet_x0_5": "16DGLbZukvVYgINws8u8deSaOqjybZ83i", "osnet_x0_25": "1rb8UN5ZzPKRc_xvtHlyDh-cSz88YX9hs",
    "osnet_ibn_x1_0": "1sr90V6irlYYDd4_4ISU2iruoRG8J__6l", "osnet_ain_x1_0": "1-CaioD9NaqbHK_kzSMW8VE4_3KcsRjEo",
    "osnet_ain_x0_75": "1apy0hpsMypqstfencdH-jKIUEFOW4xoM", "osnet_ain_x0_5": "1KusKvEYyKGDTUBVRxRiz55G31wkihB6l",
    "osnet_ain_x0_25": "1SxQt2AvmEcgWNhaRb2xC4rP6ZwVDP0Wt",
}
DRIVE_DOWNLOAD = "https://drive.google.com/uc?export=download&id={}"


class OSNet(nn.Module):
    """OSNet trunk: stem conv + max-pool, three stages of two omni-scale blocks (downsampling after the first two),
    and ``conv5``. Output stride 16 (a 256 x 128 image gives a 16 x 8 map)."""

    def __init__(self, spec: OSNetSpec) -> None:
        super().__init__()
        c = spec.channels
        self.conv1 = ConvLayer(3, c[0], 7, stride=2, padding=3, instance_norm=spec.stem_in)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stages: List[str] = []
        for i, norms in enumerate(spec.norms):
            blocks: List[nn.Module] = [OSBlock(c[i] if j == 0 else c[i + 1], c[i + 1], spec.ain, norm)
                                       for j, norm in enumerate(norms)]
            if i < 2 and not spec.ain:
                blocks.append(_transition(c[i + 1]))  # OSNet keeps the transition inside the stage
            setattr(self, f"conv{i + 2}", nn.Sequential(*blocks))
            self.stages.append(f"conv{i + 2}")
            if i < 2 and spec.ain:
                setattr(self, f"pool{i + 2}", _transition(c[i + 1]))  # OSNet-AIN names it pool2 / pool3
                self.stages.append(f"pool{i + 2}")
        self.conv5 = ConvLayer(c[3], c[3])
        self.out_channels = c[3]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.conv5(x)


def load_osnet_imagenet(model: OSNet, name: str, path: str = "") -> None:
    """torchreid's ImageNet weights for ``name`` from ``path`` or Google Drive (its fc and classifier are the
    ImageNet head and are not loaded)."""
    url = DRIVE_DOWNLOAD.format(IMAGENET_DRIVE_IDS[name])
    state = imagenet_state_dict(path, url, name, file_name=f"{name}_imagenet.pth")
    load_backbone_weights(model, state, name, f"Use torchreid's {name} ImageNet file with MODEL.BACKBONE.NAME {name}.")


def _register(name: str) -> None:
    @BACKBONE_REGISTRY.register(name)
    def build(cfg) -> OSNet:
        model = OSNet(SPECS[name])
        if cfg.MODEL.BACKBONE.PRETRAIN:
            load_osnet_imagenet(model, name, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
        return model

    build.__doc__ = f"{name} trunk (torchreid's layout), ImageNet-initialised on request."


for _name in SPECS:
    _register(_name)
