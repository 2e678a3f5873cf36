"""Augmentation benchmark: reid.data.augment's two appliers against torchvision's per-image transforms.

Measured in the same run on Market-1501-sized JPEGs (128 x 64, resized to INPUT.SIZE_TRAIN 256 x 128), one thread:
  workers path: decode + PIL resize + augment per image, reid's ``TrainImages`` against torchvision's
                RandomHorizontalFlip, Pad + RandomCrop, ToTensor, Normalize, RandomErasing(value="random");
  appliers:     the per-image applier and torchvision's transforms on resized images; the batched applier at
                batch size 1 and --batch on --device (kornia.augmentation's per-sample flip, crop and constant
                erasing too, when importable: not the same distributions, for scale only).
Best of --repeat; one JSON line per measurement, in ms per image.

    python -m benchmarks.augment_bench
    python -m benchmarks.augment_bench --device cuda --batch 64
"""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Callable, Dict

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter
from torchvision.transforms.functional import pil_to_tensor

from reid.config import load_cfg
from reid.data import build_resize, read_image
from reid.data.augment import Augmenter, TrainAugmentation
from reid.data.build import TrainImages
from reid.data.datasets import ImageRecord

from .common import emit, load_average, timed_calls


def torchvision_augmentation(cfg) -> T.Compose:
    inp = cfg.INPUT
    return T.Compose([T.RandomHorizontalFlip(inp.FLIP_PROB), T.Pad(inp.PADDING), T.RandomCrop(list(inp.SIZE_TRAIN)),
                      T.ToTensor(), T.Normalize(list(inp.PIXEL_MEAN), list(inp.PIXEL_STD)),
                      T.RandomErasing(p=inp.REA.PROB, value="random")])


def best_ms(fn: Callable[[], object], images: int, repeat: int, device: torch.device) -> float:
    """Milliseconds per image of the best of ``repeat`` calls, after one untimed call."""
    fn()
    times, _ = timed_calls(fn, repeat, device)
    return 1e3 * min(times) / images


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.augment_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="device of the batched applier (cpu or cuda)")
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    parser.add_argument("--repeat", type=int, default=15, help="best of this many runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    cfg = load_cfg(None, [])
    aug = TrainAugmentation.from_cfg(cfg)
    resize = build_resize(cfg, cfg.INPUT.SIZE_TRAIN)
    n = args.batch
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = [os.path.join(tmp, f"{i}.jpg") for i in range(n)]
        for path in paths:  # smooth noise: decodes about as fast as a photo of the same size
            pixels = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2)).save(path, quality=95)
        reference = torchvision_augmentation(cfg)
        dataset = TrainImages([ImageRecord(p, 0, 0) for p in paths], resize, aug)
        keys = [(1, i) for i in range(n)]
        resized = [resize(read_image(p)) for p in paths]
        uint8 = [pil_to_tensor(im) for im in resized]
        params = aug.draw(n, torch.Generator().manual_seed(0))
        on_device = Augmenter(aug, device)
        batch, params_dev = torch.stack(uint8).to(device), params.to(device)
        singles = [aug.draw(1, torch.Generator().manual_seed(i)).to(device) for i in range(n)]
        cases: Dict[str, Callable[[], object]] = {
            "workers path (decode + resize + augment): torchvision":
                lambda: [reference(resize(read_image(p))) for p in paths],
            "workers path (decode + resize + augment): reid": lambda: dataset.__getitems__(keys),
            "augment resized images: torchvision": lambda: [reference(im) for im in resized],
            "augment resized images: reid per-image applier": lambda: Augmenter(aug).images(uint8, params),
            f"augment resized images: reid batched applier, batch 1, {device}":
                lambda: [on_device.batch(batch[i:i + 1], singles[i]) for i in range(n)],
            f"augment resized images: reid batched applier, batch {n}, {device}":
                lambda: on_device.batch(batch, params_dev),
        }
        try:
            import kornia.augmentation as K

            kornia = torch.nn.Sequential(K.RandomHorizontalFlip(p=cfg.INPUT.FLIP_PROB),
                                         K.RandomCrop(tuple(cfg.INPUT.SIZE_TRAIN), padding=cfg.INPUT.PADDING),
                                         K.RandomErasing(p=cfg.INPUT.REA.PROB)).to(device)
            floats = batch.float() / 255
            cases[f"augment resized images: kornia (constant erasing), batch {n}, {device}"] = lambda: kornia(floats)
        except ImportError:
            pass
        for what, fn in cases.items():
            ms = best_ms(fn, n, args.repeat, device)
            emit({"bench": "augment", "what": what, "ms_per_image": round(ms, 4), "device": str(device), "threads": 1,
                  "load_avg_1min": load_average()})


if __name__ == "__main__":
    main()
