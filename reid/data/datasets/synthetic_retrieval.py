"""``SyntheticRetrieval``: the synthetic pedestrians as a deep metric learning benchmark, drawn on first use.

Each identity is a class; its ``DATASETS.SYNTHETIC.IMAGES_PER_ID`` images come from random cameras (their own light,
background, viewpoint), so a class must be recognised across cameras. The first ``NUM_TRAIN_IDS`` classes train, the
other ``NUM_TEST_IDS`` are tested leave-one-out, as CUB / Cars / SOP. The files are written in the Stanford Online
Products layout and read by the SOP parser; generation is deterministic and atomic as the re-ID synthetic set's
(``ensure_synthetic``); NUM_DISTRACTORS and NUM_JUNK do not apply.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image
from yacs.config import CfgNode

from .base import DATASET_REGISTRY
from .pedestrians import render, sample_camera
from .sop import HEADER, SOP
from .synthetic import PARAMS_FILE, draw_identities, ensure_synthetic

FOLDER = "synthetic_retrieval"
VARIANT = {"LAYOUT": "retrieval", "RETRIEVAL_VERSION": 1}  # bump the version when drawing changes
LAYOUT = """\
  synthetic_retrieval/          generated automatically from DATASETS.SYNTHETIC.* (the SOP layout)
    Ebay_train.txt  Ebay_test.txt   the classes' images, one class per identity
    00001/ ...                  the images, one folder per class
    generation.json             the parameters it was generated with"""


@DATASET_REGISTRY.register()
class SyntheticRetrieval(SOP):
    """Synthetic classes in the SOP layout under ``<DATASETS.ROOT>/synthetic_retrieval/``, regenerated when
    missing or stale; test pids are the class numbers after the training ones."""

    FOLDERS = (FOLDER,)
    MARKERS = ("Ebay_train.txt", PARAMS_FILE)
    LAYOUT = LAYOUT

    def __init__(self, root: str, cfg: CfgNode) -> None:
        ensure_synthetic(Path(root) / FOLDER, cfg.DATASETS.SYNTHETIC, draw=draw_classes, extra=VARIANT)
        super().__init__(root, cfg)


def draw_classes(folder: Path, params: Dict[str, object]) -> int:
    """Draw every class's images into ``folder`` and write the two lists; returns the number of images."""
    seed, size, difficulty = params["SEED"], tuple(params["IMAGE_SIZE"]), params["DIFFICULTY"]
    num_train, num_test = params["NUM_TRAIN_IDS"], params["NUM_TEST_IDS"]
    rng = np.random.default_rng([seed, 10])
    views = rng.permutation(3)
    cameras = [sample_camera(np.random.default_rng([seed, 11, c]), int(views[c % 3]), difficulty)
               for c in range(params["NUM_CAMERAS"])]
    lines: Dict[str, List[str]] = {"train": [f"{HEADER} class_id super_class_id path"],
                                   "test": [f"{HEADER} class_id super_class_id path"]}
    image_id = 0
    for c, ident in enumerate(draw_identities(rng, num_train + num_test, params["LOOKALIKE"], set()), start=1):
        (folder / f"{c:05d}").mkdir(parents=True)
        for k in range(params["IMAGES_PER_ID"]):
            image_id += 1
            camera = cameras[int(rng.integers(len(cameras)))]
            pixels = render(ident, camera, np.random.default_rng([seed, 12, image_id]), size, difficulty)
            rel = f"{c:05d}/{c:05d}_{k:03d}.jpg"
            Image.fromarray(pixels).save(folder / rel, quality=92)
            lines["train" if c <= num_train else "test"].append(f"{image_id} {c} 1 {rel}")
    for split, text in lines.items():
        (folder / f"Ebay_{split}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    return image_id
