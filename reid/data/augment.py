"""The training augmentation, defined once: AutoAugment, resize, flip, pad + crop, normalise, random erasing.

``TrainAugmentation`` describes it (built from ``cfg.INPUT``) and ``draw`` takes every random parameter of a batch
of images from one explicit ``torch.Generator`` into an ``AugmentParams`` record; no global random state is read.
Two appliers turn the same parameters into the same images: ``Augmenter.images`` one image at a time with slices
(the workers path, after PIL decodes and resizes) and ``Augmenter.batch`` a whole uint8 batch with gathers (the gpu
path, on the device). To add an augmentation: a field of ``TrainAugmentation``, its draw in ``draw`` and its two
appliers, side by side below.

The distributions are torchvision's ``RandomHorizontalFlip``, ``Pad`` + ``RandomCrop`` and ``RandomErasing`` with
random values, i.e. Zhong et al. 2020's: erased area uniform in (0.02, 0.33) of the image, aspect ratio log-uniform
in (0.3, 3.3), the first of ten tries that fits, N(0, 1) values (tests/data/test_augment.py checks them against
torchvision itself), or the mean pixel (``INPUT.REA.FILL mean``, fast-reid's value). Both appliers draw the erased
values from a generator seeded by the record, one image at a time or for the whole batch at once, so they agree
on every pixel but those. fast-reid's recipes add AutoAugment (``reid.data.autoaugment``) to the decoded image
before the resize, on the workers path only; fast-reid crops before it flips, which is the same distribution (a
mirrored crop at left offset l is the crop at 2 x padding - l of the mirrored image;
tests/engine/test_recipe_parity.py).

Why no library (benchmarks/augment_bench.py, one core of the shared 2-core development CPU, best of 20): torchvision's
transforms.v2 draw one set of parameters per call, shared by a whole batch; kornia.augmentation 0.9 draws per
sample but only from the global RNG (no generator argument), and its RandomErasing fills a constant, draws the
aspect ratio uniformly on either side of 1 and clamps the rectangle instead of retrying, all for no gain in speed
(0.8 ms an image at batch 64, about what our batched applier takes while also normalising and drawing N(0, 1)
values). Why two appliers: the batched one costs 0.8 ms an image at batch size 1 as at 64 (it gathers every pixel
and draws N(0, 1) values for all of them, not only the erased ones), the sliced one 0.16-0.22 ms (torchvision's
per-image transforms: 0.57 ms), on top of about 0.6 ms of decoding and resizing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from PIL import Image
from yacs.config import CfgNode

from ..registry import ERASE_FILL_REGISTRY
from . import autoaugment
from .transforms import train_interpolation


@ERASE_FILL_REGISTRY.register("random")
def random_fill(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
    """N(0, 1) values of the normalised image (Zhong et al. 2020; torchvision's ``value="random"``)."""
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


@ERASE_FILL_REGISTRY.register("mean")
def mean_fill(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
    """The mean pixel, 0 once normalised (fast-reid's INPUT.REA.VALUE, the ImageNet mean)."""
    return torch.zeros(tuple(shape), dtype=dtype, device=device)


@dataclass
class AugmentParams:
    """The random parameters of ``n`` images: tensors on one device, and the seed of the erased pixels' values."""

    flip: torch.Tensor  # (n,) bool: mirror the image horizontally
    crop: torch.Tensor  # (n, 2) int64: top, left of the crop window in the zero-padded image, 0 .. 2 * padding
    erase: torch.Tensor  # (n, 4) int64: top, left, height, width of the erased rectangle; height 0 = none
    noise_seed: int  # seeds the generator of the N(0, 1) values written into the erased rectangles
    autoaug: Optional[torch.Tensor] = None  # (n, autoaugment.COLUMNS) int64 AutoAugment rows; None: not configured
    # (n, attempts + 1, 2) float64 uniforms of the random-resized crop (None without INPUT.CROP.RESIZE): per try
    # (area, log aspect), then (top, left); the window depends on each image's size (``resized_crop_boxes``), so it
    # is found when the image is there. Stays on the CPU.
    resized_crop: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.flip.shape[0]

    def to(self, device: torch.device) -> "AugmentParams":
        autoaug = self.autoaug.to(device) if self.autoaug is not None else None
        return AugmentParams(self.flip.to(device), self.crop.to(device), self.erase.to(device), self.noise_seed,
                             autoaug, self.resized_crop)


@dataclass(frozen=True)
class TrainAugmentation:
    """What the training augmentation does and how its random parameters are distributed."""

    size: Tuple[int, int]  # (height, width) of training images: INPUT.SIZE_TRAIN
    interpolation: str  # resize filter: INPUT.INTERPOLATION_TRAIN, else INPUT.INTERPOLATION (train_interpolation)
    flip_prob: float  # INPUT.FLIP_PROB
    padding: int  # INPUT.PADDING: zeros on every side, then a crop back to ``size`` (0: neither)
    erase_prob: float  # INPUT.REA.PROB, or 0 without INPUT.REA.ENABLED
    mean: Tuple[float, float, float]  # INPUT.PIXEL_MEAN (RGB, in [0, 1])
    std: Tuple[float, float, float]  # INPUT.PIXEL_STD
    erase_scale: Tuple[float, float] = (0.02, 0.33)  # erased share of the image (Zhong et al. 2020)
    erase_ratio: Tuple[float, float] = (0.3, 3.3)  # height / width of the erased rectangle, log-uniform (same)
    erase_attempts: int = 10  # tries to fit a rectangle before giving up on erasing the image (same)
    erase_fill: str = "random"  # INPUT.REA.FILL: what the erased rectangle holds
    autoaug_prob: float = 0.0  # INPUT.AUTOAUG.PROB, or 0 without INPUT.AUTOAUG.ENABLED
    # Random-resized crop (INPUT.CROP; torchvision's RandomResizedCrop, the metric learning papers' training crop):
    # images come resized to ``crop_resize`` (empty: no such crop), a window of ``crop_scale`` of the area and
    # ``crop_ratio`` width / height (log-uniform) is resized to ``size``, before the flip.
    crop_resize: Tuple[int, ...] = ()
    crop_scale: Tuple[float, float] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    crop_attempts: int = 10  # tries before the central crop (torchvision)

    @classmethod
    def from_cfg(cls, cfg: CfgNode) -> "TrainAugmentation":
        inp = cfg.INPUT
        return cls(tuple(inp.SIZE_TRAIN), train_interpolation(cfg), float(inp.FLIP_PROB), int(inp.PADDING),
                   float(inp.REA.PROB) if inp.REA.ENABLED else 0.0, tuple(inp.PIXEL_MEAN), tuple(inp.PIXEL_STD),
                   erase_fill=inp.REA.FILL,
                   autoaug_prob=float(inp.AUTOAUG.PROB) if inp.AUTOAUG.ENABLED else 0.0,
                   crop_resize=tuple(inp.CROP.RESIZE), crop_scale=tuple(inp.CROP.SCALE),
                   crop_ratio=tuple(inp.CROP.RATIO))

    def draw(self, n: int, generator: torch.Generator) -> AugmentParams:
        """The parameters of ``n`` images, drawn on the CPU from ``generator`` alone (AutoAugment's and the
        random-resized crop's last, and only when configured, so the other draws do not depend on them)."""
        flip = torch.rand(n, generator=generator) < self.flip_prob
        crop = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)  # RandomCrop of the padded image
        erase = self._draw_erase(n, generator)
        noise_seed = int(torch.randint(0, 2**62, (), generator=generator))
        autoaug = autoaugment.draw(n, self.autoaug_prob, generator) if self.autoaug_prob > 0 else None
        resized_crop = None
        if self.crop_resize:
            resized_crop = torch.rand((n, self.crop_attempts + 1, 2), generator=generator, dtype=torch.float64)
        return AugmentParams(flip, crop, erase, noise_seed, autoaug, resized_crop)

    def before_resize(self, image: Image.Image, params: AugmentParams, i: int) -> Image.Image:
        """Image ``i`` of a batch as decoded -> what the resize gets: AutoAugment applied when configured."""
        return image if params.autoaug is None else autoaugment.apply(image, params.autoaug[i].tolist())

    def resized_crop_boxes(self, uniforms: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """(n, 4) int64 windows (top, left, height, width) of images of ``sizes`` (n, 2: height, width) from their
        drawn ``uniforms``, as torchvision's ``RandomResizedCrop.get_params``: of ``crop_attempts`` (area, aspect)
        tries the first that fits the image, placed uniformly; when none fits, the central crop of the largest
        window with an aspect within ``crop_ratio``. Float64 rounds as its Python floats."""
        h, w = sizes[:, :1].to(torch.float64), sizes[:, 1:].to(torch.float64)
        tries, position = uniforms[:, :-1], uniforms[:, -1]
        area = h * w * (tries[..., 0] * (self.crop_scale[1] - self.crop_scale[0]) + self.crop_scale[0])
        low, high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        aspect = torch.exp(tries[..., 1] * (high - low) + low)
        cw, ch = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = fits.long().argmax(1, keepdim=True)
        ch, cw = ch.gather(1, first)[:, 0], cw.gather(1, first)[:, 0]
        h, w = h[:, 0], w[:, 0]
        top = torch.floor(position[:, 0] * (h - ch + 1))  # randint(0, h - ch + 1)
        left = torch.floor(position[:, 1] * (w - cw + 1))
        # The fallback: the whole image, narrowed to the nearest allowed aspect ratio, centred.
        image_ratio = w / h
        fh = torch.where(image_ratio < self.crop_ratio[0], torch.round(w / self.crop_ratio[0]), h)
        fw = torch.where(image_ratio > self.crop_ratio[1], torch.round(h * self.crop_ratio[1]), w)
        fitted = fits.any(1)
        box = torch.stack([torch.where(fitted, top, torch.div(h - fh, 2, rounding_mode="floor")),
                           torch.where(fitted, left, torch.div(w - fw, 2, rounding_mode="floor")),
                           torch.where(fitted, ch, fh), torch.where(fitted, cw, fw)], 1)
        return box.long()

    def _draw_erase(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """RandomErasing's rectangles for ``n`` images at once: of ``erase_attempts`` (area, aspect) draws the first
        that fits is used; when none fits the image is not erased. Float64 rounds as torchvision's Python floats."""
        h, w = self.size

        def uniform(shape: Tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
            return torch.rand(shape, generator=generator, dtype=torch.float64) * (hi - lo) + lo

        tries = (n, self.erase_attempts)
        area = h * w * uniform(tries, *self.erase_scale)
        aspect = torch.exp(uniform(tries, math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])))
        eh, ew = torch.round(torch.sqrt(area * aspect)).long(), torch.round(torch.sqrt(area / aspect)).long()
        fits = (eh < h) & (ew < w)
        first = fits.long().argmax(1, keepdim=True)  # the first fitting try (0 when none fits: then not erased)
        eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]
        erased = (torch.rand(n, generator=generator, dtype=torch.float64) < self.erase_prob) & fits.any(1)
        top = (torch.rand(n, generator=generator, dtype=torch.float64) * (h - eh + 1)).long()  # uniform 0..h - eh
        left = (torch.rand(n, generator=generator, dtype=torch.float64) * (w - ew + 1)).long()
        return torch.stack([top, left, eh, ew], 1) * erased[:, None]


# -- flip, then zero padding and a crop back to the size ---------------------------------------------------------
def flip_crop_image(x: torch.Tensor, flip: bool, top: int, left: int, padding: int) -> torch.Tensor:
    """One (3, H, W) image: mirrored, padded, then the H x W window at (top, left) of the padded image."""
    if flip:
        x = x.flip(-1)
    if padding:
        h, w = x.shape[-2:]
        x = F.pad(x, (padding,) * 4)[:, top:top + h, left:left + w]
    return x


def flip_crop_batch(x: torch.Tensor, flip: torch.Tensor, crop: torch.Tensor, padding: int) -> torch.Tensor:
    """A (n, 3, H, W) batch in one gather from the padded batch: output pixel (r, c) reads padded row r + top and
    column c + left, counted from the right for mirrored images (padding a mirrored image = mirroring a padded one)."""
    n, c, h, w = x.shape
    if padding:
        x = F.pad(x, (padding,) * 4)
    wp = w + 2 * padding
    rows = crop[:, :1] + torch.arange(h, device=x.device)
    cols = crop[:, 1:] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], wp - 1 - cols, cols)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


# -- random-resized crop (before the flip; uint8 pixel levels in, float pixel levels out) ------------------------
def resized_crop_image(x: torch.Tensor, box: Sequence[int], size: Tuple[int, int], interpolation: str) -> torch.Tensor:
    """The window ``box`` (top, left, height, width) of one (3, H, W) image resized to ``size`` with torch's
    antialiased filter of PIL's name, rounded to uint8 levels as PIL's output is (float). Both appliers use it."""
    top, left, h, w = box
    window = x[None, :, top:top + h, left:left + w].float()
    return F.interpolate(window, size=size, mode=interpolation, align_corners=False,
                         antialias=True).clamp_(0, 255).round_()[0]


# -- random erasing (of the normalised image, as torchvision) ----------------------------------------------------
def erase_image(x: torch.Tensor, box: Sequence[int], noise: torch.Generator, fill: str = "random") -> torch.Tensor:
    """One normalised (3, H, W) image, in place: ``fill`` values (INPUT.REA.FILL) in the rectangle (top, left,
    height, width)."""
    top, left, h, w = box
    if h:
        x[:, top:top + h, left:left + w] = ERASE_FILL_REGISTRY.get(fill)((x.shape[0], h, w), noise, x.dtype, x.device)
    return x


def erase_batch(x: torch.Tensor, boxes: torch.Tensor, noise: torch.Generator, fill: str = "random") -> torch.Tensor:
    """A normalised (n, 3, H, W) batch: ``fill`` values inside each image's rectangle, as one ``where``."""
    rows, cols = torch.arange(x.shape[2], device=x.device), torch.arange(x.shape[3], device=x.device)
    top, left, h, w = (v[:, None] for v in boxes.unbind(1))
    inside = ((rows >= top) & (rows < top + h))[:, :, None] & ((cols >= left) & (cols < left + w))[:, None, :]
    return torch.where(inside[:, None], ERASE_FILL_REGISTRY.get(fill)(x.shape, noise, x.dtype, x.device), x)


# -- the two appliers --------------------------------------------------------------------------------------------
class Augmenter:
    """Applies drawn ``AugmentParams`` to uint8 RGB images, giving normalised float32 ones; holds the normalisation
    constants on ``device``."""

    def __init__(self, augmentation: TrainAugmentation, device: torch.device = torch.device("cpu")) -> None:
        self.aug = augmentation
        mean = torch.tensor(augmentation.mean, dtype=torch.float32, device=device).view(3, 1, 1)
        std = torch.tensor(augmentation.std, dtype=torch.float32, device=device).view(3, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std  # (x / 255 - mean) / std as one multiply-add

    def images(self, images: Sequence[torch.Tensor], params: AugmentParams) -> torch.Tensor:
        """uint8 (3, H, W) CPU images already at ``size`` (resized by PIL; with the random-resized crop at
        ``crop_resize``) -> float (n, 3, H, W), image by image."""
        out = torch.empty((len(images), 3, *self.aug.size))
        noise = torch.Generator().manual_seed(params.noise_seed)
        if params.resized_crop is not None:  # images of any size (INPUT.CROP.RESIZE [s] keeps their aspect)
            sizes = torch.tensor([tuple(x.shape[-2:]) for x in images])
            boxes = self.aug.resized_crop_boxes(params.resized_crop, sizes).tolist()
            images = [resized_crop_image(x, b, self.aug.size, self.aug.interpolation) for x, b in zip(images, boxes)]
        rows = zip(images, params.flip.tolist(), params.crop.tolist(), params.erase.tolist())
        for i, (x, flip, (top, left), box) in enumerate(rows):
            y = out[i]
            y.copy_(flip_crop_image(x, flip, top, left, self.aug.padding)).mul_(self.scale).add_(self.shift)
            erase_image(y, box, noise, self.aug.erase_fill)
        return out

    def batch(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """A uint8 (n, 3, h, w) batch and its parameters, on one device -> float (n, 3, H, W). A batch of another size
        is first resized with torch's antialiased filter of the same name as PIL's, rounded to uint8 levels as
        PIL's output is (with the random-resized crop: each image's window is, as ``images`` does)."""
        x = images
        if params.resized_crop is not None:  # one window per image, found on the host (no device sync)
            sizes = torch.tensor(x.shape[-2:]).expand(x.shape[0], 2)
            boxes = self.aug.resized_crop_boxes(params.resized_crop, sizes).tolist()
            x = torch.stack([resized_crop_image(img, b, self.aug.size, self.aug.interpolation)
                             for img, b in zip(x, boxes)])
        elif tuple(x.shape[-2:]) != self.aug.size:
            x = F.interpolate(x.float(), size=self.aug.size, mode=self.aug.interpolation, align_corners=False,
                              antialias=True).clamp_(0, 255).round_()
        x = flip_crop_batch(x, params.flip, params.crop, self.aug.padding)
        x = x.float().mul_(self.scale).add_(self.shift)
        if self.aug.erase_prob > 0:
            x = erase_batch(x, params.erase, torch.Generator(device=x.device).manual_seed(params.noise_seed),
                            self.aug.erase_fill)
        return x
