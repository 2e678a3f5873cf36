"""ResNet backbones with torchvision's block definitions and parameter names.

Width and blocks per stage are configurable so that the same code builds ResNet50 for real data and a tiny
network for CPU runs and tests; with the standard width the state dict matches torchvision's, so ImageNet
weights load unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Type, Union

import torch
from torch import nn
from torchvision.models import resnet as tv

from ...utils.errors import CheckpointError, ConfigError
from .registry import BACKBONE_REGISTRY

Block = Type[Union[tv.BasicBlock, tv.Bottleneck]]

# depth -> (block, blocks per stage, torchvision weights enum)
_DEPTHS = {
    18: (tv.BasicBlock, [2, 2, 2, 2], tv.ResNet18_Weights),
    34: (tv.BasicBlock, [3, 4, 6, 3], tv.ResNet34_Weights),
    50: (tv.Bottleneck, [3, 4, 6, 3], tv.ResNet50_Weights),
    101: (tv.Bottleneck, [3, 4, 23, 3], tv.ResNet101_Weights),
    152: (tv.Bottleneck, [3, 8, 36, 3], tv.ResNet152_Weights),
}


class ResNet(nn.Module):
    """torchvision's ResNet trunk (no pooling, no fc) with a configurable base width and last stride."""

    def __init__(self, block: Block, layers: Sequence[int], width: int = 64, last_stride: int = 1) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        strides = (1, 2, 2, last_stride)
        for i, (blocks, stride) in enumerate(zip(layers, strides)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, width * 2**i, blocks, stride))
        self.out_channels = width * 8 * block.expansion
        self._init_weights()

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: List[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual branch: each block starts as identity (Goyal et al. 2017).
        for m in self.modules():
            if isinstance(m, tv.Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, tv.BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def set_stage_stride(stage: nn.Sequential, stride: int) -> None:
    """Change the downsampling stride of a ResNet stage in place, keeping its weights (the shapes do not depend
    on the stride): MGN's branches are copies of one stage, the global one downsampling, the part ones not."""
    first = stage[0]
    if first.downsample is None:
        raise ValueError("only a stage whose first block has a projection shortcut can change its stride")
    strided = first.conv2 if isinstance(first, tv.Bottleneck) else first.conv1  # where torchvision puts the stride
    strided.stride = (stride, stride)
    first.downsample[0].stride = (stride, stride)
    first.stride = stride


def _imagenet_state_dict(depth: int, path: str) -> dict:
    """ImageNet weights from a local file, or torchvision's download; a clear error when neither works."""
    if path:
        if not Path(path).is_file():
            raise CheckpointError(f"MODEL.BACKBONE.PRETRAIN_PATH {path!r} does not exist. Point it at a torchvision "
                                  f"ResNet{depth} ImageNet state dict (e.g. resnet{depth}-*.pth).")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
            raise CheckpointError(f"Cannot read ImageNet weights from {path!r} (loaded with weights_only=True): "
                                  f"{e}") from None
        return state.get("state_dict", state) if isinstance(state, dict) else state
    weights = _DEPTHS[depth][2].IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True)
    except Exception as e:  # noqa: BLE001 - network or cache failure
        raise CheckpointError(
            f"Could not download torchvision's ImageNet weights for ResNet{depth} ({type(e).__name__}: {e}). "
            f"Download {weights.url} elsewhere and set MODEL.BACKBONE.PRETRAIN_PATH to the file, or set "
            f"MODEL.BACKBONE.PRETRAIN False to train from random initialisation."
        ) from None


def load_imagenet(model: ResNet, depth: int, path: str = "") -> None:
    """Load ImageNet weights into ``model``, ignoring torchvision's fc; any other mismatch is an error."""
    state = {k: v for k, v in _imagenet_state_dict(depth, path).items() if not k.startswith("fc.")}
    own = model.state_dict()
    bad_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if bad_shape or missing or unexpected:
        raise CheckpointError(
            f"ImageNet weights do not fit this ResNet{depth} (width {model.conv1.out_channels}): "
            f"{len(bad_shape)} shape mismatches {bad_shape[:5]}, {len(missing)} missing {missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}. Pretrained weights need MODEL.BACKBONE.WIDTH 64 "
            f"and no MODEL.BACKBONE.LAYERS override."
        )
    model.load_state_dict(state, strict=False)


@BACKBONE_REGISTRY.register("resnet")
def build_resnet_backbone(cfg) -> ResNet:
    """ResNet of ``MODEL.BACKBONE.DEPTH`` (or explicit ``LAYERS``) and ``WIDTH``, ImageNet-initialised on request."""
    bb = cfg.MODEL.BACKBONE
    if bb.DEPTH not in _DEPTHS:
        raise ConfigError(f"MODEL.BACKBONE.DEPTH must be one of {sorted(_DEPTHS)}, got {bb.DEPTH}.")
    block, layers, _ = _DEPTHS[bb.DEPTH]
    if bb.LAYERS:
        if len(bb.LAYERS) != 4 or min(bb.LAYERS) < 1:
            raise ConfigError(f"MODEL.BACKBONE.LAYERS must list 4 positive block counts, got {list(bb.LAYERS)}.")
        layers = list(bb.LAYERS)
    if bb.WIDTH < 1 or bb.LAST_STRIDE not in (1, 2):
        raise ConfigError("MODEL.BACKBONE.WIDTH must be positive and MODEL.BACKBONE.LAST_STRIDE 1 or 2.")
    model = ResNet(block, layers, width=bb.WIDTH, last_stride=bb.LAST_STRIDE)
    if bb.PRETRAIN:
        load_imagenet(model, bb.DEPTH, bb.PRETRAIN_PATH)
    return model
