"""Cars-196 (Krause et al. 2013) for deep metric learning: classes 1-98 train, 99-196 test (leave-one-out).

Two layouts are read: the original release (``cars_annos.mat`` + ``car_ims/``) and the class-folder copy that
pytorch-metric-learning downloads (``names.csv``, ``anno_train.csv``, ``anno_test.csv``, ``car_data/``). Either way
the release's own train/test flag is ignored: metric learning splits by class, every image of a class together.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np
from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ImageRecord, text_lines
from .csvfile import csv_rows
from .matfiles import load_mat, require_file
from .metric_learning import RetrievalDataset, class_record, integer, listed_image, split_classes

CARS_LAYOUT = """\
  Cars196/                      (or CARS196/, cars196/); either the original release:
    cars_annos.mat              annotations (relative_im_path, class 1..196, test) and class_names
    car_ims/                    000001.jpg ... 016185.jpg
  or the class-folder copy that pytorch-metric-learning reads:
    names.csv                   one class name per line (line i = class i)
    anno_train.csv  anno_test.csv   "<file>,<x1>,<y1>,<x2>,<y2>,<class>" per line
    car_data/car_data/          train/<class name>/<file>, test/<class name>/<file> ('/' in a name written '-')"""

FIRST_TEST_CLASS = 99  # Oh Song et al. 2016: the first 98 classes train, the other 98 test
NUM_CLASSES = 196


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class Cars196(RetrievalDataset):
    """16,185 car images of 196 models: train 8,054 images of classes 1-98, test 8,131 of classes 99-196.

    Test pids are the class numbers (99-196), class names are kept as identity names. When a folder holds both
    layouts, ``cars_annos.mat`` is read. ``Cars196:PATH`` reads the folder PATH (absolute or relative to
    DATASETS.ROOT).
    """

    FOLDERS = ("Cars196", "CARS196", "cars196")
    MARKERS = ("cars_annos.mat", "names.csv")
    LAYOUT = CARS_LAYOUT

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        if (folder / "cars_annos.mat").is_file() or not (folder / "names.csv").is_file():
            records = self._release(folder)
        else:
            records = self._class_folders(folder)
        train, test = split_classes(records, FIRST_TEST_CLASS)
        super().__init__(type(self).__name__, str(folder), train, test)

    def _release(self, folder: Path) -> List[ImageRecord]:
        """``cars_annos.mat``: a struct array ``annotations`` (relative_im_path, class, ...) and ``class_names``."""
        file = folder / "cars_annos.mat"
        mat = load_mat(file, ("annotations", "class_names"), self.LAYOUT)
        try:
            annotations = mat["annotations"].ravel()
            paths = [_matlab_scalar(p) for p in annotations["relative_im_path"]]
            classes = [_matlab_scalar(c) for c in annotations["class"]]
            names = [str(_matlab_scalar(n)) for n in mat["class_names"].ravel()]
        except (ValueError, KeyError, IndexError, TypeError) as e:  # not a struct array with these fields
            raise DatasetError(f"{file}: not the release's annotation file ({type(e).__name__}: {e}); expected "
                               f"'annotations' (a struct array with relative_im_path and class) and "
                               f"'class_names'.") from None
        base = os.path.realpath(folder)
        records = []
        for i, (rel, class_id) in enumerate(zip(paths, classes)):
            where = f"{file} annotation {i + 1}"
            class_id = _class_number(class_id, where, len(names))
            records.append(class_record(listed_image(str(rel), base, where, "the dataset folder"), class_id,
                                        names[class_id - 1]))
        return records

    def _class_folders(self, folder: Path) -> List[ImageRecord]:
        """pytorch-metric-learning's layout: the class of each listed file names its folder."""
        names = [line.strip() for _, line in text_lines(require_file(folder / "names.csv", self.LAYOUT),
                                                          "expected one class name per line")]
        images = folder / "car_data" / "car_data"
        if not images.is_dir():
            raise DatasetError(f"Missing folder {str(images)!r}. Expected layout:\n{self.LAYOUT}\n"
                               f"(see datasets/README.md).")
        records = []
        for split in ("train", "test"):
            file = require_file(folder / f"anno_{split}.csv", self.LAYOUT)
            base = os.path.realpath(images / split)
            for line, fields in csv_rows(file):
                where = f"{file} line {line}"
                if len(fields) != 6:
                    raise DatasetError(f"{where}: {len(fields)} field(s); expected <file>,<x1>,<y1>,<x2>,<y2>,<class> "
                                       f"(e.g. 00001.jpg,39,116,569,375,14), got {','.join(fields)[:200]!r}.")
                class_id = _class_number(integer(fields[5].strip(), where, "class"), where, len(names))
                name = names[class_id - 1]
                rel = f"{name.replace('/', '-')}/{fields[0].strip()}"
                records.append(class_record(listed_image(rel, base, where, f"car_data/car_data/{split}/"), class_id,
                                            name))
        return records


def _matlab_scalar(value: object) -> object:
    """The one value of a MATLAB cell or struct field as ``loadmat`` reads it (an array wrapping it)."""
    return np.asarray(value).ravel()[0]


def _class_number(value: object, where: str, num_names: int) -> int:
    """A class number 1..196 that has a name, else a DatasetError naming ``where``."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= min(NUM_CLASSES, num_names):
        raise DatasetError(f"{where}: class {value!r} is not a class number 1..{min(NUM_CLASSES, num_names)} (the "
                           f"release has {NUM_CLASSES} classes; {num_names} class names were found).")
    return number
