"""CUB-200-2011 (Wah et al. 2011) for deep metric learning: classes 1-100 train, 101-200 test (leave-one-out)."""
from __future__ import annotations

import os
from typing import Optional

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY
from .matfiles import require_file
from .metric_learning import RetrievalDataset, class_record, listed_image, numbered_lines, split_classes

CUB_LAYOUT = """\
  CUB_200_2011/                 the release's folder
    images.txt                  "<image id> <path>" per line, e.g. "1 001.Black_footed_Albatross/Black_..._796111.jpg"
    image_class_labels.txt      "<image id> <class 1..200>" per line
    images/                     001.Black_footed_Albatross/ ... 200.Common_Yellowthroat/"""

FIRST_TEST_CLASS = 101  # Oh Song et al. 2016: the first 100 classes train, the other 100 test
NUM_CLASSES = 200


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class CUB200(RetrievalDataset):
    """11,788 bird images of 200 species: train 5,864 images of classes 1-100, test 5,924 of classes 101-200.

    Test pids are the class numbers (101-200); the class folder name (``001.Black_footed_Albatross``) is kept as
    the identity name. ``CUB200:PATH`` reads the folder PATH (absolute or relative to DATASETS.ROOT).
    """

    FOLDERS = ("CUB_200_2011",)
    MARKERS = ("images.txt", "image_class_labels.txt")
    LAYOUT = CUB_LAYOUT

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        paths = numbered_lines(require_file(folder / "images.txt", self.LAYOUT), "1 001.Albatross/a.jpg")
        labels_file = require_file(folder / "image_class_labels.txt", self.LAYOUT)
        labels = numbered_lines(labels_file, "1 1")
        unlabelled = sorted(set(paths) - set(labels))
        if unlabelled:
            raise DatasetError(f"{labels_file}: no class for image id {unlabelled[0]} ({paths[unlabelled[0]][1]}); "
                               f"expected one line per image of images.txt ({len(unlabelled)} missing).")
        base = os.path.realpath(folder / "images")
        records = []
        for image_id, (label, where) in sorted(labels.items()):
            if image_id not in paths:
                raise DatasetError(f"{where}: image id {image_id} is not in {folder / 'images.txt'}.")
            class_id = _class_number(label, where)
            path_rel, path_where = paths[image_id]
            path = listed_image(path_rel, base, path_where, "the images/ folder")
            records.append(class_record(path, class_id, path_rel.split("/")[0]))
        train, test = split_classes(records, FIRST_TEST_CLASS)
        super().__init__(type(self).__name__, str(folder), train, test)


def _class_number(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= NUM_CLASSES):
        raise DatasetError(f"{where}: class {text[:50]!r} is not a class number 1..{NUM_CLASSES}.")
    return int(text)
