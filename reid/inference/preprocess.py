"""The one test-time preprocessing of ``ReIDModel``: an image, or a box of a frame, resized to INPUT.SIZE_TEST
(INPUT.INTERPOLATION; with INPUT.CROP.RESIZE resized to that, then the centre crop) as uint8 pixels, then scaled
and normalised with INPUT.PIXEL_MEAN / PIXEL_STD a batch at a time on the model's device.

``embed`` resizes in PIL with the evaluation's resize (``reid.data.transforms.build_test_resize``), in decoding
threads;
``embed_boxes`` on a GPU resizes crops of a frame already there. Both hand their uint8 batches to the same
``normalize``: ToTensor's division by 255 and then Normalize, the operations of the evaluation's test transform
(``build_test_transform``) in its order, so ``embed`` computes the embeddings ``tools/test.py`` ranks with, and the
two paths differ only in where the resize runs.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from yacs.config import CfgNode

from ..data.transforms import build_test_resize
from ..registry import INTERPOLATION_REGISTRY
from .images import to_pil


class Preprocess:
    """Images -> (3, H, W) uint8 pixels at INPUT.SIZE_TEST (``image`` in PIL, ``crop`` on a frame tensor), and
    uint8 batches -> normalised float32 batches (``normalize``)."""

    def __init__(self, cfg: CfgNode) -> None:
        self.size = [int(s) for s in cfg.INPUT.SIZE_TEST]
        self.interpolation = INTERPOLATION_REGISTRY.get(cfg.INPUT.INTERPOLATION)
        self.resize = build_test_resize(cfg)
        self.crop_resize = [int(s) for s in cfg.INPUT.CROP.RESIZE]  # resized to it, then the centre crop
        self.mean = [float(v) for v in cfg.INPUT.PIXEL_MEAN]
        self.std = [float(v) for v in cfg.INPUT.PIXEL_STD]

    def image(self, item: Any) -> torch.Tensor:
        """One image of any kind ``ReIDModel.embed`` takes, resized in PIL: (3, H, W) uint8 on the CPU."""
        return torch.from_numpy(np.array(self.resize(to_pil(item)), dtype=np.uint8)).permute(2, 0, 1)

    def crop(self, pixels: torch.Tensor, box: Sequence[int]) -> torch.Tensor:
        """The whole-pixel ``box`` (x1, y1, x2, y2, ends exclusive) of a (3, H, W) uint8 frame, resized where the
        frame is: torchvision's antialiased uint8 resize, within a grey level of PIL's on smooth images (more at
        sharp edges and on pixel noise)."""
        x1, y1, x2, y2 = box
        window = pixels[:, y1:y2, x1:x2]
        if not self.crop_resize:
            return TF.resize(window, self.size, interpolation=self.interpolation, antialias=True)
        window = TF.resize(window, self.crop_resize, interpolation=self.interpolation, antialias=True)
        return TF.center_crop(window, self.size)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> float32 in [0, 1] normalised with PIXEL_MEAN / PIXEL_STD, on the batch's device."""
        return TF.normalize(batch.to(torch.float32).div(255), self.mean, self.std, inplace=True)
