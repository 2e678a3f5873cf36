"""ResNet backbones with torchvision's block definitions and parameter names, and the re-ID variants built on them.

Width and blocks per stage are configurable so that the same code builds ResNet50 for real data and a tiny
network for CPU runs and tests; with the standard width the state dict matches torchvision's, so ImageNet
weights load unchanged. Options, each keeping its publisher's parameter names:

- IBN-a / IBN-b (Pan et al., ECCV 2018), as in Pan et al.'s code, fast-reid and torchreid: ``bn1.IN`` /
  ``bn1.BN`` inside blocks, an InstanceNorm ``bn1`` stem and ``IN`` after the residual sum;
- non-local blocks after the last blocks of layer2 and layer3 (fast-reid's ``WITH_NL``, used by AGW and SBS),
  stored as ``NL_<stage>.<i>`` as fast-reid stores them;
- fast-reid's stem max-pool (no padding, ceil mode), which shifts the pooling windows by one pixel.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Type, Union

import torch
from torch import nn
from torchvision.models import resnet as tv

from ...registry import IBN_REGISTRY
from ...utils.errors import ConfigError
from .layers import IBN, NonLocal
from .pretrained import imagenet_state_dict, load_backbone_weights
from .registry import BACKBONE_REGISTRY


class _PostNorm:
    """A residual block with IBN-b's optional InstanceNorm ``IN`` between the residual sum and the last ReLU."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # torchvision's block
        self.IN: nn.Module | None = None  # set by ResNet for IBN-b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x) + (x if self.downsample is None else self.downsample(x))
        if self.IN is not None:
            out = self.IN(out)
        return self.relu(out)


class BasicBlock(_PostNorm, tv.BasicBlock):
    """torchvision's basic block (same parameters) with IBN-b's optional post-sum InstanceNorm."""

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(_PostNorm, tv.Bottleneck):
    """torchvision's bottleneck (same parameters) with IBN-b's optional post-sum InstanceNorm."""

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


Block = Type[Union[BasicBlock, Bottleneck]]


def _out_channels(block: nn.Module) -> int:
    return block.bn3.num_features if isinstance(block, tv.Bottleneck) else block.bn2.num_features

# depth -> (block, blocks per stage, torchvision weights enum)
_DEPTHS = {
    18: (BasicBlock, [2, 2, 2, 2], tv.ResNet18_Weights),
    34: (BasicBlock, [3, 4, 6, 3], tv.ResNet34_Weights),
    50: (Bottleneck, [3, 4, 6, 3], tv.ResNet50_Weights),
    101: (Bottleneck, [3, 4, 23, 3], tv.ResNet101_Weights),
    152: (Bottleneck, [3, 8, 36, 3], tv.ResNet152_Weights),
}
# Non-local blocks per stage where fast-reid puts them (after the last n blocks of each stage).
_NON_LOCAL = {50: (0, 2, 3, 0), 101: (0, 2, 9, 0)}
# Pan et al.'s ImageNet IBN-Nets (IBN-Net GitHub release v1.0); the name carries the sha256 prefix.
_IBN_URL = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet{depth}_ibn_{kind}-{hash}.pth"
_IBN_HASHES = {(18, "a"): "2f571257", (34, "a"): "94bc1577", (50, "a"): "d9d0bb7b", (101, "a"): "59ea0ac6",
               (18, "b"): "bc2f3c11", (34, "b"): "04134c37", (50, "b"): "9ca61e85", (101, "b"): "c55f6dba"}
IBN_REGISTRY.register("a", "instance norm in half of the first BN of the blocks of layer1-3 (IBN-Net-a)")
IBN_REGISTRY.register("b", "instance norm in the stem and after layer1-2 (IBN-Net-b)")


class ResNet(nn.Module):
    """torchvision's ResNet trunk (no pooling, no fc) with a configurable base width and last stride, and the
    IBN, non-local and stem max-pool options of the re-ID toolkits (see the module docstring)."""

    def __init__(self, block: Block, layers: Sequence[int], width: int = 64, last_stride: int = 1, ibn: str = "",
                 non_local: Sequence[int] = (0, 0, 0, 0), nl_inter: int = 1, maxpool_ceil: bool = False) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.InstanceNorm2d(width, affine=True) if ibn == "b" else nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True) if maxpool_ceil
                        else nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        strides = (1, 2, 2, last_stride)
        for i, (blocks, stride) in enumerate(zip(layers, strides)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, width * 2**i, blocks, stride))
        self.out_channels = width * 8 * block.expansion
        self._init_weights()
        self._add_ibn(ibn)
        # stage index -> {block index -> non-local module index}; the modules live in NL_<stage> (fast-reid's names)
        self.non_local: Dict[int, Dict[int, int]] = {}
        for i, n in enumerate(non_local):
            blocks = len(getattr(self, f"layer{i + 1}"))
            n = min(n, blocks)
            if n:
                channels = _out_channels(getattr(self, f"layer{i + 1}")[-1])
                setattr(self, f"NL_{i + 1}", nn.ModuleList(
                    NonLocal(channels, nl_inter or channels // 2) for _ in range(n)))
                self.non_local[i + 1] = {b: j for j, b in enumerate(range(blocks - n, blocks))}

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

    def _add_ibn(self, ibn: str) -> None:
        """IBN-a: an IBN in place of bn1 in every block of layer1-3. IBN-b: an InstanceNorm after the residual sum
        of the last block of layer1 and layer2 (the stem's InstanceNorm is made in __init__). Pan et al.'s layout."""
        for stage in (self.layer1, self.layer2, self.layer3) if ibn == "a" else ():
            for blk in stage:
                blk.bn1 = IBN(blk.bn1.num_features)
        for stage in (self.layer1, self.layer2) if ibn == "b" else ():
            stage[-1].IN = nn.InstanceNorm2d(_out_channels(stage[-1]), affine=True)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, 5):
            after = self.non_local.get(i)
            if after is None:
                x = getattr(self, f"layer{i}")(x)
                continue
            blocks = getattr(self, f"NL_{i}")
            for b, blk in enumerate(getattr(self, f"layer{i}")):
                x = blk(x)
                if b in after:
                    x = blocks[after[b]](x)
        return x


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


def _imagenet_source(depth: int, ibn: str) -> Tuple[str, str]:
    """(URL of the ImageNet weights, their name) for this depth and IBN type."""
    if not ibn:
        return _DEPTHS[depth][2].IMAGENET1K_V1.url, f"ResNet{depth}"
    if (depth, ibn) not in _IBN_HASHES:
        raise ConfigError(f"No published ImageNet weights for ResNet{depth}-IBN-{ibn}; Pan et al. release depths "
                          f"18, 34, 50 and 101. Set MODEL.BACKBONE.PRETRAIN False or another DEPTH.")
    return _IBN_URL.format(depth=depth, kind=ibn, hash=_IBN_HASHES[depth, ibn]), f"ResNet{depth}-IBN-{ibn}"


def load_imagenet(model: ResNet, depth: int, path: str = "", ibn: str = "") -> None:
    """Load ImageNet weights into ``model`` (torchvision's, or Pan et al.'s IBN-Nets) from ``path`` or a download,
    ignoring the ImageNet fc; non-local blocks, which ImageNet training did not have, keep their identity init."""
    url, what = _imagenet_source(depth, ibn)
    state = imagenet_state_dict(path, url, what, check_hash=True)
    load_backbone_weights(model, state, f"{what} (width {model.conv1.out_channels})",
                          "Pretrained weights need MODEL.BACKBONE.WIDTH 64, no MODEL.BACKBONE.LAYERS override, and "
                          "the DEPTH / WITH_IBN / IBN_TYPE of the file.", new=("NL_",))


def _check(bb) -> Tuple[Block, List[int], str, Tuple[int, ...]]:
    """The block, blocks per stage, IBN type ('' = none) and non-local counts that ``MODEL.BACKBONE`` asks for."""
    if bb.DEPTH not in _DEPTHS:
        raise ConfigError(f"MODEL.BACKBONE.DEPTH must be one of {sorted(_DEPTHS)}, got {bb.DEPTH}.")
    block, layers, _ = _DEPTHS[bb.DEPTH]
    if bb.LAYERS:
        if len(bb.LAYERS) != 4 or min(bb.LAYERS) < 1:
            raise ConfigError(f"MODEL.BACKBONE.LAYERS must list 4 positive block counts, got {list(bb.LAYERS)}.")
        layers = list(bb.LAYERS)
    if bb.WIDTH < 1 or bb.LAST_STRIDE not in (1, 2):
        raise ConfigError("MODEL.BACKBONE.WIDTH must be positive and MODEL.BACKBONE.LAST_STRIDE 1 or 2.")
    IBN_REGISTRY.check(bb.IBN_TYPE)
    non_local: Tuple[int, ...] = (0, 0, 0, 0)
    if bb.WITH_NL:
        if bb.DEPTH not in _NON_LOCAL:
            raise ConfigError(f"MODEL.BACKBONE.WITH_NL places non-local blocks as fast-reid does, which it defines "
                              f"for DEPTH 50 and 101 only; got DEPTH {bb.DEPTH}.")
        non_local = _NON_LOCAL[bb.DEPTH]
    if bb.NL_INTER_CHANNELS < 0:
        raise ConfigError(f"MODEL.BACKBONE.NL_INTER_CHANNELS must be >= 0, got {bb.NL_INTER_CHANNELS}.")
    return block, layers, bb.IBN_TYPE if bb.WITH_IBN else "", non_local


@BACKBONE_REGISTRY.register("resnet")
def build_resnet_backbone(cfg) -> ResNet:
    """ResNet of ``MODEL.BACKBONE.DEPTH`` (or explicit ``LAYERS``) and ``WIDTH`` with the IBN / non-local / stem
    options of ``MODEL.BACKBONE``, ImageNet-initialised on request."""
    bb = cfg.MODEL.BACKBONE
    block, layers, ibn, non_local = _check(bb)
    model = ResNet(block, layers, width=bb.WIDTH, last_stride=bb.LAST_STRIDE, ibn=ibn, non_local=non_local,
                   nl_inter=bb.NL_INTER_CHANNELS, maxpool_ceil=bb.MAXPOOL_CEIL)
    if bb.PRETRAIN:
        load_imagenet(model, bb.DEPTH, bb.PRETRAIN_PATH, ibn)
    return model
