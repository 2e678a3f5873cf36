"""Swin Transformer (Liu et al., ICCV 2021) as SOLIDER (Chen et al., CVPR 2023) builds it for re-ID, with its
parameter names (the mmsegmentation layout: ``stages.i.blocks.j.attn.w_msa``, ``ffn.layers``, ``norm3``).

- Windows of ``MODEL.SWIN.WINDOW`` (7) on every stage; a map that does not divide by the window is padded with
  zeros at the right and bottom *before* the cyclic shift of the shifted blocks, and the shift mask is drawn on
  the padded map (mmsegmentation's order; timm shifts first and shrinks windows to small maps, which computes
  something else at re-ID sizes such as 384 x 128).
- Patch merging concatenates each 2 x 2 neighbourhood channel by channel (``nn.Unfold``'s order), odd maps padded.
- **SOLIDER's semantic weight** ``MODEL.SWIN.SEMANTIC_WEIGHT`` (lambda): after each downsampling the tokens are
  modulated as x * softplus(W_i [lambda, 1 - lambda]) + B_i [lambda, 1 - lambda], with the frozen linear maps W_i,
  B_i learned in SOLIDER's pre-training; lambda picks how much semantic (vs appearance) information the features
  keep (SOLIDER-REID: 0.2). A negative value builds no modulation. The last stage's modulation changes nothing
  SOLIDER outputs, so it is not built.

``forward`` returns the final stage's map after ``norm3`` (B, C, H, W); the head's average pooling gives
SOLIDER's global feature (1024-d for Swin-B).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.errors import CheckpointError, ConfigError
from .pretrained import imagenet_state_dict, load_backbone_weights
from .registry import BACKBONE_REGISTRY
from .vit import DropPath

SOLIDER_URL = "https://github.com/tinyvision/SOLIDER"  # the pre-trained Swin files are linked from its README


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) map at the bottom and right to multiples of ``multiple``."""
    h, w = x.shape[1], x.shape[2]
    return F.pad(x, (0, 0, 0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple))


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, size x size, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // size) * (w // size), size * size, c)


def _unwindows(x: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    b, c = x.shape[0], x.shape[-1]
    x = x.reshape(b, h // size, w // size, size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def relative_position_index(size: int) -> torch.Tensor:
    """(N, N) index into the (2 size - 1)^2 bias table of the offset between two positions of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]) + size - 1
    return rel[0] * (2 * size - 1) + rel[1]


class WindowMSA(nn.Module):
    """Multi-head attention inside windows with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x (B, nW, N, C); mask (nW, N, N) additive, or None."""
        b, nw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, nw, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, self.heads).permute(2, 0, 1)  # (heads, N, N)
        bias = bias if mask is None else bias + mask[:, None]  # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


def shift_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, N, N): -100 between positions that the cyclic shift brought from different regions of the map."""
    region = torch.zeros(1, h, w, 1, device=device)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(cuts):
        for j, cols in enumerate(cuts):
            region[:, rows, cols, :] = i * 3 + j
    ids = _windows(region, window)[0, :, :, 0]  # (nW, N)
    return (ids[:, None, :] != ids[:, :, None]).float() * -100.0


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, drop_path_rate: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.w_msa = WindowMSA(dim, heads, window)
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU()), nn.Linear(dim * 4, dim))

    def _attention(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        h, w = hw
        x = _pad_to(x.reshape(b, h, w, c), self.window)
        hp, wp = x.shape[1], x.shape[2]
        mask = None
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(hp, wp, self.window, self.shift, x.device).to(x.dtype)
        x = _unwindows(self.attn.w_msa(_windows(x, self.window), mask), self.window, hp, wp)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x[:, :h, :w].reshape(b, h * w, c)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self._attention(self.norm1(x), hw))
        return x + self.drop_path(self.ffn.layers(self.norm2(x)))


class PatchMerging(nn.Module):
    """2 x 2 neighbourhoods -> one token: concatenated in nn.Unfold's order (channel-major), LayerNorm, linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> Tuple[torch.Tensor, Tuple[int, int]]:
        b, _, c = x.shape
        x = _pad_to(x.reshape(b, hw[0], hw[1], c), 2)
        h, w = x.shape[1] // 2, x.shape[2] // 2
        x = x.reshape(b, h, 2, w, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h * w, 4 * c)
        return self.reduction(self.norm(x)), (h, w)


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, rates: Sequence[float], downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, window // 2 if i % 2 else 0, rates[i])
                                    for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None


class SwinTransformer(nn.Module):
    """Swin with SOLIDER's semantic modulation; ``backbone``/``base`` weights of SOLIDER files map name for name."""

    def __init__(self, dim: int = 128, depths: Sequence[int] = (2, 2, 18, 2), heads: Sequence[int] = (4, 8, 16, 32),
                 window: int = 7, drop_path_rate: float = 0.1, semantic_weight: float = 0.2) -> None:
        super().__init__()
        if len(depths) != len(heads) or len(depths) < 2:
            raise ConfigError(f"MODEL.SWIN.DEPTHS and NUM_HEADS must list the same number (>= 2) of stages, got "
                              f"{list(depths)} and {list(heads)}.")
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.patch_embed.norm = nn.LayerNorm(dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        widths = [dim * 2 ** i for i in range(len(depths))]
        self.stages = nn.ModuleList(
            Stage(widths[i], d, heads[i], window, rates[sum(depths[:i]):sum(depths[:i + 1])], i < len(depths) - 1)
            for i, d in enumerate(depths))
        last = len(depths) - 1
        setattr(self, f"norm{last}", nn.LayerNorm(widths[-1]))
        self.final_norm = f"norm{last}"
        self.semantic_weight = semantic_weight
        if semantic_weight >= 0:  # frozen, as in SOLIDER: learned in pre-training only
            self.semantic_embed_w = nn.ModuleList(nn.Linear(2, widths[i + 1]) for i in range(last))
            self.semantic_embed_b = nn.ModuleList(nn.Linear(2, widths[i + 1]) for i in range(last))
            for m in list(self.semantic_embed_w) + list(self.semantic_embed_b):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
                m.requires_grad_(False)
        self.out_channels = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.weight.requires_grad:
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _pad_to(images.permute(0, 2, 3, 1), 4).permute(0, 3, 1, 2)
        x = self.patch_embed.projection(x)
        hw = (x.shape[2], x.shape[3])
        x = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        lam = torch.tensor([[self.semantic_weight, 1.0 - self.semantic_weight]], dtype=x.dtype, device=x.device)
        for i, stage in enumerate(self.stages):
            for blk in stage.blocks:
                x = blk(x, hw)
            if stage.downsample is None:
                break
            x, hw = stage.downsample(x, hw)
            if self.semantic_weight >= 0:
                scale = F.softplus(self.semantic_embed_w[i](lam.to(x.dtype)))
                x = x * scale[:, None] + self.semantic_embed_b[i](lam.to(x.dtype))[:, None]
        x = getattr(self, self.final_norm)(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, hw[0], hw[1])


def solider_backbone_state(state: dict, source: str) -> dict:
    """The Swin tensors of a SOLIDER pre-training file (``teacher`` / ``backbone.*``), without the parts SOLIDER
    never uses for its output (norm0-2, the last semantic modulation, relative position indices)."""
    state = state.get("teacher", state) if isinstance(state, dict) else state
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")} or dict(state)
    backbone = {k[len("module."):] if k.startswith("module.") else k: v for k, v in backbone.items()}
    if "patch_embed.projection.weight" not in backbone:
        raise CheckpointError(f"{source} holds no SOLIDER Swin weights (no backbone.patch_embed.projection.weight); "
                              f"use a checkpoint from {SOLIDER_URL}.")
    return backbone


def load_solider(model: SwinTransformer, path: str) -> None:
    """Initialise from a SOLIDER pre-trained Swin (the ``checkpoint_tea.pth`` its README links)."""
    if not path:
        raise CheckpointError(f"SOLIDER initialisation needs its pre-trained Swin file (linked from {SOLIDER_URL}); "
                              f"set MODEL.BACKBONE.PRETRAIN_PATH to it.")
    raw = imagenet_state_dict(path, SOLIDER_URL, "SOLIDER Swin")
    state = solider_backbone_state(raw, repr(path))
    last = len(model.stages) - 1
    unused = tuple(f"norm{i}." for i in range(last)) + (f"semantic_embed_w.{last}.", f"semantic_embed_b.{last}.")
    state = {k: v for k, v in state.items() if not k.startswith(unused) and "relative_position_index" not in k}
    load_backbone_weights(model, state, "Swin", "SOLIDER weights need the MODEL.SWIN sizes of the file (Swin-T: "
                          "EMBED_DIM 96, DEPTHS [2, 2, 6, 2]; Swin-S: 96, [2, 2, 18, 2]; Swin-B: 128, [2, 2, 18, 2]).")


@BACKBONE_REGISTRY.register("swin")
def build_swin_backbone(cfg) -> SwinTransformer:
    """Swin sized by ``MODEL.SWIN`` (default Swin-B), SOLIDER-initialised on request."""
    s = cfg.MODEL.SWIN
    if s.WINDOW < 2 or s.EMBED_DIM < 1 or not 0.0 <= s.DROP_PATH < 1.0:
        raise ConfigError("MODEL.SWIN.WINDOW must be >= 2, EMBED_DIM >= 1 and DROP_PATH in [0, 1).")
    model = SwinTransformer(s.EMBED_DIM, list(s.DEPTHS), list(s.NUM_HEADS), s.WINDOW, s.DROP_PATH,
                            s.SEMANTIC_WEIGHT)
    if cfg.MODEL.BACKBONE.PRETRAIN:
        load_solider(model, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    return model


__all__: List[str] = ["SwinTransformer", "build_swin_backbone", "load_solider", "solider_backbone_state"]
