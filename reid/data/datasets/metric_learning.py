"""What the deep metric learning benchmarks (CUB-200-2011, Cars-196, Stanford Online Products, In-shop) share.

These sets hold classes, not identities seen by cameras: a record's ``pid`` is its class and its camera is unknown
(``UNKNOWN_CAMERA``). Training and test classes are disjoint (Oh Song et al. 2016's zero-shot split). On CUB, Cars
and SOP the test split is its own query and gallery, each image matched against all the others (leave-one-out:
``query`` and ``gallery`` are the same records); In-shop has query and gallery lists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ...utils.errors import DatasetError
from .base import SAME_IMAGE, UNKNOWN_CAMERA, EvalProtocol, ImageRecord, ReIDDataset, is_image_name, relabel, \
    require_nonempty, text_lines
from .csvfile import relative_image


class RetrievalDataset(ReIDDataset):
    """A metric learning benchmark: ``LEAVE_ONE_OUT`` tells how its test split is evaluated (see the module)."""

    LEAVE_ONE_OUT = True

    def __init__(self, name: str, root: str, train: List[ImageRecord], query: List[ImageRecord],
                 gallery: Optional[List[ImageRecord]] = None) -> None:
        """Train records with their original class ids (relabelled here); ``gallery`` None: leave-one-out."""
        require_nonempty(query, "test" if gallery is None else "query", Path(root))
        if gallery is not None:
            require_nonempty(gallery, "gallery", Path(root))
        super().__init__(name, root, relabel(train), query, query if gallery is None else gallery)


def retrieval_protocol(leave_one_out: bool) -> EvalProtocol:
    """Which gallery items a query of a metric learning test set is not matched with: only itself (same-image
    removal), and why: the split is its own gallery (``leave_one_out``) or a query list against a gallery list."""
    if leave_one_out:
        return EvalProtocol(SAME_IMAGE, "leave-one-out: every test image against all the others (metric learning, "
                                        "Oh Song et al. 2016)")
    return EvalProtocol(SAME_IMAGE, "metric learning: the query list against the gallery list")


def class_record(path: str, class_id: int, name: str = "") -> ImageRecord:
    """The record of one image of class ``class_id`` (no camera)."""
    return ImageRecord(path, class_id, UNKNOWN_CAMERA, name)


def split_classes(records: Sequence[ImageRecord], first_test: int) -> Tuple[List[ImageRecord], List[ImageRecord]]:
    """(train, test) by class id: ids below ``first_test`` train, the others test (CUB: 101, Cars: 99)."""
    return [r for r in records if r.pid < first_test], [r for r in records if r.pid >= first_test]


def listed_image(rel: str, base: str, where: str, relative_to: str) -> str:
    """The path of an image a list names (relative to the real folder ``base``); a path leaving it, a file that
    is not an image or a missing image is a DatasetError naming ``where`` (the list file and line)."""
    path = relative_image(rel, base, where, relative_to)
    if not is_image_name(rel):
        raise DatasetError(f"{where}: {rel[:200]!r} is not an image file name (expected .jpg, .png, ...).")
    if not os.path.isfile(path):
        raise DatasetError(f"{where}: image {path!r} does not exist (incomplete extraction or wrong list?).")
    return path


def integer(text: str, where: str, what: str) -> int:
    """A non-negative integer field of a list line, else a DatasetError naming the line."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise DatasetError(f"{where}: {what} {text[:50]!r} is not a non-negative integer.")
    return int(text)


def split_lines(file: Path, fields: int, example: str, header: Optional[str] = None) -> Iterator[Tuple[str, List[str]]]:
    """``(where, fields)`` of every line of a whitespace-separated list with ``fields`` columns; the first line is
    skipped when it starts with ``header``. Any other line is a DatasetError naming the file and line."""
    hint = f"expected lines like {example!r}"
    for i, (where, line) in enumerate(text_lines(file, hint)):
        parts = line.split()
        if i == 0 and header is not None and line.lstrip().startswith(header):
            continue
        if len(parts) != fields:
            raise DatasetError(f"{where}: {len(parts)} field(s), {hint}; got {line.strip()[:200]!r}.")
        yield where, parts


def numbered_lines(file: Path, example: str) -> Dict[int, Tuple[str, str]]:
    """``<number> <value>`` lines (CUB's images.txt, image_class_labels.txt): number -> (value, where); a repeated
    number is a DatasetError naming both lines."""
    out: Dict[int, Tuple[str, str]] = {}
    for where, (number, value) in split_lines(file, 2, example):
        key = integer(number, where, "the image id")
        if key in out:
            raise DatasetError(f"{where}: image id {key} repeats {out[key][1]}; every image id must be listed once.")
        out[key] = (value, where)
    return out
