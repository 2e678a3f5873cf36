"""Vision Transformer for re-ID as TransReID builds it (He et al., ICCV 2021), with its parameter names.

- **Overlapping patches**: a 16 x 16 patch convolution with a configurable stride (TransReID's stride 12 gives a
  21 x 10 grid at 256 x 128 instead of 16 x 8), ``patch_embed.proj``.
- **Position embeddings for any input size**: ``pos_embed`` holds the grid of ``INPUT.SIZE_TRAIN``; an input of
  another size gets them bilinearly interpolated (the rule TransReID and timm use to load 224 x 224 ImageNet
  weights), so a model tests at any size and ImageNet files load at any training size.
- **Side information embedding (SIE)**: a learned vector per camera (and per viewpoint) added, times
  ``MODEL.VIT.SIE_COEF``, to every token, so the network can remove camera bias. The model then needs each image's
  camera: ``vit(images, camids=...)`` (0-based); a model without SIE ignores cameras.
- Pre-norm blocks (LayerNorm eps 1e-6) with stochastic depth rising linearly to ``MODEL.VIT.DROP_PATH``.

``forward`` returns the class token after the final norm as a (B, D, 1, 1) map, so the ordinary
:class:`~reid.modeling.heads.EmbeddingHead` (average pooling is then the identity) and the Baseline meta-architecture
serve it; ``tokens`` gives all tokens for heads that need them (TransReID's JPM, ``meta_arch/transreid.py``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.errors import ConfigError
from .pretrained import imagenet_state_dict, load_backbone_weights
from .registry import BACKBONE_REGISTRY

# timm's ViT-B/16 ImageNet-21k -> 1k weights that TransReID initialises from (its configs' PRETRAIN_PATH)
VIT_B16_URL = ("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/"
               "jx_vit_base_p16_224-80ecf9dd.pth")


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop the residual branch of whole samples with probability ``p``."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * keep / (1 - p)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)


class Attention(nn.Module):
    """Multi-head self-attention with one ``qkv`` projection (timm / TransReID names), through PyTorch's fused
    scaled-dot-product attention."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"The embedding width {dim} must divide by the number of heads {heads}.")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)), each with stochastic depth."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def patch_grid(size: Sequence[int], patch: int, stride: Sequence[int]) -> Tuple[int, int]:
    """(rows, columns) of patches a ``patch`` convolution with ``stride`` cuts from an image of ``size``."""
    rows, cols = ((s - patch) // t + 1 for s, t in zip(size, stride))
    if rows < 1 or cols < 1:
        raise ConfigError(f"An input of {size[0]}x{size[1]} is smaller than one {patch}x{patch} patch.")
    return rows, cols


def resize_grid_embedding(grid: torch.Tensor, old: Tuple[int, int], new: Tuple[int, int]) -> torch.Tensor:
    """(N_old, D) embeddings of a row-major ``old`` grid -> (N_new, D) for the ``new`` grid, bilinear
    (``align_corners=False``, as TransReID, CLIP-ReID and timm resize position embeddings)."""
    if tuple(old) == tuple(new):
        return grid
    d = grid.shape[-1]
    image = grid.reshape(1, old[0], old[1], d).permute(0, 3, 1, 2)
    out = F.interpolate(image.float(), size=new, mode="bilinear", align_corners=False).to(grid.dtype)
    return out.permute(0, 2, 3, 1).reshape(new[0] * new[1], d)


class SideInformation(nn.Module):
    """SIE (TransReID): ``coef`` x a learned vector per camera and viewpoint, looked up as camera x views + view.

    TransReID builds the table only for more than one camera (or view); ``weight`` keeps its layout
    (cameras x views, 1, D), so its ``sie_embed`` maps onto it. With one camera (or view) that id is ignored.
    """

    def __init__(self, cameras: int, views: int, dim: int, coef: float) -> None:
        super().__init__()
        self.cameras, self.views, self.coef = max(cameras, 1), max(views, 1), coef
        self.weight = nn.Parameter(torch.zeros(self.cameras * self.views, 1, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, camids: Optional[torch.Tensor], viewids: Optional[torch.Tensor] = None) -> torch.Tensor:
        index = torch.zeros((), dtype=torch.long, device=self.weight.device)
        if self.cameras > 1:
            if camids is None:
                raise ValueError(f"This model adds camera embeddings (SIE, {self.cameras} cameras): pass each "
                                 f"image's 0-based camera, model(images, camids=...).")
            self._check(camids, self.cameras, "Camera")
            index = camids.long() * self.views
        if self.views > 1 and viewids is not None:
            self._check(viewids, self.views, "View")
            index = index + viewids.long()
        return self.coef * self.weight[index]  # (1, D) for one id, (B, 1, D) per image

    def _check(self, ids: torch.Tensor, n: int, what: str) -> None:
        """At test time (not while training, where it would stall the GPU): ids outside the table are an error
        (unknown cameras, -1, have no embedding)."""
        if self.training or torch.jit.is_tracing() or not ids.numel():
            return
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= n:
            raise ValueError(f"{what} ids must be in 0..{n - 1} for this model's SIE table (an unknown camera, -1, "
                             f"has no embedding); got {low}..{high}.")


def sie_cameras(model: nn.Module) -> int:
    """Cameras of the SIE table in ``model`` (0 when it has none, or one camera, whose id it ignores): what callers
    must pass as 0-based ``camids`` below this number."""
    return max((m.cameras for m in model.modules() if isinstance(m, SideInformation) and m.cameras > 1), default=0)


class VisionTransformer(nn.Module):
    """TransReID's ViT (``base.*`` of its checkpoints, without the unused ImageNet ``fc``)."""

    camera_aware = True  # forward takes camids (used when the model has SIE)

    def __init__(self, image_size: Sequence[int] = (256, 128), patch: int = 16, stride: Sequence[int] = (16, 16),
                 dim: int = 768, depth: int = 12, heads: int = 12, mlp_ratio: float = 4.0, drop_path_rate: float = 0.1,
                 cameras: int = 0, views: int = 0, sie_coef: float = 3.0) -> None:
        super().__init__()
        self.stride = tuple(stride)
        self.patch = patch
        self.grid = patch_grid(image_size, patch, self.stride)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=self.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, dim))
        # TransReID: a table when there is more than one camera or view
        self.sie = SideInformation(cameras, views, dim, sie_coef) if cameras > 1 or views > 1 else None
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_channels = dim
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        proj = self.patch_embed.proj  # TransReID's overlapping patch embedding: N(0, 2 / (k * k * out))
        nn.init.normal_(proj.weight, std=math.sqrt(2.0 / (proj.kernel_size[0] * proj.kernel_size[1] *
                                                          proj.out_channels)))

    def position_embedding(self, grid: Tuple[int, int]) -> torch.Tensor:
        """(1, 1 + rows x cols, D): the stored embeddings, interpolated when ``grid`` is not the training grid."""
        if tuple(grid) == self.grid:
            return self.pos_embed
        cls, rest = self.pos_embed[:, :1], self.pos_embed[0, 1:]
        return torch.cat([cls, resize_grid_embedding(rest, self.grid, grid)[None]], dim=1)

    def tokens(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None,
               viewids: Optional[torch.Tensor] = None, blocks: Optional[int] = None) -> torch.Tensor:
        """(B, 1 + N, D): class token and patch tokens after the first ``blocks`` blocks (all by default), before
        the final norm."""
        x = self.patch_embed.proj(images)
        grid = (x.shape[2], x.shape[3])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.position_embedding(grid)
        if self.sie is not None:
            x = x + self.sie(camids, viewids)
        for blk in self.blocks[:blocks]:
            x = blk(x)
        return x

    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None,
                viewids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.norm(self.tokens(images, camids, viewids))[:, 0, :, None, None]


def _timm_to_transreid(state: dict) -> dict:
    """ImageNet files in timm's layout: keys are TransReID's already; SIE is new, ``head`` is ImageNet's."""
    return {k: v for k, v in state.items() if not k.startswith(("head.", "fc.", "pre_logits.", "dist_token"))}


def load_vit_imagenet(model: VisionTransformer, path: str) -> None:
    """Initialise from timm's ViT-B/16 file (TransReID's initialisation): the position embeddings are resized
    from the file's square grid to the model's (bilinear), the ImageNet head is dropped, SIE starts fresh."""
    state = _timm_to_transreid(imagenet_state_dict(path, VIT_B16_URL, "ViT-B/16"))
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        side = int(round(math.sqrt(pos.shape[1] - 1)))
        if side * side + 1 != pos.shape[1]:
            raise ConfigError(f"The ImageNet pos_embed has {pos.shape[1]} tokens, not 1 + a square grid.")
        grid = resize_grid_embedding(pos[0, 1:], (side, side), model.grid)
        state["pos_embed"] = torch.cat([pos[:, :1], grid[None]], dim=1)
    state = {k.replace("sie_embed", "sie.weight"): v for k, v in state.items()}
    load_backbone_weights(model, state, "ViT", "ImageNet weights need MODEL.VIT.EMBED_DIM 768, DEPTH 12, "
                          "NUM_HEADS 12 (ViT-B/16) and MODEL.VIT.PATCH_SIZE 16.", new=("sie.",))


def check_token_pooling(cfg) -> None:
    """Transformer features are tokens given as 1 x 1 maps: average or max pooling leaves them as they are, GeM
    would change them."""
    if cfg.MODEL.HEADS.POOL == "gem":
        raise ConfigError(f"MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME} gives token features (1 x 1 maps); set "
                          f"MODEL.HEADS.POOL avg (GeM would alter them).")


def vit_options(cfg) -> dict:
    """The ViT's size, stride, drop path and SIE from ``MODEL.VIT`` (checked)."""
    v = cfg.MODEL.VIT
    if len(v.STRIDE) != 2 or min(v.STRIDE) < 1 or v.PATCH_SIZE < 1:
        raise ConfigError(f"MODEL.VIT.STRIDE must be two positive integers and PATCH_SIZE positive, got "
                          f"{list(v.STRIDE)}, {v.PATCH_SIZE}.")
    if v.SIE_CAMERAS < 0 or v.SIE_VIEWS < 0 or not 0.0 <= v.DROP_PATH < 1.0:
        raise ConfigError("MODEL.VIT.SIE_CAMERAS / SIE_VIEWS must be >= 0 and MODEL.VIT.DROP_PATH in [0, 1).")
    check_token_pooling(cfg)
    return dict(image_size=tuple(cfg.INPUT.SIZE_TRAIN), patch=v.PATCH_SIZE, stride=tuple(v.STRIDE),
                dim=v.EMBED_DIM, depth=v.DEPTH, heads=v.NUM_HEADS, mlp_ratio=v.MLP_RATIO, drop_path_rate=v.DROP_PATH,
                cameras=v.SIE_CAMERAS, views=v.SIE_VIEWS, sie_coef=v.SIE_COEF)


@BACKBONE_REGISTRY.register("vit")
def build_vit_backbone(cfg) -> VisionTransformer:
    """TransReID's ViT sized by ``MODEL.VIT`` (default ViT-B/16), ImageNet-initialised on request."""
    model = VisionTransformer(**vit_options(cfg))
    if cfg.MODEL.BACKBONE.PRETRAIN:
        load_vit_imagenet(model, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    return model
