"""CUHK03 (Li et al. CVPR 2014): images stored in ``cuhk-03.mat`` (MATLAB v7.3), read with the 767/700 protocol of
Zhong et al. (CVPR 2017, its ``cuhk03_new_protocol_config_*.mat`` files) or the classic 20 splits of 100 test
identities that ``cuhk-03.mat`` itself lists.

The images are written once as PNG files into ``images_detected/`` / ``images_labeled/`` beside the release, named
as torchreid and fast-reid name them (``<pair>_<person:03>_<view>_<image:02>.png``), so the three toolkits share
one extraction and the new protocol's file lists apply unchanged.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ImageRecord, ReIDDataset, Split
from .matfiles import int_vector, load_mat, open_mat73
from .splits import choose_split, split_records

logger = logging.getLogger(__name__)

CUHK03_LAYOUT = """\
  cuhk03/                       (torchreid's and fast-reid's name)
    cuhk03_release/cuhk-03.mat  the release (MATLAB v7.3): 'detected', 'labeled', 'testsets'
    cuhk03_new_protocol_config_detected.mat   the 767/700 split (Zhong et al. 2017), for detected boxes
    cuhk03_new_protocol_config_labeled.mat    idem, for labelled boxes (DATASETS.CUHK03.LABELED)
    images_detected/  images_labeled/         written from cuhk-03.mat on first use (or by torchreid / fast-reid)"""

RAW_MAT = Path("cuhk03_release") / "cuhk-03.mat"
IMAGE_NAME = re.compile(r"([1-9])_(\d{3})_([12])_(\d{2})\.png", re.ASCII)  # pair, person, view, image (1-based)
VIEW_SIZE = 5  # cells 1-5 of a person are its images from the pair's first camera, 6-10 from the second


def image_name(pair: int, person: int, cell: int) -> str:
    """The file name of cell ``cell`` (0-based, 0..9) of person ``person`` of camera pair ``pair`` (both 1-based)."""
    return f"{pair}_{person:03d}_{1 if cell < VIEW_SIZE else 2}_{cell + 1:02d}.png"


def view_camera(name: str) -> int:
    """0-based camera of an image: its view in its camera pair (0 or 1), as the peers number CUHK03's cameras."""
    return int(name.split("_")[2]) - 1


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class CUHK03(ReIDDataset):
    """Detected or (``DATASETS.CUHK03.LABELED``) labelled boxes; the 767/700 protocol, or with
    ``DATASETS.CUHK03.CLASSIC_SPLIT`` the 20 classic splits (``splits``; query and gallery are both the 100 test
    identities' images, ``DATASETS.SPLIT_ID`` chooses one). Test identities keep the release's numbering (the new
    protocol's labels; for the classic splits 1..1467 in the order of ``cuhk-03.mat``); cameras are the view in
    the camera pair, 0 or 1. ``CUHK03:PATH`` reads the folder PATH."""

    FOLDERS = ("cuhk03", "CUHK03")
    LAYOUT = CUHK03_LAYOUT
    MARKERS = ("cuhk03_release", "cuhk03_new_protocol_config_detected.mat")

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        kind = "labeled" if cfg.DATASETS.CUHK03.LABELED else "detected"
        image_dir = folder / f"images_{kind}"
        if cfg.DATASETS.CUHK03.CLASSIC_SPLIT:
            splits = self._classic_splits(folder, kind, image_dir)
        else:
            splits = [self._new_protocol(folder, kind, image_dir)]
        chosen = choose_split(splits, cfg.DATASETS.SPLIT_ID, type(self).__name__, folder)
        super().__init__(type(self).__name__, str(folder), chosen.train, chosen.query, chosen.gallery, splits=splits,
                         split_id=cfg.DATASETS.SPLIT_ID)

    def _new_protocol(self, folder: Path, kind: str, image_dir: Path) -> Split:
        """The 767/700 split: train / query / gallery indices into the config file's file list."""
        path = folder / f"cuhk03_new_protocol_config_{kind}.mat"
        mat = load_mat(path, ("filelist", "labels", "train_idx", "query_idx", "gallery_idx"), self.LAYOUT)
        names = [self._file_name(cell, path) for cell in np.asarray(mat["filelist"], dtype=object).ravel()]
        labels = int_vector(mat["labels"], path, "labels")
        if len(labels) != len(names):
            raise DatasetError(f"{path}: 'labels' has {len(labels)} entries for {len(names)} files in 'filelist'.")
        if not all((image_dir / n).is_file() for n in names):
            self._extract(folder, kind, image_dir)
        missing = [n for n in names if not (image_dir / n).is_file()]
        if missing:
            raise DatasetError(f"{path} lists {len(missing)} image(s) that {folder / RAW_MAT} does not hold, e.g. "
                               f"{missing[0]!r}: the two files come from different releases.")

        def subset(key: str) -> List[ImageRecord]:
            index = int_vector(mat[key], path, key) - 1  # MATLAB indices are 1-based
            if len(index) and (index.min() < 0 or index.max() >= len(names)):
                raise DatasetError(f"{path}: '{key}' holds indices outside 1..{len(names)} (the file list).")
            return [ImageRecord(str(image_dir / names[i]), int(labels[i]), view_camera(names[i])) for i in index]

        return split_records(subset("train_idx"), subset("query_idx"), subset("gallery_idx"))

    @staticmethod
    def _file_name(cell: object, path: Path) -> str:
        name = str(np.asarray(cell).ravel()[0]) if np.asarray(cell).size else ""
        if not IMAGE_NAME.fullmatch(name):
            raise DatasetError(f"{path}: file list entry {name[:100]!r} is not a CUHK03 image name "
                               f"<pair>_<person:03>_<view>_<image:02>.png (e.g. 1_001_1_01.png).")
        return name

    def _classic_splits(self, folder: Path, kind: str, image_dir: Path) -> List[Split]:
        """The 20 splits of ``cuhk-03.mat``'s ``testsets``: 100 (pair, person) test identities each; query and
        gallery are both every image of them, training is every other identity."""
        people = self._extract(folder, kind, image_dir)
        path = folder / RAW_MAT
        with open_mat73(path, self.LAYOUT) as mat:
            tests = []
            for ref in self._refs(mat, "testsets", path):
                rows = np.asarray(mat[ref]).T
                if rows.ndim != 2 or rows.shape[1] != 2:
                    raise DatasetError(f"{path}: a 'testsets' entry should be a (100, 2) matrix of (camera pair, "
                                       f"person) rows, got shape {rows.shape}.")
                tests.append({(int(a), int(b)) for a, b in rows})
        number = {key: i + 1 for i, key in enumerate(people)}  # identities 1..1467 in the file's order
        splits = []
        for test in tests:
            unknown = test - set(people)
            if unknown:
                raise DatasetError(f"{path}: 'testsets' names (camera pair, person) {sorted(unknown)[0]} that "
                                   f"'{kind}' does not hold.")
            train, gallery = [], []
            for key, names in people.items():
                for name in names:
                    (gallery if key in test else train).append(
                        ImageRecord(str(image_dir / name), number[key], view_camera(name)))
            splits.append(split_records(train, gallery, gallery))
        return splits

    @staticmethod
    def _refs(mat, key: str, path: Path) -> np.ndarray:
        if key not in mat:
            raise DatasetError(f"{path}: no variable {key!r}; is it the release's cuhk-03.mat?")
        return np.asarray(mat[key]).ravel()

    def _extract(self, folder: Path, kind: str, image_dir: Path) -> Dict[Tuple[int, int], List[str]]:
        """Write the images of ``kind`` that ``image_dir`` lacks from ``cuhk-03.mat``; return every (pair, person)
        (1-based) with the names of its images, in the file's order. Each file is written to a temporary name and
        renamed, so an interrupted extraction leaves no half-written image."""
        path = folder / RAW_MAT
        people: Dict[Tuple[int, int], List[str]] = {}
        written = 0
        with open_mat73(path, self.LAYOUT) as mat:
            try:
                image_dir.mkdir(exist_ok=True)
            except OSError as e:
                raise DatasetError(f"Cannot create {str(image_dir)!r} to extract the CUHK03 images ({e}); make the "
                                   f"folder writable once, or extract them there with torchreid.") from None
            for pair, pair_ref in enumerate(self._refs(mat, kind, path), start=1):
                cells = np.asarray(mat[pair_ref]).T  # (persons, 10) references
                if cells.ndim != 2 or cells.shape[1] != 2 * VIEW_SIZE:
                    raise DatasetError(f"{path}: '{kind}' camera pair {pair} should be a (persons, 10) cell array, "
                                       f"got shape {cells.shape}.")
                for person, row in enumerate(cells, start=1):
                    names = []
                    for cell, ref in enumerate(row):
                        image = mat[ref]
                        if image.ndim < 3 or image.size == 0:
                            continue  # an empty cell: the person has fewer than ten images
                        name = image_name(pair, person, cell)
                        if not (image_dir / name).is_file():
                            self._write_png(np.ascontiguousarray(np.asarray(image).T), image_dir / name)
                            written += 1
                        names.append(name)
                    if not names:
                        raise DatasetError(f"{path}: '{kind}' camera pair {pair} person {person} has no image.")
                    people[(pair, person)] = names
        if written:
            logger.info("Extracted %d %s CUHK03 images from %s into %s", written, kind, path, image_dir)
        return people

    @staticmethod
    def _write_png(pixels: np.ndarray, target: Path) -> None:
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        Image.fromarray(pixels).save(temporary, format="PNG")
        os.replace(temporary, target)
