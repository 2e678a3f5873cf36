"""Market-1501 (Zheng et al. 2015) and any data in its layout: identity and camera are read from file names."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ImageRecord, ReIDDataset, is_image_name, relabel, require_dir, require_nonempty

MARKET_LAYOUT = """\
  Market-1501-v15.09.15/        (or Market-1501/)
    bounding_box_train/         0002_c1s1_000451_03.jpg ...
    query/                      0001_c1s1_001051_00.jpg ...
    bounding_box_test/          0000_c1s1_000151_01.jpg, -1_c1s1_000401_03.jpg ..."""

_JUNK = -1
# Where each split lives in a Market-1501 folder; also what the writers of the layout create (Synthetic, mot2reid).
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def market_file_name(pid: int, camid: int, sequence: int, frame: int, box: int) -> str:
    """The Market-1501 name of an image, which ``Market1501.parse_name`` reads back as ``(pid, camid)``: pid 2,
    camid 0 (camera 1), sequence 1, frame 451, box 3 -> ``0002_c1s1_000451_03.jpg``; junk (pid -1) ``-1_c...``."""
    pid_text = f"{pid:04d}" if pid >= 0 else str(pid)
    return f"{pid_text}_c{camid + 1}s{sequence}_{frame:06d}_{box:02d}.jpg"


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class Market1501(ReIDDataset):
    """``bounding_box_train/``, ``query/``, ``bounding_box_test/``; file ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``.

    Train drops junk and relabels; query/gallery keep original ids, distractors (0) and, with
    ``DATASETS.KEEP_JUNK``, junk (-1), which the evaluator ignores. ``Market1501:PATH`` reads the folder PATH
    (absolute or relative to DATASETS.ROOT) instead of looking for the release's folder name, e.g. the output of
    ``reid-mot2reid``.
    """

    FOLDERS = ("Market-1501-v15.09.15", "Market-1501")
    LAYOUT = MARKET_LAYOUT
    # ASCII digits only; ids and cameras of at most 9 digits (any int() of them is cheap and exact).
    PATTERN = re.compile(r"(-?\d{1,9})_c(\d{1,9})s\d+_\d+_\d+\.jpg", re.ASCII)
    MARKERS = tuple(SPLIT_FOLDERS.values())

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        keep_junk = cfg.DATASETS.KEEP_JUNK
        train = relabel(r for r in self._parse_dir(folder / SPLIT_FOLDERS["train"]) if r.pid != _JUNK)
        query = [r for r in self._parse_dir(folder / SPLIT_FOLDERS["query"]) if keep_junk or r.pid != _JUNK]
        gallery = [r for r in self._parse_dir(folder / SPLIT_FOLDERS["gallery"]) if keep_junk or r.pid != _JUNK]
        require_nonempty(query, "query", folder / SPLIT_FOLDERS["query"])
        require_nonempty(gallery, "gallery", folder / SPLIT_FOLDERS["gallery"])
        super().__init__(type(self).__name__, str(folder), train, query, gallery)

    @classmethod
    def parse_name(cls, name: str) -> Optional[Tuple[int, int]]:
        """``(pid, 0-based camera)`` of a file name in the naming scheme, else None (never raises)."""
        match = cls.PATTERN.fullmatch(name)
        if match is None or int(match.group(2)) < 1:
            return None
        return int(match.group(1)), int(match.group(2)) - 1

    def _parse_dir(self, split_dir: Path) -> List[ImageRecord]:
        """Every image of ``split_dir`` as a record, in sorted file-name order; a misnamed image is an error."""
        require_dir(split_dir, self.LAYOUT)
        records, bad = [], []
        for name in sorted(os.listdir(split_dir)):
            if not is_image_name(name):
                continue
            parsed = self.parse_name(name)
            if parsed is None:
                bad.append(name)
                continue
            records.append(ImageRecord(str(split_dir / name), *parsed))
        if bad:
            shown = ", ".join(map(repr, bad[:5])) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
            raise DatasetError(f"{len(bad)} image(s) in {str(split_dir)!r} do not follow the Market-1501 naming "
                               f"<pid>_c<camera from 1>s<seq>_<frame>_<box>.jpg (regex {self.PATTERN.pattern}), "
                               f"e.g. 0002_c1s1_000451_03.jpg: {shown}. Rename or remove them.")
        return records
