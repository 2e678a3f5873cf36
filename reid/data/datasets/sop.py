"""Stanford Online Products (Oh Song et al. 2016): Ebay_train.txt trains, Ebay_test.txt is tested leave-one-out."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from yacs.config import CfgNode

from .base import DATASET_REGISTRY, ImageRecord
from .matfiles import require_file
from .metric_learning import RetrievalDataset, class_record, integer, listed_image, split_lines

SOP_LAYOUT = """\
  Stanford_Online_Products/     the release's folder
    Ebay_train.txt              "image_id class_id super_class_id path" header, then e.g.
                                "1 1 1 bicycle_final/111085122871_0.JPG" (59,551 images of 11,318 classes)
    Ebay_test.txt               idem (60,502 images of 11,316 classes)
    bicycle_final/ ... toaster_final/   the images, paths relative to this folder"""

HEADER = "image_id"


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class SOP(RetrievalDataset):
    """120,053 product images of 22,634 classes (12 super-classes); the lists fix the split (classes 1-11,318
    train, 11,319-22,634 test). Test pids are the lists' class ids. ``SOP:PATH`` reads the folder PATH (absolute
    or relative to DATASETS.ROOT)."""

    FOLDERS = ("Stanford_Online_Products",)
    MARKERS = ("Ebay_train.txt", "Ebay_test.txt")
    LAYOUT = SOP_LAYOUT

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        train, test = self.parse_list(folder, "Ebay_train.txt"), self.parse_list(folder, "Ebay_test.txt")
        super().__init__(type(self).__name__, str(folder), train, test)

    def parse_list(self, folder: Path, name: str) -> List[ImageRecord]:
        """Records of one list file; every line is checked (fields, class id, path inside the folder, image)."""
        file = require_file(folder / name, self.LAYOUT)
        base = os.path.realpath(folder)
        records = []
        for where, (_, class_id, _, rel) in split_lines(file, 4, "1 1 1 bicycle_final/111085122871_0.JPG", HEADER):
            records.append(class_record(listed_image(rel, base, where, "the dataset folder"),
                                        integer(class_id, where, "class_id")))
        return records
