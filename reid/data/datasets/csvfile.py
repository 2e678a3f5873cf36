"""``csv:FILE``: a dataset listed in a CSV file with the header ``path,pid,camid,split``, one image a line.

Also the CSV reading shared with the ``cameras.csv`` of folder datasets: every problem is a DatasetError naming
the file, the line and what was expected.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Sequence, Tuple

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import (DATASET_REGISTRY, SPLITS, UNKNOWN_CAMERA, ImageRecord, ReIDDataset, check_duplicates,
                   identity_ids, is_image_name, resolve_data_path)

CSV_LAYOUT = """\
  FILE.csv                      (csv:FILE; FILE absolute or relative to DATASETS.ROOT)
    path,pid,camid,split        header (any column order; other columns are ignored)
    train/a/001.jpg,alice,0,train
    q/17.jpg,bob,,query         camid empty: unknown camera; split: train, query or gallery
                                paths relative to the CSV's folder, inside it"""


def csv_rows(file: Path) -> Iterator[Tuple[int, List[str]]]:
    """``(line number, fields)`` of every non-blank row of a UTF-8 CSV file (a BOM is allowed); undecodable bytes
    and malformed quoting are DatasetErrors naming the file and line."""
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DatasetError(f"{file} line {line}: not UTF-8 text ({data[e.start:e.start + 20]!r}); save the CSV "
                           f"file as UTF-8.") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DatasetError(f"{file} line {reader.line_num}: malformed CSV ({e}); expected comma-separated "
                               f"fields, quoted with \" where they hold a comma or a quote.") from None
        if any(f.strip() for f in fields):
            yield reader.line_num, fields


def header_columns(fields: Sequence[str], expected: Sequence[str], where: str) -> Dict[str, int]:
    """Column index of each ``expected`` name in a header row; a missing or repeated column is an error."""
    names = [f.strip().lower() for f in fields]
    missing = [c for c in expected if c not in names]
    repeated = sorted({n for n in names if n in expected and names.count(n) > 1})
    if missing or repeated:
        problem = f"missing column(s) {', '.join(missing)}" if missing else f"repeated column(s) {', '.join(repeated)}"
        raise DatasetError(f"{where}: {problem}; expected the header {','.join(expected)} (got "
                           f"{','.join(fields)[:200]!r}).")
    return {c: names.index(c) for c in expected}


def relative_image(rel: str, base: str, where: str, relative_to: str) -> str:
    """The path of an image listed as ``rel``, relative to the folder ``base`` (a real path); absolute paths,
    paths leaving ``base`` (``..``, links) and NUL characters are errors naming ``where``."""
    if not rel:
        raise DatasetError(f"{where}: the path is empty; expected an image path relative to {relative_to}.")
    if "\0" in rel:
        raise DatasetError(f"{where}: the path {rel[:200]!r} contains a NUL character.")
    if os.path.isabs(rel):
        raise DatasetError(f"{where}: {rel[:200]!r} is an absolute path; expected a path relative to "
                           f"{relative_to} ({base!r}).")
    path = os.path.join(base, rel)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base:
        raise DatasetError(f"{where}: {rel[:200]!r} points outside {relative_to} ({base!r}); paths must stay "
                           f"inside it (no '..', no links that leave it).")
    return path


class CsvRow(NamedTuple):
    split: str
    path: str
    name: str
    camid: int


@DATASET_REGISTRY.register("csv", argument="FILE")
class CsvDataset(ReIDDataset):
    """Images listed in a CSV file; identities are the ``pid`` column's text (any string), relabelled like
    folder datasets: train in sorted order, query and gallery through one shared mapping."""

    COLUMNS = ("path", "pid", "camid", "split")
    LAYOUT = CSV_LAYOUT

    def __init__(self, root: str, cfg: CfgNode, arg: str) -> None:
        file = resolve_data_path(root, arg, f"csv:{arg}", self.LAYOUT, want_file=True)
        rows = self.read(file)
        if not rows:
            raise DatasetError(f"{file} lists no images; expected a header {','.join(self.COLUMNS)} and one line "
                               f"per image:\n{self.LAYOUT}")
        check_duplicates((r.split, r.name, r.path, f"{file} line {line}") for line, r in rows)
        by_split = {s: [r for _, r in rows if r.split == s] for s in SPLITS}
        train_ids = identity_ids(r.name for r in by_split["train"])
        test_ids = identity_ids(r.name for r in by_split["query"] + by_split["gallery"])
        super().__init__(
            f"csv:{arg}", str(file),
            [ImageRecord(r.path, train_ids[r.name], r.camid, r.name) for r in by_split["train"]],
            [ImageRecord(r.path, test_ids[r.name], r.camid, r.name) for r in by_split["query"]],
            [ImageRecord(r.path, test_ids[r.name], r.camid, r.name) for r in by_split["gallery"]])

    @classmethod
    def read(cls, file: Path) -> List[Tuple[int, CsvRow]]:
        """Every row of ``file`` with its line number; the first non-blank row is the header."""
        base = os.path.realpath(file.parent)
        rows = csv_rows(file)
        first = next(rows, None)
        if first is None:
            raise DatasetError(f"{file} is empty; expected the header {','.join(cls.COLUMNS)} and one line per "
                               f"image:\n{cls.LAYOUT}")
        columns = header_columns(first[1], cls.COLUMNS, f"{file} line {first[0]}")
        width = len(first[1])
        return [(line, cls.parse_row(fields, columns, width, base, f"{file} line {line}")) for line, fields in rows]

    @classmethod
    def parse_row(cls, fields: Sequence[str], columns: Dict[str, int], width: int, base: str, where: str) -> CsvRow:
        """One data row (``width`` fields, as many as the header); any other row is a DatasetError naming
        ``where`` (the file and line) and what was expected."""
        if len(fields) != width:
            raise DatasetError(f"{where}: {len(fields)} field(s) where the header has {width}; expected "
                               f"{','.join(cls.COLUMNS)} (e.g. train/a/001.jpg,alice,0,train), got "
                               f"{','.join(fields)[:200]!r}.")
        rel, name, camid, split = (fields[columns[c]].strip() for c in cls.COLUMNS)
        if split.lower() not in SPLITS:
            raise DatasetError(f"{where}: split {split[:50]!r} is not one of {', '.join(SPLITS)}.")
        if not name:
            raise DatasetError(f"{where}: the pid is empty; expected the identity's name or number.")
        if camid and not (camid.isascii() and camid.isdigit() and len(camid) <= 9):
            raise DatasetError(f"{where}: camid {camid[:50]!r} is not a camera number (an integer >= 0, the first "
                               f"camera 0); leave it empty when the camera is unknown.")
        path = relative_image(rel, base, where, "the CSV file's folder")
        if not is_image_name(rel):
            raise DatasetError(f"{where}: {rel[:200]!r} is not an image file name (expected .jpg, .png, ...).")
        if not os.path.isfile(path):
            raise DatasetError(f"{where}: image {path!r} does not exist.")
        return CsvRow(split.lower(), path, name, int(camid) if camid else UNKNOWN_CAMERA)
