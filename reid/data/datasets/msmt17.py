"""MSMT17 (Wei et al. 2018), V1 and V2: images listed in split files, camera read from the file name."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ImageRecord, ReIDDataset, relabel, require_nonempty, text_lines

MSMT17_LAYOUT = """\
  MSMT17_V2/                    (or MSMT17_V1/ or MSMT17/; V2 is used when both exist)
    train/                      (V2 release: mask_train_v2/)  0000/0000_000_01_0303morning_0008_0.jpg ...
    test/                       (V2 release: mask_test_v2/)   0000/0000_000_01_0303morning_0015_0.jpg ...
    list_train.txt  list_val.txt  list_query.txt  list_gallery.txt
                                one image per line: "<pid>/<file>.jpg <pid>", paths relative to train/ or test/"""


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class MSMT17(ReIDDataset):
    """Train = list_train + list_val (the standard 1,041 ids, relabelled; list_train alone, 30,248 images, with
    DATASETS.MSMT17.WITH_VAL False, as fast-reid and torchreid train); query/gallery keep the listed ids.

    File names are ``<pid>_<index>_<camera>_<date><time>_<frame>_<n>.jpg`` in both releases; the camera (01..15)
    is the third underscore field (the second is the image's index within its identity). ``MSMT17:PATH`` reads
    the folder PATH (absolute or relative to DATASETS.ROOT) instead of looking for the release's folder name.
    """

    FOLDERS = ("MSMT17_V2", "MSMT17_V1", "MSMT17")
    LAYOUT = MSMT17_LAYOUT
    IMAGE_DIRS = {"train": ("train", "mask_train_v2"), "test": ("test", "mask_test_v2")}
    FILE_PATTERN = re.compile(r"\d+_\d+_(\d{1,9})_[A-Za-z0-9]+_\d+_\d+\.jpg", re.ASCII)
    PID_PATTERN = re.compile(r"\d{1,9}", re.ASCII)  # ASCII digits; int() of at most 9 of them never fails
    MARKERS = ("list_train.txt", "list_query.txt", "list_gallery.txt")

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        train_dir, test_dir = self._image_dir(folder, "train"), self._image_dir(folder, "test")
        val = self._parse_list(folder / "list_val.txt", train_dir) if cfg.DATASETS.MSMT17.WITH_VAL else []
        train = relabel(self._parse_list(folder / "list_train.txt", train_dir) + val)
        query = self._parse_list(folder / "list_query.txt", test_dir)
        gallery = self._parse_list(folder / "list_gallery.txt", test_dir)
        require_nonempty(query, "query", folder / "list_query.txt")
        require_nonempty(gallery, "gallery", folder / "list_gallery.txt")
        super().__init__(type(self).__name__, str(folder), train, query, gallery)

    def _image_dir(self, folder: Path, split: str) -> Path:
        """``train``/``test`` (V1 naming) or ``mask_train_v2``/``mask_test_v2`` (V2 naming)."""
        for name in self.IMAGE_DIRS[split]:
            if (folder / name).is_dir():
                return folder / name
        raise DatasetError(f"Missing image folder {str(folder / self.IMAGE_DIRS[split][0])!r} (or "
                           f"{self.IMAGE_DIRS[split][1]}/). Expected layout:\n{self.LAYOUT}\n(see datasets/README.md).")

    def _parse_list(self, list_file: Path, image_dir: Path) -> List[ImageRecord]:
        """Records of one split file; every line is checked (format, containment, existence) and named on error."""
        if not list_file.is_file():
            raise DatasetError(f"Missing split file {str(list_file)!r}. Expected layout:\n{self.LAYOUT}\n"
                               f"(see datasets/README.md).")
        base = os.path.realpath(image_dir)
        hint = f"is {list_file.name} a split list of the MSMT17 release?"
        return [self.parse_line(line, base, where) for where, line in text_lines(list_file, hint)]

    @classmethod
    def parse_line(cls, line: str, base: str, where: str) -> ImageRecord:
        """The record of one list line ``<pid>/<file>.jpg <pid>`` under the image folder ``base`` (a real path);
        any other line is a DatasetError naming ``where`` (the list file and line)."""
        parts = line.split()
        if len(parts) != 2 or not cls.PID_PATTERN.fullmatch(parts[1]):
            raise DatasetError(f"{where}: expected '<pid>/<file>.jpg <pid>', got {line.strip()[:200]!r}.")
        rel, pid = parts[0], int(parts[1])
        if "\0" in rel:
            raise DatasetError(f"{where}: the path {rel[:200]!r} contains a NUL character.")
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetError(f"{where}: the path {rel[:200]!r} is not valid Unicode text.") from None
        path = os.path.realpath(os.path.join(base, rel))
        if os.path.commonpath([base, path]) != base:
            raise DatasetError(f"{where}: {rel[:200]!r} points outside the image folder {base!r}; list paths must "
                               f"be relative paths inside it.")
        match = cls.FILE_PATTERN.fullmatch(os.path.basename(rel))
        if match is None or int(match.group(1)) < 1:
            raise DatasetError(f"{where}: file name {os.path.basename(rel)[:200]!r} does not follow the MSMT17 "
                               f"naming <pid>_<index>_<camera from 01>_<date><time>_<frame>_<n>.jpg "
                               f"(e.g. 0000_000_01_0303morning_0015_0.jpg).")
        if not os.path.isfile(path):
            raise DatasetError(f"{where}: image {path!r} does not exist (incomplete extraction or wrong list?).")
        return ImageRecord(path, pid, int(match.group(1)) - 1)
