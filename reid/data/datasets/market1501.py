"""Market-1501 (Zheng et al. 2015) and any data in its layout: identity and camera are read from file names."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Tuple

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ImageRecord, ReIDDataset, relabel, require_nonempty
from .scan import scan_images

MARKET_LAYOUT = """\
  Market-1501-v15.09.15/        (or Market-1501/, or torchreid's market1501/Market-1501-v15.09.15/)
    bounding_box_train/         0002_c1s1_000451_03.jpg ...
    query/                      0001_c1s1_001051_00.jpg ...
    bounding_box_test/          0000_c1s1_000151_01.jpg, -1_c1s1_000401_03.jpg ...
    images/                     optional, DATASETS.MARKET1501.DISTRACTORS_500K: the 500k distractors"""

_JUNK = -1
# Where each split lives in a Market-1501 folder; also what the writers of the layout create (Synthetic, mot2reid).
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def market_file_name(pid: int, camid: int, sequence: int, frame: int, box: int) -> str:
    """The Market-1501 name of an image, which ``Market1501.parse_name`` reads back as ``(pid, camid)``: pid 2,
    camid 0 (camera 1), sequence 1, frame 451, box 3 -> ``0002_c1s1_000451_03.jpg``; junk (pid -1) ``-1_c...``."""
    pid_text = f"{pid:04d}" if pid >= 0 else str(pid)
    return f"{pid_text}_c{camid + 1}s{sequence}_{frame:06d}_{box:02d}.jpg"


class NamedImageFolders(ReIDDataset):
    """Three folders of images (train, query, gallery) whose file names carry identity and camera: Market-1501's
    layout, shared by DukeMTMC-reID and VeRi-776. A subclass gives the folders (``SPLIT_DIRS``), the naming
    (``PATTERN`` with groups pid and camera from 1, and ``NAMING`` for errors) and where the release lives.

    Train drops junk (pid -1) and relabels; query/gallery keep original ids, distractors (0) and, with
    ``DATASETS.KEEP_JUNK``, junk, which the evaluator ignores. ``NAME:PATH`` reads the folder PATH (absolute or
    relative to DATASETS.ROOT) instead of looking for the release's folder name.
    """

    SPLIT_DIRS = SPLIT_FOLDERS
    MARKERS = tuple(SPLIT_FOLDERS.values())
    # ASCII digits only; ids and cameras of at most 9 digits (any int() of them is cheap and exact).
    PATTERN = re.compile(r"(-?\d{1,9})_c(\d{1,9})s\d+_\d+_\d+\.jpg", re.ASCII)
    NAMING = "the Market-1501 naming <pid>_c<camera from 1>s<seq>_<frame>_<box>.jpg, e.g. 0002_c1s1_000451_03.jpg"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        keep_junk = cfg.DATASETS.KEEP_JUNK
        train = relabel(r for r in self._parse_dir(folder / self.SPLIT_DIRS["train"]) if r.pid != _JUNK)
        query = [r for r in self._parse_dir(folder / self.SPLIT_DIRS["query"]) if keep_junk or r.pid != _JUNK]
        gallery = [r for r in self._parse_dir(folder / self.SPLIT_DIRS["gallery"]) if keep_junk or r.pid != _JUNK]
        require_nonempty(query, "query", folder / self.SPLIT_DIRS["query"])
        require_nonempty(gallery, "gallery", folder / self.SPLIT_DIRS["gallery"])
        gallery += [r for r in self.extra_gallery(folder, cfg) if keep_junk or r.pid != _JUNK]
        super().__init__(type(self).__name__, str(folder), train, query, gallery)

    def extra_gallery(self, folder: Path, cfg: CfgNode) -> List[ImageRecord]:
        """Gallery images beyond the gallery folder (Market-1501's 500k distractors); none by default."""
        return []

    @classmethod
    def parse_name(cls, name: str) -> Optional[Tuple[int, int]]:
        """``(pid, 0-based camera)`` of a file name in the naming scheme, else None (never raises)."""
        match = cls.PATTERN.fullmatch(name)
        if match is None or int(match.group(2)) < 1:
            return None
        return int(match.group(1)), int(match.group(2)) - 1

    def _parse_dir(self, split_dir: Path) -> List[ImageRecord]:
        """Every image of ``split_dir`` as a record, in sorted file-name order; a misnamed image is an error."""
        records = []
        for path, match in scan_images(split_dir, self.PATTERN, self.NAMING, self.LAYOUT):
            if int(match.group(2)) < 1:
                raise DatasetError(f"{str(path)!r}: camera {match.group(2)}, but cameras are numbered from 1 in "
                                   f"{self.NAMING}.")
            records.append(ImageRecord(str(path), int(match.group(1)), int(match.group(2)) - 1))
        return records


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class Market1501(NamedImageFolders):
    """``bounding_box_train/``, ``query/``, ``bounding_box_test/``; file ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``.

    ``Market1501:PATH`` reads the folder PATH instead of looking for the release's folder name, e.g. the output of
    ``reid-mot2reid``. With ``DATASETS.MARKET1501.DISTRACTORS_500K`` the images of ``images/`` (the
    Market-1501+500k distractors, in the same naming) join the gallery, as in torchreid and fast-reid.
    """

    FOLDERS = ("Market-1501-v15.09.15", "Market-1501", "market1501/Market-1501-v15.09.15")
    LAYOUT = MARKET_LAYOUT
    DISTRACTOR_DIR = "images"

    def extra_gallery(self, folder: Path, cfg: CfgNode) -> List[ImageRecord]:
        if not cfg.DATASETS.MARKET1501.DISTRACTORS_500K:
            return []
        distractors = folder / self.DISTRACTOR_DIR
        if not distractors.is_dir():
            raise DatasetError(f"DATASETS.MARKET1501.DISTRACTORS_500K is set but {str(distractors)!r} is missing: "
                               f"extract distractors_500k.zip (Market-1501+500k) into {str(folder)!r} so that its "
                               f"images lie in {self.DISTRACTOR_DIR}/, or unset the key.")
        return self._parse_dir(distractors)
