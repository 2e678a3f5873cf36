"""The record and dataset types every dataset parser produces (the contract in CONTRIBUTING.md)."""
from __future__ import annotations

import difflib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from ...registry import DATASET_REGISTRY  # noqa: F401 - re-exported: name in DATASETS.NAMES / TESTS -> Cls(root, cfg)
from ...utils.errors import DatasetError

UNKNOWN_CAMERA = -1  # camid of an image whose camera is not known (folder / CSV sets without camera ids)
SPLITS = ("train", "query", "gallery")  # a dataset's record lists (ReIDDataset attributes, folder / CSV split names)


@dataclass(frozen=True)
class ImageRecord:
    """One image: its path, identity (train: relabelled 0..N-1; test: original, 0 distractor, -1 junk), 0-based
    camera (-1: unknown) and, where the source names its identities (folder, CSV), that name for reports."""

    path: str
    pid: int
    camid: int
    identity_name: str = ""


@dataclass(frozen=True)
class TrackletRecord:
    """One tracklet of a video dataset (MARS, iLIDS-VID, PRID-2011, DukeMTMC-VideoReID): its frames in temporal
    order, identity and camera as for an ImageRecord. ``path`` is the first frame, so that code written for images
    (duplicate checks, image ids, reports) keeps working on tracklets."""

    paths: Tuple[str, ...]
    pid: int
    camid: int
    identity_name: str = ""

    @property
    def path(self) -> str:
        return self.paths[0]


Record = Union[ImageRecord, TrackletRecord]


@dataclass(frozen=True)
class Split:
    """One train / query / gallery partition of a protocol that has several: the random splits of VIPeR, GRID,
    CUHK01, iLIDS, PRID, CUHK03's classic protocol, iLIDS-VID and PRID-2011, or VehicleID's random gallery draws.
    Metrics are averaged over a dataset's ``splits``; ``DATASETS.SPLIT_ID`` chooses the one a run uses."""

    train: List[Record]
    query: List[Record]
    gallery: List[Record]


class ReIDDataset:
    """Train / query / gallery record lists of one dataset, parsed once.

    A dataset registered with an ``argument`` (``@DATASET_REGISTRY.register("folder", argument="PATH")``) is
    chosen by an entry ``NAME:ARG`` and built as ``Cls(root, cfg, arg=ARG)``; the others as ``Cls(root, cfg)``.
    ``parts`` are the datasets a merged training set was made of. ``splits`` are every partition of a protocol
    with several (see :class:`Split`); ``train`` / ``query`` / ``gallery`` are the one chosen by
    ``DATASETS.SPLIT_ID``. A dataset with one fixed partition has ``splits == [Split(train, query, gallery)]``.
    """

    FOLDERS: Tuple[str, ...] = ()  # a release's folder names under DATASETS.ROOT, in order of preference
    MARKERS: Tuple[str, ...] = ()  # what such a folder holds (to recognise DATASETS.ROOT pointing into it)
    LAYOUT = ""  # the expected layout, shown in errors

    def __init__(self, name: str, root: str, train: List[ImageRecord], query: List[ImageRecord],
                 gallery: List[ImageRecord], parts: Sequence["ReIDDataset"] = (),
                 splits: Sequence[Split] = (), split_id: int = 0) -> None:
        self.name = name
        self.root = root
        self.train = train
        self.query = query
        self.gallery = gallery
        self.parts = list(parts)
        self.splits = list(splits) or [Split(train, query, gallery)]
        self.split_id = split_id

    @classmethod
    def dataset_folder(cls, root: str, arg: Optional[str]) -> Path:
        """The release folder found under ``root`` (one of ``FOLDERS``), or for an entry ``NAME:PATH`` the folder
        PATH, absolute or relative to ``root``."""
        if arg is None:
            return find_dataset_folder(root, cls.FOLDERS, cls.LAYOUT, cls.MARKERS)
        return resolve_data_path(root, arg, f"{cls.__name__}:{arg}", cls.LAYOUT)

    @property
    def is_video(self) -> bool:
        """Whether the records are tracklets (a video dataset)."""
        return any(isinstance(r, TrackletRecord) for subset in (self.train, self.query, self.gallery)
                   for r in subset[:1])

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def summary(self) -> str:
        """A small table for the log: ids (junk excluded), images and cameras per subset, the first pids with their
        names where the dataset names its identities; for a merged training set, one train row per dataset it was
        made of (their identities are kept apart)."""
        video = self.is_video
        rows = [("subset", "# ids", "# tracklets" if video else "# images", "# cameras") + (("# frames",) * video)]
        for subset in SPLITS:
            rows.append((subset, *_counts(getattr(self, subset))) + ((_frames(getattr(self, subset)),) * video))
        for part in self.parts:
            split = f", split {part.split_id} of {len(part.splits)}" if len(part.splits) > 1 else ""
            rows.append((f"  train of {part.name}{split}", *_counts(part.train)) + ((_frames(part.train),) * video))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [" | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        text = f"Dataset {self.name} ({self.root})\n" + "\n".join("  " + line for line in lines)
        if len(self.splits) > 1:
            text += (f"\n  split {self.split_id} of 0..{len(self.splits) - 1} (DATASETS.SPLIT_ID); the protocol "
                     f"averages the metrics over all {len(self.splits)} (reid-train --all-splits)")
        for subset in SPLITS:
            named = {r.pid: r.identity_name for r in getattr(self, subset) if r.identity_name}
            if named:
                shown = ", ".join(f"{pid} {named[pid]!r}" for pid in sorted(named)[:4])
                text += f"\n  {subset} identities: {shown}{', ...' if len(named) > 4 else ''}"
        if self.parts:
            text += (f"\n  identity namespaces kept apart: classifier size {self.num_train_pids} = "
                     f"{' + '.join(str(p.num_train_pids) for p in self.parts)}")
        return text

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, train={len(self.train)}, query={len(self.query)}, "
                f"gallery={len(self.gallery)})")


def _frames(records: Sequence[Record]) -> str:
    return str(sum(len(r.paths) for r in records if isinstance(r, TrackletRecord)))


def _counts(records: Sequence[ImageRecord]) -> Tuple[str, str, str]:
    """(# ids without junk, # images, # cameras) as text; unknown cameras are counted as "unknown"."""
    cams = {r.camid for r in records}
    known = len(cams - {UNKNOWN_CAMERA})
    cameras = str(known) if UNKNOWN_CAMERA not in cams else (f"{known} + unknown" if known else "unknown")
    return str(len({r.pid for r in records if r.pid >= 0})), str(len(records)), cameras


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


def resolve_data_path(root: str, arg: str, entry: str, layout: str, want_file: bool = False) -> Path:
    """The folder (or, with ``want_file``, the file) an entry ``NAME:ARG`` points at: ``ARG`` absolute or relative
    to DATASETS.ROOT; a DatasetError naming it and showing ``layout`` when it is not there."""
    path = Path(arg).expanduser()
    if not path.is_absolute():
        path = Path(root) / path
    if (path.is_file() if want_file else path.is_dir()):
        return path
    what = "file" if want_file else "folder"
    state = "is a folder, not a file" if want_file and path.is_dir() else \
        "is a file, not a folder" if path.is_file() else "does not exist"
    raise DatasetError(f"Dataset {entry!r}: the {what} {str(path)!r} {state} (a relative path is read from "
                       f"DATASETS.ROOT {root!r}). Expected:\n{layout}\n(see datasets/README.md).")


def require_dir(folder: Path, layout: str) -> Path:
    """``folder`` itself, or a DatasetError naming it and showing the expected layout."""
    if not folder.is_dir():
        raise DatasetError(f"Missing folder {str(folder)!r}. Expected layout:\n{layout}\n(see datasets/README.md).")
    return folder


def text_lines(file: Path, hint: str) -> Iterator[Tuple[str, str]]:
    """``(where, line)`` of each non-blank line of a UTF-8 text file, ``where`` = "<file> line <n>"; a line that is
    not UTF-8 is a DatasetError naming it, with ``hint`` (what the file should be)."""
    with open(file, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{file} line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DatasetError(f"{where}: not UTF-8 text ({raw[:60]!r}); {hint}") from None
            if line.strip():
                yield where, line


def require_nonempty(records: Sequence[ImageRecord], what: str, where: Path) -> None:
    """Empty query or gallery sets make every metric meaningless: say so where the data came from."""
    if not records:
        raise DatasetError(f"No {what} images found in {str(where)!r}; the folder or list is empty.")


CROSS_CAMERA = "cross-camera"
SAME_IMAGE = "same-image removal"
SAME_TRACKLET = "same-tracklet removal"  # the same-image rule for tracklets: ids equal for the same frames


@dataclass(frozen=True)
class EvalProtocol:
    """Which gallery items of its own identity a query is not matched with, and why this rule applies.

    ``cross-camera`` (Market-1501 / MSMT17): the same-camera ones. ``same-image removal``: only the query's own
    file when it is also in the gallery; for sets without camera ids, or from one camera, where the cross-camera
    rule would remove every true match. ``same-tracklet removal``: the same rule for tracklets (a video set), only
    the query's own tracklet.
    """

    name: str
    reason: str

    @property
    def cross_camera(self) -> bool:
        return self.name == CROSS_CAMERA


def choose_protocol(query: Sequence[ImageRecord], gallery: Sequence[ImageRecord], cross_camera: bool) -> EvalProtocol:
    """The cross-camera protocol when ``cross_camera`` (TEST.CROSS_CAMERA) is set and every image's camera is
    known and there are at least two; otherwise same-image removal (same-tracklet removal for tracklets), with the
    reason."""
    video = any(isinstance(r, TrackletRecord) for r in (*query[:1], *gallery[:1]))
    same, items, item = (SAME_TRACKLET, "tracklets", "tracklet") if video else (SAME_IMAGE, "images", "image")
    if not cross_camera:
        return EvalProtocol(same, "TEST.CROSS_CAMERA is False")
    records = [r for r in (*query, *gallery) if r.pid != -1]
    unknown = sum(r.camid == UNKNOWN_CAMERA for r in records)
    if unknown:
        return EvalProtocol(same, f"{unknown} of {len(records)} {items} have no camera id")
    cameras = {r.camid for r in records}
    if len(cameras) == 1:
        return EvalProtocol(same, f"every {item} comes from one camera (camera {next(iter(cameras)) + 1})")
    return EvalProtocol(CROSS_CAMERA, f"{len(cameras)} cameras")


def image_ids(records: Sequence[Record]) -> List[int]:
    """Per record, the index of the first record of the same file (by real path): equal ids = the same image; for
    tracklets, the same frames (the same tracklet)."""
    first: Dict[object, int] = {}
    return [first.setdefault(tuple(map(os.path.realpath, r.paths)) if isinstance(r, TrackletRecord)
                             else os.path.realpath(r.path), i) for i, r in enumerate(records)]


def queries_without_match(query: Sequence[ImageRecord], gallery: Sequence[ImageRecord],
                          same_image_ids: Optional[Sequence[int]] = None) -> List[ImageRecord]:
    """The queries (junk excluded) without a true match in the gallery.

    Cross-camera rule (``same_image_ids`` None): a true match is a gallery image of the query's identity from
    another camera. Same-image rule: ``same_image_ids`` (query then gallery, see :func:`image_ids`) are given and a
    true match is any gallery image of the query's identity other than the query's own file. Junk (pid -1) never
    counts.
    """
    keys: Dict[int, Set[int]] = defaultdict(set)  # pid -> cameras (or image ids) of its gallery images
    for j, r in enumerate(gallery):
        if r.pid != -1:
            keys[r.pid].add(r.camid if same_image_ids is None else same_image_ids[len(query) + j])
    if same_image_ids is None:
        return [r for r in query if r.pid != -1 and not keys.get(r.pid, set()) - {r.camid}]
    return [r for i, r in enumerate(query) if r.pid != -1 and not keys.get(r.pid, set()) - {same_image_ids[i]}]


def describe_identity(r: ImageRecord) -> str:
    """``identity 'alice', pid 3, camera 2`` for messages; the identity name only where the dataset has one."""
    who = f"identity {r.identity_name!r}, " if r.identity_name else ""
    return f"{who}pid {r.pid}, " + ("camera unknown" if r.camid == UNKNOWN_CAMERA else f"camera {r.camid + 1}")


def check_query_matches(query: Sequence[ImageRecord], gallery: Sequence[ImageRecord], name: str,
                        where: str, same_image_ids: Optional[Sequence[int]] = None) -> int:
    """Raise a DatasetError when no query has a true match in the gallery; return how many queries lack one.

    A true match (the Market-1501 / MSMT17 protocol) is a gallery image of the query's identity from another
    camera; same-camera images and junk (pid -1) do not count. Under the same-image rule (``same_image_ids``
    given, see :func:`queries_without_match`) it is any other image of the identity. Junk queries (pid -1, kept
    by ``DATASETS.KEEP_JUNK``) are never counted. Checked on the records, before any image is embedded.
    """
    real = [r for r in query if r.pid != -1]
    lacking = queries_without_match(query, gallery, same_image_ids)
    if real and len(lacking) == len(real):
        first = lacking[0]
        in_gallery = any(r.pid == first.pid for r in gallery)
        if same_image_ids is None:
            rule = "an image of the same identity from another camera (same-camera and junk images do not count)"
            found = "only same-camera images" if in_gallery else "no image"
            fix = ("Check that query and gallery come from the same dataset release; if the identities are each "
                   "seen by one camera only (e.g. crops from one tracking sequence), set TEST.CROSS_CAMERA False "
                   "to evaluate with same-image removal")
        else:
            rule = "another image of the same identity (the query's own file and junk do not count)"
            found = "only its own file" if in_gallery else "no image"
            fix = "Put other images of the query identities into the gallery"
        raise DatasetError(
            f"None of the {len(real)} queries of {name} ({where}) has a true match in its gallery: {rule}. E.g. "
            f"query {os.path.basename(first.path)!r} ({describe_identity(first)}) has {found} of "
            f"its identity in the gallery, so every metric would be undefined. {fix}."
        )
    return len(lacking)


def relabel(records: Iterable[ImageRecord]) -> List[ImageRecord]:
    """Map the original train ids to 0..N-1 in sorted order (the classifier's labels); names are kept."""
    records = list(records)
    mapping: Dict[int, int] = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [replace(r, pid=mapping[r.pid]) for r in records]


_DIGITS = re.compile(r"(\d+)", re.ASCII)


def _natural_key(name: str) -> Tuple[tuple, str]:
    """Text order with runs of digits compared as numbers ("id2" before "id10", "2" before "10")."""
    parts = _DIGITS.split(name)  # text, number, text, number, ..., text
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def identity_ids(names: Iterable[str]) -> Dict[str, int]:
    """Identity names (folder names, CSV pids) -> 0..N-1 in sorted order, runs of digits compared as numbers; the
    same for every split that uses the mapping (query and gallery share one)."""
    return {name: i for i, name in enumerate(sorted(set(names), key=_natural_key))}


# A camera token in a file name: "c" + digits at the start or after a non-alphanumeric character, followed by
# an "s<digits>" sequence (Market-1501's c3s1), a non-alphanumeric character or the end: "x_c3_1.jpg", "0002_c3s1_".
_CAMERA_TOKEN = re.compile(r"(?:^|(?<=[^A-Za-z0-9]))c(\d{1,9})(?=s\d|[^A-Za-z0-9]|$)", re.ASCII)


def camera_token(file_name: str) -> Optional[int]:
    """The camera number of the first ``c<digits>`` token of a file name (as written, 1 = first camera), else
    None."""
    match = _CAMERA_TOKEN.search(os.path.splitext(file_name)[0])
    return int(match.group(1)) if match else None


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def is_image_name(name: str) -> bool:
    """Images are checked against the naming scheme; anything else (Thumbs.db, .DS_Store, readme) is ignored."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def check_duplicates(entries: Iterable[Tuple[str, str, str, str]]) -> None:
    """Each ``(split, identity name, path, where)`` is one listed image; the same file (by real path) twice in a
    split, in train and in a test split, or in query and gallery under two identities is a DatasetError naming
    both places. The same file in query and gallery under one identity is allowed: the evaluation never matches a
    query with its own file."""
    seen: Dict[str, Dict[str, Tuple[str, str]]] = {}  # real path -> split -> (identity name, where)
    for split, name, path, where in entries:
        by_split = seen.setdefault(os.path.realpath(path), {})
        for other, (other_name, other_where) in by_split.items():
            if other == split:
                problem = f"twice in the {split} split"
            elif "train" in (split, other):
                problem = (f"in both the {other} and the {split} split (a test image seen in training inflates "
                           f"every metric)")
            elif other_name != name:
                problem = f"in {other} as identity {other_name!r} and in {split} as identity {name!r}"
            else:
                continue
            raise DatasetError(f"{other_where} and {where} are the same image ({os.path.realpath(path)!r}), "
                               f"{problem}. Expected every image once per split, never in train and a test split; "
                               f"remove one of them.")
        by_split[split] = (name, where)
