"""CLIP's image encoders (Radford et al., ICML 2021) as CLIP-ReID uses them (Li et al., AAAI 2023), with CLIP's
parameter names (``image_encoder.*`` of CLIP-ReID's checkpoints, ``visual.*`` of OpenAI's files).

- ``clip_vit``: CLIP's ViT-B/16 with a configurable patch stride (``MODEL.VIT.STRIDE``; CLIP-ReID's "OLP" is 12),
  position embeddings for the training grid (interpolated for other sizes), QuickGELU blocks, ``ln_post`` and the
  projection to ``MODEL.CLIP.PROJ_DIM`` (512). CLIP-ReID's SIE adds ``MODEL.VIT.SIE_COEF`` x a camera vector to
  the class token only.
- ``clip_resnet``: CLIP's ModifiedResNet-50: a three-convolution stem with average pooling, anti-aliased strided
  bottlenecks (average pooling before the strided 1x1), ``MODEL.BACKBONE.LAST_STRIDE`` in layer4 (CLIP-ReID: 1,
  CLIP: 2) and the attention pool whose output, projected to 1024-d, is CLIP's image embedding.

Both return two (B, C, 1, 1) features, the one before and the one after CLIP's projection: CLIP-ReID puts a
BNNeck on each and tests with their concatenation (``meta_arch/clipreid.py``).
"""
from __future__ import annotations

import math
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.errors import CheckpointError, ConfigError
from .pretrained import load_backbone_weights
from .registry import BACKBONE_REGISTRY
from .vit import SideInformation, check_token_pooling, patch_grid, resize_grid_embedding

CLIP_URLS = {  # OpenAI's releases (the clip package's _MODELS), TorchScript archives named by their SHA-256
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/"
                "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "RN50": "https://openaipublic.azureedge.net/clip/models/"
            "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
}


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input type (CLIP's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's parameter names (CLIP's files), batch first, through fused
    scaled-dot-product attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(dim, heads)
        self.ln_1 = LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(dim, dim * 4), gelu=QuickGELU(),
                                             c_proj=nn.Linear(dim * 4, dim)))
        self.ln_2 = LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CLIPVisionTransformer(nn.Module):
    """CLIP's ViT image encoder with CLIP-ReID's stride and camera embedding."""

    camera_aware = True

    def __init__(self, image_size: Sequence[int] = (256, 128), patch: int = 16, stride: Sequence[int] = (16, 16),
                 width: int = 768, layers: int = 12, heads: int = 12, output_dim: int = 512, cameras: int = 0,
                 views: int = 0, sie_coef: float = 1.0) -> None:
        super().__init__()
        self.grid = patch_grid(image_size, patch, stride)
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=tuple(stride), bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid[0] * self.grid[1] + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        # CLIP-ReID's cv_embed: a (cameras x views, D) table added to the class token
        self.sie = SideInformation(cameras, views, width, sie_coef) if cameras > 1 or views > 1 else None
        self.out_channels = (width, output_dim)

    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None,
                viewids: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        x = self.conv1(images)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        if self.sie is not None:
            cls = cls + self.sie(camids, viewids).to(x.dtype)
        pos = self.positional_embedding
        if grid != self.grid:
            pos = torch.cat([pos[:1], resize_grid_embedding(pos[1:], self.grid, grid)])
        x = self.ln_pre(torch.cat([cls, x], dim=1) + pos.to(x.dtype))
        token = self.ln_post(self.transformer.resblocks(x)[:, 0])
        return [token[:, :, None, None], (token @ self.proj.to(token.dtype))[:, :, None, None]]


class Bottleneck(nn.Module):
    """CLIP's anti-aliased bottleneck: every convolution has stride 1; a stride s is an s x s average pool after
    conv2 (and before the 1x1 projection of the shortcut)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride) if stride > 1 else nn.Identity()),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class AttentionPool2d(nn.Module):
    """CLIP's attention pool: the mean token (plus a position embedding per map cell) attends over the map; its
    output, through ``c_proj``, is the embedding. Only the mean token's output is computed (CLIP uses no other)."""

    def __init__(self, grid: Tuple[int, int], dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.positional_embedding = nn.Parameter(torch.randn(grid[0] * grid[1] + 1, dim) / dim ** 0.5)
        self.k_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        pos = self.positional_embedding
        if (h, w) != self.grid:
            pos = torch.cat([pos[:1], resize_grid_embedding(pos[1:], self.grid, (h, w))])
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + pos.to(x.dtype)
        split = lambda t: t.reshape(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x[:, :1])), split(self.k_proj(x)), split(self.v_proj(x))
        return self.c_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet image encoder (RN50: layers 3-4-6-3, width 64, 1024-d output, 32 attention-pool heads)."""

    def __init__(self, image_size: Sequence[int] = (256, 128), layers: Sequence[int] = (3, 4, 6, 3), width: int = 64,
                 output_dim: int = 1024, heads: int = 32, last_stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, last_stride))):
            setattr(self, f"layer{i + 1}", self._make_layer(width * 2 ** i, blocks, stride))
        total = 16 * last_stride
        grid = (image_size[0] // total, image_size[1] // total)
        self.attnpool = AttentionPool2d(grid, width * 32, heads, output_dim)
        self.out_channels = (width * 32, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * 4
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = images
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.avgpool(x)))))
        return [x.mean((2, 3), keepdim=True), self.attnpool(x)[:, :, None, None]]


def _read_clip_file(path: str, what: str) -> Dict[str, torch.Tensor]:
    """The tensors of an OpenAI CLIP file: a state dict (read with weights_only) or the TorchScript archive OpenAI
    publishes (loaded with torch.jit.load, which runs no Python code of the file)."""
    url = CLIP_URLS[what]
    if not path or not Path(path).is_file():
        raise CheckpointError(f"CLIP {what} initialisation needs its file: download {url} and set "
                              f"MODEL.BACKBONE.PRETRAIN_PATH to it" + (f" ({path!r} does not exist)." if path else "."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain state dict: OpenAI's TorchScript archive
        try:
            if not zipfile.is_zipfile(path):
                raise ValueError("neither a state dict nor a TorchScript archive")
            state = torch.jit.load(path, map_location="cpu").state_dict()
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"Cannot read CLIP weights from {path!r}: {e}. Use OpenAI's file ({url}).") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return {k[len("visual."):]: v.float() for k, v in state.items() if k.startswith("visual.")}


def _resize_table(table: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """A (1 + side^2, D) position table of a square grid -> (1 + rows x cols, D) for ``grid``."""
    side = int(round(math.sqrt(table.shape[0] - 1)))
    return torch.cat([table[:1], resize_grid_embedding(table[1:], (side, side), grid)])


def load_clip(model: nn.Module, path: str) -> None:
    """Initialise ``model`` from OpenAI's CLIP file, position embeddings resized to the model's grid as CLIP-ReID
    does; the camera table (SIE) starts fresh."""
    vit = isinstance(model, CLIPVisionTransformer)
    state = _read_clip_file(path, "ViT-B/16" if vit else "RN50")
    key = "positional_embedding" if vit else "attnpool.positional_embedding"
    if key in state:
        state[key] = _resize_table(state[key], model.grid if vit else model.attnpool.grid)
    load_backbone_weights(model, state, "CLIP image encoder", "CLIP weights need the publisher's sizes (ViT-B/16: "
                          "MODEL.VIT.EMBED_DIM 768, DEPTH 12, NUM_HEADS 12; RN50: MODEL.BACKBONE.DEPTH 50, WIDTH 64).",
                          new=("sie.",))


def _proj_dim(cfg, default: int) -> int:
    return cfg.MODEL.CLIP.PROJ_DIM or default


@BACKBONE_REGISTRY.register("clip_vit")
def build_clip_vit(cfg) -> CLIPVisionTransformer:
    """CLIP's ViT image encoder sized by ``MODEL.VIT`` (default ViT-B/16), projection ``MODEL.CLIP.PROJ_DIM``."""
    v = cfg.MODEL.VIT
    check_token_pooling(cfg)
    model = CLIPVisionTransformer(tuple(cfg.INPUT.SIZE_TRAIN), v.PATCH_SIZE, tuple(v.STRIDE), v.EMBED_DIM, v.DEPTH,
                                  v.NUM_HEADS, _proj_dim(cfg, 512), v.SIE_CAMERAS, v.SIE_VIEWS, v.SIE_COEF)
    if cfg.MODEL.BACKBONE.PRETRAIN:
        load_clip(model, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    return model


@BACKBONE_REGISTRY.register("clip_resnet")
def build_clip_resnet(cfg) -> ModifiedResNet:
    """CLIP's ModifiedResNet (``MODEL.BACKBONE.DEPTH`` 50 or ``LAYERS``, ``WIDTH``, ``LAST_STRIDE``)."""
    bb = cfg.MODEL.BACKBONE
    layers = list(bb.LAYERS) or {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}.get(bb.DEPTH)
    if layers is None or len(layers) != 4 or bb.LAST_STRIDE not in (1, 2):
        raise ConfigError(f"clip_resnet needs MODEL.BACKBONE.DEPTH 50 or 101 (or 4 LAYERS) and LAST_STRIDE 1 or 2; "
                          f"got {bb.DEPTH}, {list(bb.LAYERS)}, {bb.LAST_STRIDE}.")
    model = ModifiedResNet(tuple(cfg.INPUT.SIZE_TRAIN), layers, bb.WIDTH, _proj_dim(cfg, 1024), bb.WIDTH * 32 // 64,
                           bb.LAST_STRIDE)
    if bb.PRETRAIN:
        load_clip(model, bb.PRETRAIN_PATH)
    return model
