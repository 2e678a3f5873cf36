"""``folder:PATH``: a dataset laid out as one folder per identity, ``PATH/<split>/<identity>/<image>``.

Identity folder names are any strings (kept on the records for reports); cameras come from a ``c<digits>`` token in
the file name, else from an optional ``PATH/cameras.csv``, else they are unknown (camid -1), which the evaluation
handles with the same-image rule (see ``choose_protocol``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Tuple

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import (DATASET_REGISTRY, SPLITS, UNKNOWN_CAMERA, ImageRecord, ReIDDataset, camera_token,
                   check_duplicates, identity_ids, is_image_name, resolve_data_path)
from .csvfile import csv_rows, header_columns, relative_image

logger = logging.getLogger(__name__)

FOLDER_LAYOUT = """\
  PATH/                         (folder:PATH; PATH absolute or relative to DATASETS.ROOT)
    train/<identity>/<image>    e.g. train/alice/0001.jpg; identity folder names are any strings
    query/<identity>/<image>    any split may be absent (a train-only or a test-only set)
    gallery/<identity>/<image>
    cameras.csv                 optional: "path,camera" lines, path relative to PATH, camera from 1
  A camera token in the file name (..._c3_..., c3s1) comes first; without either the camera is unknown."""

CAMERAS_FILE = "cameras.csv"


def _inside(path: str, base: str) -> bool:
    return os.path.commonpath([base, os.path.realpath(path)]) == base


@DATASET_REGISTRY.register("folder", argument="PATH")
class FolderDataset(ReIDDataset):
    """Train identities are relabelled in sorted order of their folder names; query and gallery identities share
    one mapping, so the same name is the same pid on both sides."""

    LAYOUT = FOLDER_LAYOUT

    def __init__(self, root: str, cfg: CfgNode, arg: str) -> None:
        folder = resolve_data_path(root, arg, f"folder:{arg}", self.LAYOUT)
        base = os.path.realpath(folder)
        present = [s for s in SPLITS if (folder / s).exists()]
        if not present:
            raise DatasetError(f"{str(folder)!r} has none of the folders train/, query/, gallery/. Expected:\n"
                               f"{self.LAYOUT}\n(see datasets/README.md).")
        found = {s: self._scan(folder, s, base) for s in present}
        cameras = self._cameras(folder, base, {rel for files in found.values() for rel, _, _ in files})
        check_duplicates((s, name, path, repr(path)) for s, files in found.items() for _, name, path in files)
        splits: Dict[str, List[Tuple[str, str, int]]] = {s: [] for s in SPLITS}
        for s, files in found.items():
            splits[s] = [(path, name, self._camera(rel, cameras)) for rel, name, path in files]
        train_ids = identity_ids(name for _, name, _ in splits["train"])
        test_ids = identity_ids(name for s in ("query", "gallery") for _, name, _ in splits[s])
        records = {s: [ImageRecord(path, (train_ids if s == "train" else test_ids)[name], cam, name)
                       for path, name, cam in splits[s]] for s in SPLITS}
        super().__init__(f"folder:{arg}", str(folder), records["train"], records["query"], records["gallery"])

    def _scan(self, folder: Path, split: str, base: str) -> List[Tuple[str, str, str]]:
        """``(path relative to PATH, identity name, path)`` of every image of one split, in sorted order."""
        split_dir = folder / split
        if not split_dir.is_dir() or not _inside(str(split_dir), base):
            raise DatasetError(f"{str(split_dir)!r} is not a folder inside {base!r}. Expected:\n{self.LAYOUT}")
        files, empty = [], []
        for identity in sorted(os.listdir(split_dir)):
            id_dir = split_dir / identity
            if not id_dir.is_dir():
                if is_image_name(identity):
                    raise DatasetError(f"Image {str(id_dir)!r} lies directly in {split}/; expected it inside an "
                                       f"identity folder: {split}/<identity>/{identity}.")
                continue  # Thumbs.db, readme files
            if not _inside(str(id_dir), base):
                raise DatasetError(f"{str(id_dir)!r} links to {os.path.realpath(id_dir)!r}, outside the dataset "
                                   f"folder {base!r}; the images of a folder dataset must lie inside it.")
            images = self._images(id_dir, base)
            if not images:
                empty.append(identity)
            files += [(f"{split}/{identity}/{name}", identity, str(id_dir / name)) for name in images]
        if not files:
            raise DatasetError(f"{str(split_dir)!r} holds no images; expected {split}/<identity>/<image> "
                               f"(remove the folder if the set has no {split} split).")
        if empty:
            logger.warning("%d identity folder(s) of %s hold no image and were left out: %s", len(empty), split_dir,
                           ", ".join(map(repr, empty[:5])) + (" ..." if len(empty) > 5 else ""))
        return files

    @staticmethod
    def _images(id_dir: Path, base: str) -> List[str]:
        """Image file names of one identity folder; a sub-folder or a link leaving the dataset is an error."""
        names = []
        for name in sorted(os.listdir(id_dir)):
            path = id_dir / name
            if path.is_dir():
                raise DatasetError(f"{str(path)!r} is a folder inside an identity folder; expected images only "
                                   f"(<split>/<identity>/<image>): move its images up or into their own identity.")
            if not is_image_name(name):
                continue
            if not _inside(str(path), base):
                raise DatasetError(f"{str(path)!r} links to {os.path.realpath(path)!r}, outside the dataset folder "
                                   f"{base!r}; the images of a folder dataset must lie inside it.")
            names.append(name)
        return names

    def _cameras(self, folder: Path, base: str, known: set) -> Dict[str, Tuple[int, str]]:
        """``cameras.csv``: normalised relative path -> (camid, where), checked line by line."""
        file = folder / CAMERAS_FILE
        if not file.is_file():
            return {}
        rows = csv_rows(file)
        first = next(rows, None)
        if first is None:
            return {}
        columns = header_columns(first[1], ("path", "camera"), f"{file} line {first[0]}")
        cameras: Dict[str, Tuple[int, str]] = {}
        for line, fields in rows:
            where = f"{file} line {line}"
            if len(fields) != len(first[1]):
                raise DatasetError(f"{where}: {len(fields)} field(s) where the header has {len(first[1])}; expected "
                                   f"path,camera (e.g. train/alice/0001.jpg,3).")
            rel, camera = fields[columns["path"]].strip(), fields[columns["camera"]].strip()
            relative_image(rel, base, where, "the dataset folder")
            key = os.path.normpath(rel)
            if key not in known:
                raise DatasetError(f"{where}: {rel[:200]!r} is not an image of the dataset (expected a path such as "
                                   f"train/<identity>/<image>, relative to {base!r}).")
            number = camera[1:] if camera[:1] in ("c", "C") else camera
            if camera and not (number.isascii() and number.isdigit() and len(number) <= 9 and int(number) >= 1):
                raise DatasetError(f"{where}: camera {camera[:50]!r} is not a camera number from 1 (3 or c3); leave "
                                   f"it empty when the camera is unknown.")
            cameras[key] = (int(number) - 1 if camera else UNKNOWN_CAMERA, where)
        return cameras

    @staticmethod
    def _camera(rel: str, cameras: Dict[str, Tuple[int, str]]) -> int:
        """The file name's camera token, else the cameras.csv entry, else unknown; the two may not disagree."""
        number = camera_token(os.path.basename(rel))
        listed = cameras.get(os.path.normpath(rel))
        if number == 0:
            raise DatasetError(f"File name {rel!r} has the camera token c0; cameras are numbered from 1 (c1 is the "
                               f"first camera). Rename the files or give the cameras in {CAMERAS_FILE}.")
        if number is None:
            return listed[0] if listed else UNKNOWN_CAMERA
        if listed and listed[0] != number - 1:
            raise DatasetError(f"{listed[1]}: camera {listed[0] + 1} disagrees with the token c{number} of the file "
                               f"name {rel!r}; remove one of them.")
        return number - 1
