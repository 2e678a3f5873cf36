"""In-shop Clothes Retrieval (DeepFashion, Liu et al. 2016): list_eval_partition.txt gives train, query, gallery."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, SPLITS, identity_ids, text_lines
from .metric_learning import RetrievalDataset, class_record, listed_image

INSHOP_LAYOUT = """\
  InShop/                       (or In-shop/, "In-shop Clothes Retrieval Benchmark/")
    list_eval_partition.txt     (or Eval/list_eval_partition.txt) the image count, the header
                                "image_name item_id evaluation_status", then e.g.
                                "img/WOMEN/Blouses_Shirts/id_00000001/02_1_front.jpg id_00000001 train"
    img/                        (or Img/img/) the images, paths in the list relative to the folder holding img/"""

LIST = "list_eval_partition.txt"


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class InShop(RetrievalDataset):
    """52,712 clothes images of 7,982 items: train 25,882 images of 3,997 items, query 14,218 and gallery 12,612
    of the other 3,985. Items (``id_00000001``) are numbered in sorted order, train and test separately, and kept
    as identity names. ``InShop:PATH`` reads the folder PATH (absolute or relative to DATASETS.ROOT)."""

    FOLDERS = ("InShop", "In-shop", "In-shop Clothes Retrieval Benchmark")
    MARKERS = (LIST, "img")
    LAYOUT = INSHOP_LAYOUT
    LEAVE_ONE_OUT = False

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        file = next((f for f in (folder / LIST, folder / "Eval" / LIST) if f.is_file()), None)
        if file is None:
            raise DatasetError(f"Missing file {str(folder / LIST)!r} (or Eval/{LIST}). Expected layout:\n"
                               f"{self.LAYOUT}\n(see datasets/README.md).")
        images = folder if (folder / "img").is_dir() or not (folder / "Img").is_dir() else folder / "Img"
        rows = self._rows(file, os.path.realpath(images))
        train_ids = identity_ids(item for _, item in rows["train"])
        test_ids = identity_ids(item for split in ("query", "gallery") for _, item in rows[split])
        records = {split: [class_record(path, (train_ids if split == "train" else test_ids)[item], item)
                           for path, item in rows[split]] for split in SPLITS}
        # Train pids are already 0..N-1 in item order, so the relabelling of RetrievalDataset keeps them.
        super().__init__(type(self).__name__, str(folder), records["train"], records["query"], records["gallery"])

    @staticmethod
    def _rows(file: Path, base: str) -> Dict[str, List[tuple]]:
        """(path, item id) per split; the count and header lines are skipped, every other line is checked."""
        rows: Dict[str, List[tuple]] = {split: [] for split in SPLITS}
        hint = "expected lines '<image path> <item id> <train|query|gallery>'"
        for i, (where, line) in enumerate(text_lines(file, hint)):
            parts = line.split()
            if (i == 0 and len(parts) == 1 and parts[0].isdigit()) or (i <= 1 and parts[:1] == ["image_name"]):
                continue
            if len(parts) != 3 or parts[2] not in SPLITS:
                raise DatasetError(f"{where}: {hint} (e.g. 'img/WOMEN/Dresses/id_00000002/02_1_front.jpg "
                                   f"id_00000002 train'), got {line.strip()[:200]!r}.")
            rel, item, split = parts
            rows[split].append((listed_image(rel, base, where, "the folder holding img/"), item))
        return rows
