"""The record and dataset types every dataset parser produces (the contract in CONTRIBUTING.md)."""
from __future__ import annotations

import difflib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Set

from ...registry import DATASET_REGISTRY  # noqa: F401 - re-exported: name in DATASETS.NAMES / TESTS -> Cls(root, cfg)
from ...utils.errors import DatasetError


@dataclass(frozen=True)
class ImageRecord:
    """One image: its path, identity (train: relabelled 0..N-1; test: original, 0 distractor, -1 junk) and
    0-based camera."""

    path: str
    pid: int
    camid: int


class ReIDDataset:
    """Train / query / gallery record lists of one dataset, parsed once."""

    def __init__(self, name: str, root: str, train: List[ImageRecord], query: List[ImageRecord],
                 gallery: List[ImageRecord]) -> None:
        self.name = name
        self.root = root
        self.train = train
        self.query = query
        self.gallery = gallery

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def summary(self) -> str:
        """A small table for the log: ids (junk excluded), images and cameras per subset."""
        rows = [("subset", "# ids", "# images", "# cameras")]
        for subset in ("train", "query", "gallery"):
            records = getattr(self, subset)
            ids = len({r.pid for r in records if r.pid >= 0})
            rows.append((subset, str(ids), str(len(records)), str(len({r.camid for r in records}))))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [" | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return f"Dataset {self.name} ({self.root})\n" + "\n".join("  " + line for line in lines)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, train={len(self.train)}, query={len(self.query)}, "
                f"gallery={len(self.gallery)})")


def find_dataset_folder(root: str, candidates: Sequence[str], layout: str, markers: Sequence[str] = ()) -> Path:
    """The first of ``candidates`` (folder names, in order of preference) that exists under ``root``.

    When none does, the error shows the layout and, where it can tell, the likely mistake: ``root`` missing,
    ``root`` being the dataset folder itself (it holds the ``markers``, e.g. ``query/``) or a folder under ``root``
    whose name is close to a candidate's.
    """
    for name in candidates:
        folder = Path(root) / name
        if folder.is_dir():
            return folder
    tried = ", ".join(str(Path(root) / c) for c in candidates)
    hint = ""
    if not Path(root).is_dir():
        hint = f" DATASETS.ROOT {root!r} itself does not exist."
    elif markers and any((Path(root) / m).exists() for m in markers):
        hint = (f" {root!r} looks like the dataset folder itself: DATASETS.ROOT must be the folder that contains "
                f"it, named {candidates[0]!r}.")
    else:
        try:
            present = sorted(e.name for e in os.scandir(root) if e.is_dir())
        except OSError:
            present = []
        lowered = {p.lower().replace("_", "-"): p for p in present}
        close = sorted({lowered[m] for c in candidates
                        for m in difflib.get_close_matches(c.lower().replace("_", "-"), list(lowered), n=2,
                                                           cutoff=0.7)})
        if close:
            hint = f" Found {', '.join(map(repr, close))} there: rename it to {candidates[0]!r}."
    raise DatasetError(f"Dataset folder not found: looked for {tried}.{hint} Expected layout under DATASETS.ROOT "
                       f"({root!r}):\n{layout}\nPut the data there or point DATASETS.ROOT at the folder that "
                       f"holds it (see datasets/README.md).")


def require_dir(folder: Path, layout: str) -> Path:
    """``folder`` itself, or a DatasetError naming it and showing the expected layout."""
    if not folder.is_dir():
        raise DatasetError(f"Missing folder {str(folder)!r}. Expected layout:\n{layout}\n(see datasets/README.md).")
    return folder


def require_nonempty(records: Sequence[ImageRecord], what: str, where: Path) -> None:
    """Empty query or gallery sets make every metric meaningless: say so where the data came from."""
    if not records:
        raise DatasetError(f"No {what} images found in {str(where)!r}; the folder or list is empty.")


def check_query_matches(query: Sequence[ImageRecord], gallery: Sequence[ImageRecord], name: str,
                        where: str) -> int:
    """Raise a DatasetError when no query has a true match in the gallery; return how many queries lack one.

    A true match (the Market-1501 / MSMT17 protocol) is a gallery image of the query's identity from another
    camera; same-camera images and junk (pid -1) do not count. Junk queries (pid -1, kept by
    ``DATASETS.KEEP_JUNK``) are never counted. Checked on the records, before any image is embedded.
    """
    cameras: Dict[int, Set[int]] = defaultdict(set)
    for r in gallery:
        if r.pid != -1:
            cameras[r.pid].add(r.camid)
    real = [r for r in query if r.pid != -1]
    lacking = [r for r in real if not cameras.get(r.pid, set()) - {r.camid}]
    if real and len(lacking) == len(real):
        first = lacking[0]
        raise DatasetError(
            f"None of the {len(real)} queries of {name} ({where}) has a true match in its gallery: an image of the "
            f"same identity from another camera (same-camera and junk images do not count). E.g. query "
            f"{os.path.basename(first.path)!r} (pid {first.pid}, camera {first.camid + 1}) has "
            f"{'only same-camera images' if first.pid in cameras else 'no image'} of its identity in the gallery. "
            f"Check that query and gallery come from the same dataset release; every metric would be undefined."
        )
    return len(lacking)


def relabel(records: Iterable[ImageRecord]) -> List[ImageRecord]:
    """Map the original train ids to 0..N-1 in sorted order (the classifier's labels)."""
    records = list(records)
    mapping: Dict[int, int] = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [ImageRecord(r.path, mapping[r.pid], r.camid) for r in records]


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def is_image_name(name: str) -> bool:
    """Images are checked against the naming scheme; anything else (Thumbs.db, .DS_Store, readme) is ignored."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
