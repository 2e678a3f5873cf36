"""Vehicle re-ID: VeRi-776 (Liu et al. ECCV 2016), VehicleID (Liu et al. CVPR 2016) and VERI-Wild (Lou et al. CVPR
2019), read as fast-reid reads them; VehicleID's random galleries are drawn seeded, several times, as data."""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import (DATASET_REGISTRY, UNKNOWN_CAMERA, ImageRecord, ReIDDataset, Split, relabel, require_dir,
                   require_nonempty, text_lines)
from .market1501 import NamedImageFolders
from .matfiles import require_file
from .splits import choose_split

VERI_LAYOUT = """\
  VeRi/                         (or veri/, fast-reid's name)
    image_train/                0001_c001_00016450_0.jpg ...   37,778 images of 576 vehicles
    image_query/                0002_c002_00030600_0.jpg ...   1,678 images
    image_test/                 0002_c002_00030605_1.jpg ...   11,579 images"""

VEHICLEID_LAYOUT = """\
  VehicleID_V1.0/               (or VehicleID/, or fast-reid's vehicleid/)
    image/                      0000001.jpg ...
    train_test_split/
      train_list.txt            "<image> <vehicle id>" per line, e.g. "0001513 0" (image/0001513.jpg)
      test_list_800.txt         idem; also test_list_1600.txt, test_list_2400.txt (DATASETS.VEHICLEID.TEST_SIZE)"""

VERIWILD_LAYOUT = """\
  VERI-Wild/
    images/<vehicle id>/<image>.jpg                      e.g. images/00001/000001.jpg
    train_test_split/
      vehicle_info.txt          a header line, then "<vehicle id>/<image>;<camera>;<time>;<model>;<type>;<colour>"
      train_list.txt            "<vehicle id>/<image>" per line
      test_3000_query.txt  test_3000.txt               query and gallery (DATASETS.VERIWILD.TEST_SIZE 3000)
      test_5000_query.txt  test_5000.txt  test_10000_query.txt  test_10000.txt"""


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class VeRi(NamedImageFolders):
    """VeRi-776: ``<vehicle>_c<camera 001..020>_<frame>_<n>.jpg`` in ``image_train/``, ``image_query/``,
    ``image_test/``. ``VeRi:PATH`` reads the folder PATH."""

    FOLDERS = ("VeRi", "veri", "VeRi-776")
    LAYOUT = VERI_LAYOUT
    SPLIT_DIRS = {"train": "image_train", "query": "image_query", "gallery": "image_test"}
    MARKERS = tuple(SPLIT_DIRS.values())
    PATTERN = re.compile(r"(\d{1,9})_c(\d{1,9})_\d+_\d+\.jpg", re.ASCII)
    NAMING = "the VeRi-776 naming <vehicle id>_c<camera from 001>_<frame>_<n>.jpg, e.g. 0001_c001_00016450_0.jpg"


def _list_lines(file: Path, layout: str, pattern: re.Pattern, example: str):
    """``(where, match)`` of every line of a split list; a missing file or a malformed line is a DatasetError."""
    require_file(file, layout)
    for where, line in text_lines(file, f"is {file.name} a split list of the release?"):
        match = pattern.fullmatch(line.strip())
        if match is None:
            raise DatasetError(f"{where}: expected {example}, got {line.strip()[:200]!r}.")
        yield where, match


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class VehicleID(ReIDDataset):
    """Train = ``train_list.txt``; test = ``test_list_<DATASETS.VEHICLEID.TEST_SIZE>.txt``, whose gallery is one
    random image per vehicle and whose queries are all the others (Liu et al. 2016). ``DATASETS.VEHICLEID.REPEATS``
    galleries are drawn (the protocol averages the metrics over them); draw r shuffles the test list with
    ``random.Random("VehicleID:<DATASETS.SPLIT_SEED>:<r>")`` and keeps each vehicle's first image, as fast-reid does
    with Python's global random state, so a fast-reid run seeded with that string draws the same gallery.

    The release has no cameras (camid -1, unknown): a query is matched against every gallery image, which is what
    fast-reid's camera id = image id gives too."""

    FOLDERS = ("VehicleID_V1.0", "VehicleID", "vehicleid")
    LAYOUT = VEHICLEID_LAYOUT
    MARKERS = ("train_test_split", "image")
    LINE = re.compile(r"(\d{1,12})\s+(\d{1,9})", re.ASCII)

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        images = set(os.listdir(require_dir(folder / "image", self.LAYOUT)))
        lists = folder / "train_test_split"
        train = relabel(self._parse_list(lists / "train_list.txt", folder, images))
        test_file = lists / f"test_list_{cfg.DATASETS.VEHICLEID.TEST_SIZE}.txt"
        if not test_file.is_file():
            raise DatasetError(f"Missing {str(test_file)!r} (DATASETS.VEHICLEID.TEST_SIZE "
                               f"{cfg.DATASETS.VEHICLEID.TEST_SIZE}); the release's test sizes are 800, 1600 and "
                               f"2400. Expected layout:\n{self.LAYOUT}")
        test = self._parse_list(test_file, folder, images)
        require_nonempty(test, "test", test_file)
        splits = [Split(train, *self.draw_gallery(test, f"VehicleID:{cfg.DATASETS.SPLIT_SEED}:{r}"))
                  for r in range(cfg.DATASETS.VEHICLEID.REPEATS)]
        chosen = choose_split(splits, cfg.DATASETS.SPLIT_ID, type(self).__name__, folder)
        super().__init__(type(self).__name__, str(folder), chosen.train, chosen.query, chosen.gallery, splits=splits,
                         split_id=cfg.DATASETS.SPLIT_ID)

    def _parse_list(self, file: Path, folder: Path, images: set) -> List[ImageRecord]:
        records = []
        for where, match in _list_lines(file, self.LAYOUT, self.LINE, "'<image> <vehicle id>', e.g. '0001513 0'"):
            name = f"{match.group(1)}.jpg"
            if name not in images:
                raise DatasetError(f"{where}: image {str(folder / 'image' / name)!r} does not exist.")
            records.append(ImageRecord(str(folder / "image" / name), int(match.group(2)), UNKNOWN_CAMERA))
        return records

    @staticmethod
    def draw_gallery(test: List[ImageRecord], seed: str) -> Tuple[List[ImageRecord], List[ImageRecord]]:
        """(query, gallery): the test list shuffled with ``random.Random(seed)``, each vehicle's first image in that
        order to the gallery and the rest to the query; both kept in list order."""
        order = list(range(len(test)))
        random.Random(seed).shuffle(order)
        first: Dict[int, int] = {}
        for i in order:
            first.setdefault(test[i].pid, i)
        chosen = set(first.values())
        return ([r for i, r in enumerate(test) if i not in chosen], [r for i, r in enumerate(test) if i in chosen])


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class VeRiWild(ReIDDataset):
    """Train = ``train_list.txt``; query / gallery = ``test_<N>_query.txt`` / ``test_<N>.txt`` with N =
    ``DATASETS.VERIWILD.TEST_SIZE`` (3000 small, 5000 medium, 10000 large). Cameras come from
    ``vehicle_info.txt``, numbered 0.. in increasing order of the release's camera numbers."""

    FOLDERS = ("VERI-Wild", "VeRi-Wild")
    LAYOUT = VERIWILD_LAYOUT
    MARKERS = ("train_test_split", "images")
    LIST_LINE = re.compile(r"(\d{1,9})/(\d{1,12})(?:\.jpg)?", re.ASCII)
    INFO_LINE = re.compile(r"(\d{1,9})/(\d{1,12});(\d{1,9});.*", re.ASCII)

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        lists = folder / "train_test_split"
        info = self._vehicle_info(lists / "vehicle_info.txt")
        size = cfg.DATASETS.VERIWILD.TEST_SIZE
        query_file, gallery_file = lists / f"test_{size}_query.txt", lists / f"test_{size}.txt"
        for file in (query_file, gallery_file):
            if not file.is_file():
                raise DatasetError(f"Missing {str(file)!r} (DATASETS.VERIWILD.TEST_SIZE {size}); the release's test "
                                   f"sizes are 3000, 5000 and 10000. Expected layout:\n{self.LAYOUT}")
        train = relabel(self._parse_list(lists / "train_list.txt", folder, info))
        query = self._parse_list(query_file, folder, info)
        gallery = self._parse_list(gallery_file, folder, info)
        require_nonempty(query, "query", query_file)
        require_nonempty(gallery, "gallery", gallery_file)
        super().__init__(type(self).__name__, str(folder), train, query, gallery)

    def _vehicle_info(self, file: Path) -> Dict[str, Tuple[str, int]]:
        """image id -> (vehicle id as written, 0-based camera) from ``vehicle_info.txt`` (its first line is a
        header)."""
        rows: Dict[str, Tuple[str, int]] = {}
        lines = _list_lines_after_header(file, self.LAYOUT)
        for where, line in lines:
            match = self.INFO_LINE.fullmatch(line.strip())
            if match is None:
                raise DatasetError(f"{where}: expected '<vehicle id>/<image>;<camera>;<time>;<model>;<type>;<colour>'"
                                   f", e.g. '00001/000001;1;2018-03-11 17:13:06;...', got {line.strip()[:200]!r}.")
            rows[match.group(2)] = (match.group(1), int(match.group(3)))
        cameras = {c: i for i, c in enumerate(sorted({c for _, c in rows.values()}))}
        return {image: (vid, cameras[c]) for image, (vid, c) in rows.items()}

    def _parse_list(self, file: Path, folder: Path, info: Dict[str, Tuple[str, int]]) -> List[ImageRecord]:
        records = []
        for where, match in _list_lines(file, self.LAYOUT, self.LIST_LINE,
                                        "'<vehicle id>/<image>', e.g. '00001/000001'"):
            vid, image = match.groups()
            if image not in info:
                raise DatasetError(f"{where}: image {image!r} is not in vehicle_info.txt (its camera is unknown).")
            info_vid, camid = info[image]
            if info_vid != vid:
                raise DatasetError(f"{where}: image {image!r} is listed under vehicle {vid} but vehicle_info.txt "
                                   f"gives vehicle {info_vid}.")
            path = folder / "images" / vid / f"{image}.jpg"
            if not path.is_file():
                raise DatasetError(f"{where}: image {str(path)!r} does not exist.")
            records.append(ImageRecord(str(path), int(vid), camid))
        return records


def _list_lines_after_header(file: Path, layout: str):
    """``(where, line)`` of every line of a text file but the first (a header)."""
    require_file(file, layout)
    lines = text_lines(file, f"is {file.name} the file of the release?")
    next(lines, None)
    return lines
