"""Re-ID crops from tracking ground truth: MOT-challenge sequences in, the Market-1501 layout out.

A sequence is ``SEQ/img1/<frame>.jpg``, ``SEQ/gt/gt.txt`` and ``SEQ/seqinfo.ini`` (optional here: without it the
frames are ``img1/*.jpg`` and their size is read from the first one). gt.txt lines are
``frame,track,left,top,width,height[,flag,class,visibility]`` with 1-based pixel coordinates; the last three
columns are those of MOT16/17/20 (flag 0 = not to be evaluated, class 1 = pedestrian) and are only read when a
line has exactly nine fields (MOT15's ten hold a confidence and world coordinates instead).

An identity is a (sequence, track); its camera is the sequence's (numbered in sorted order from 1) or a user
mapping. Identities are split into train and test; a test identity's queries are spread over its track's time
span and the rest of its crops form its gallery, so queries are matched across time, not across cameras.
"""
from __future__ import annotations

import configparser
import json
import math
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ...utils.errors import DatasetError
from ...utils.files import file_sha256
from ..datasets.base import text_lines
from ..datasets.market1501 import SPLIT_FOLDERS, market_file_name
from ..io import read_image

MOT_LAYOUT = """\
  MOT_ROOT/                     a folder of sequences (or one sequence itself)
    SEQ/
      img1/000001.jpg ...       the frames
      gt/gt.txt                 frame,track,left,top,width,height,flag,class,visibility (1-based pixels)
      seqinfo.ini               [Sequence] imDir, imExt, imWidth, imHeight (optional)"""
MANIFEST = "mot2reid.json"
PEDESTRIAN = 1  # MOT17 / MOT20 class of a walking or standing pedestrian

FRAME_FIX = "Re-extract the sequence's frames (a MOT sequence needs every frame its ground truth names)"


class MotBox(NamedTuple):
    """One gt.txt line; ``flag``, ``cls`` and ``visibility`` are None where the line does not give them."""

    frame: int
    track: int
    left: float  # 1-based, as in the file
    top: float
    width: float
    height: float
    flag: Optional[int]
    cls: Optional[int]
    visibility: Optional[float]


def _number(text: str, where: str, what: str, integer: bool) -> float:
    """A finite number (``integer``: a whole one, also written ``12.0`` as some tools do)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or (integer and not value.is_integer()):
        raise DatasetError(f"{where}: {what} {text.strip()[:40]!r} is not a{'n integer' if integer else ' number'}; "
                           f"expected frame,track,left,top,width,height[,flag,class,visibility].")
    return int(value) if integer else value


def parse_gt_line(line: str, where: str) -> MotBox:
    """The box of one gt.txt line; anything else is a DatasetError naming ``where`` (file and line)."""
    fields = line.strip().split(",")
    if len(fields) < 6:
        raise DatasetError(f"{where}: {len(fields)} field(s); expected frame,track,left,top,width,height"
                           f"[,flag,class,visibility], got {line.strip()[:200]!r}.")
    frame, track = (int(_number(f, where, what, True)) for f, what in zip(fields[:2], ("frame", "track id")))
    left, top, width, height = (_number(f, where, what, False)
                                for f, what in zip(fields[2:6], ("left", "top", "width", "height")))
    if frame < 1:
        raise DatasetError(f"{where}: frame {frame} is not a frame number (they start at 1).")
    if width < 0 or height < 0:
        raise DatasetError(f"{where}: negative box size {width} x {height}.")
    flag = cls = visibility = None
    if len(fields) == 9:
        flag = int(_number(fields[6], where, "flag", True))
        cls = int(_number(fields[7], where, "class", True))
        visibility = _number(fields[8], where, "visibility", False)
    return MotBox(frame, track, left, top, width, height, flag, cls, visibility)


@dataclass
class MotSequence:
    """One sequence (named by its folder): where its frames are and how big they are."""

    folder: Path
    img_dir: Path
    ext: str
    width: int
    height: int

    def frame_path(self, frame: int) -> Path:
        return self.img_dir / f"{frame:06d}{self.ext}"


def read_sequence(folder: Path) -> MotSequence:
    """A sequence folder's frames and size (seqinfo.ini, else img1/ and its first frame)."""
    info = configparser.ConfigParser(interpolation=None)
    ini = folder / "seqinfo.ini"
    try:
        info.read(ini, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise DatasetError(f"{ini} is not a seqinfo.ini file ({type(e).__name__}: {str(e)[:200]}); expected:\n"
                           f"{MOT_LAYOUT}") from None
    seq = info["Sequence"] if info.has_section("Sequence") else {}
    img_dir = folder / seq.get("imDir", "img1")
    ext = seq.get("imExt", ".jpg")
    if not img_dir.is_dir():
        raise DatasetError(f"MOT sequence {str(folder)!r} has no frame folder {str(img_dir)!r}; expected:\n"
                           f"{MOT_LAYOUT}")
    if "imWidth" in seq and "imHeight" in seq:
        try:
            width, height = int(seq["imWidth"]), int(seq["imHeight"])
        except ValueError:
            raise DatasetError(f"{ini}: imWidth / imHeight {seq['imWidth']!r} / {seq['imHeight']!r} are not "
                               f"integers.") from None
    else:
        frames = sorted(p for p in img_dir.iterdir() if p.suffix == ext)
        if not frames:
            raise DatasetError(f"MOT sequence {str(folder)!r}: no {ext} frames in {str(img_dir)!r}.")
        width, height = read_image(str(frames[0]), FRAME_FIX).size
    return MotSequence(folder, img_dir, ext, width, height)


def read_gt(file: Path) -> List[MotBox]:
    """Every box of a gt.txt file; a malformed line or a track seen twice in one frame names the line."""
    if not file.is_file():
        raise DatasetError(f"MOT sequence {str(file.parent.parent)!r} has no ground truth {str(file)!r} (MOT "
                           f"challenge test sequences come without it): remove the sequence or name the others with "
                           f"--sequences. Expected:\n{MOT_LAYOUT}")
    boxes: List[MotBox] = []
    first: Dict[Tuple[int, int], str] = {}
    for where, line in text_lines(file, "is it a MOT gt.txt file?"):
        box = parse_gt_line(line, where)
        key = (box.frame, box.track)
        if key in first:
            raise DatasetError(f"{where}: track {box.track} has a second box in frame {box.frame} (the first: "
                               f"{first[key]}); a track has one box per frame.")
        first[key] = where
        boxes.append(box)
    return boxes


def find_sequences(root: Path, names: Sequence[str] = ()) -> List[Path]:
    """The sequence folders under ``root`` (or ``root`` itself when it is one), in name order; ``names`` selects
    some."""
    if not root.is_dir():
        raise DatasetError(f"--mot-root {str(root)!r} is not a folder. Expected:\n{MOT_LAYOUT}")

    def is_sequence(p: Path) -> bool:
        return (p / "seqinfo.ini").is_file() or (p / "img1").is_dir()

    folders = [root] if is_sequence(root) else sorted(p for p in root.iterdir() if p.is_dir() and is_sequence(p))
    if names:
        missing = sorted(set(names) - {p.name for p in folders})
        if missing:
            raise DatasetError(f"--sequences names {', '.join(missing)}, not found in {str(root)!r} (found "
                               f"{', '.join(p.name for p in folders) or 'none'}).")
        folders = [p for p in folders if p.name in set(names)]
    if not folders:
        raise DatasetError(f"No MOT sequence in {str(root)!r} (a folder with seqinfo.ini or img1/). Expected:\n"
                           f"{MOT_LAYOUT}")
    return folders


@dataclass
class Mot2ReidOptions:
    """What is cropped and how it is split (the options of reid-mot2reid)."""

    stride: int = 10  # keep frames 1, 1 + stride, ...: neighbouring frames are near-duplicates
    min_height: int = 50  # pixels, after clipping to the frame
    min_visibility: float = 0.25  # visible share of the person (MOT16/17/20 visibility column)
    pedestrians_only: bool = True  # MOT16/17/20 class 1 only (where the class column exists)
    test_fraction: float = 0.5  # share of identities in the test split
    queries_per_id: int = 1  # queries per test identity, spread over its track's time span
    seed: int = 0  # the train/test split of identities
    cameras: Dict[str, int] = field(default_factory=dict)  # sequence -> camera from 1 (default: one per sequence)

    def check(self) -> None:
        checks = [("--stride", self.stride >= 1, ">= 1"), ("--min-height", self.min_height >= 0, ">= 0"),
                  ("--min-visibility", 0.0 <= self.min_visibility <= 1.0, "in [0, 1]"),
                  ("--test-fraction", 0.0 < self.test_fraction <= 1.0, "in (0, 1] (the output needs a test split)"),
                  ("--queries-per-id", self.queries_per_id >= 1, ">= 1"),
                  ("--camera", all(c >= 1 for c in self.cameras.values()), "a camera number from 1")]
        for name, ok, expected in checks:
            if not ok:
                raise DatasetError(f"{name} must be {expected}.")


class _Crop(NamedTuple):
    seq: int  # index of the sequence
    frame: int
    track: int
    box: Tuple[int, int, int, int]  # x0, y0, x1, y1 (0-based, clipped, exclusive end)


@dataclass
class Mot2ReidSummary:
    """What a conversion read and wrote."""

    output: str
    sequences: Dict[str, int]  # sequence -> camera
    duplicates: Dict[str, str]  # sequence left out -> the sequence with the same ground truth
    identities: Dict[str, int]  # train / test -> identities
    crops: Dict[str, int]  # train / query / gallery -> crops written
    skipped: Dict[str, int]  # reason -> boxes
    gallery_only: int  # test identities with a single crop (in the gallery, never a query)

    def format(self) -> str:
        seqs = ", ".join(f"{name} (camera {cam})" for name, cam in self.sequences.items())
        lines = [f"Read {len(self.sequences)} sequence(s): {seqs}"]
        lines += [f"  left out {name}: same ground truth as {kept}" for name, kept in self.duplicates.items()]
        lines.append(f"Identities: {self.identities['train']} train, {self.identities['test']} test "
                     f"({self.gallery_only} test identities with one crop are in the gallery only)")
        lines.append(f"Crops written: {self.crops['train']} train, {self.crops['query']} query, "
                     f"{self.crops['gallery']} gallery")
        if self.skipped:
            lines.append("Boxes not cropped: " + ", ".join(f"{n} {reason}" for reason, n in self.skipped.items()))
        lines.append(f"Written to {self.output} (Market-1501 layout). Train and evaluate on it with:\n"
                     f"  DATASETS.NAMES \"['Market1501:{self.output}']\" DATASETS.TESTS "
                     f"\"['Market1501:{self.output}']\" TEST.CROSS_CAMERA False\n"
                     f"(every identity is seen by one camera: queries are matched across time, not cameras)")
        return "\n".join(lines)


def _keep(box: MotBox, frame_size: Tuple[int, int], opts: Mot2ReidOptions,
          skipped: Counter) -> Optional[Tuple[int, int, int, int]]:
    """The clipped crop box of ``box``, or None after counting why it is not cropped."""
    if box.flag == 0:
        skipped["marked not to evaluate (flag 0)"] += 1
    elif opts.pedestrians_only and box.cls is not None and box.cls != PEDESTRIAN:
        skipped[f"not pedestrians (class != {PEDESTRIAN})"] += 1
    elif (box.frame - 1) % opts.stride:
        skipped[f"between strided frames (--stride {opts.stride})"] += 1
    elif box.visibility is not None and box.visibility < opts.min_visibility:
        skipped[f"less visible than {opts.min_visibility}"] += 1
    else:
        w, h = frame_size
        x0, y0 = max(0, round(box.left - 1)), max(0, round(box.top - 1))
        x1, y1 = min(w, round(box.left - 1 + box.width)), min(h, round(box.top - 1 + box.height))
        if x1 <= x0 or y1 <= y0:
            skipped["empty after clipping to the frame"] += 1
        elif y1 - y0 < opts.min_height:
            skipped[f"lower than {opts.min_height} px"] += 1
        else:
            return x0, y0, x1, y1
    return None


def _split(crops: Dict[Tuple[int, int], List[_Crop]], opts: Mot2ReidOptions) -> Tuple[Dict[str, List[_Crop]], int, int]:
    """Identities into train / test (a seeded permutation), a test identity's crops into query / gallery."""
    keys = sorted(crops)
    order = np.random.default_rng(opts.seed).permutation(len(keys))
    num_test = max(1, round(opts.test_fraction * len(keys)))
    test = {keys[i] for i in order[:num_test]}
    out: Dict[str, List[_Crop]] = {"train": [], "query": [], "gallery": []}
    gallery_only = 0
    for key in keys:
        track = sorted(crops[key], key=lambda c: c.frame)
        if key not in test:
            out["train"] += track
            continue
        n = len(track)
        q = min(opts.queries_per_id, n - 1)
        gallery_only += q == 0
        picks = {int((k + 0.5) * n / q) for k in range(q)} if q else set()
        out["query"] += [c for i, c in enumerate(track) if i in picks]
        out["gallery"] += [c for i, c in enumerate(track) if i not in picks]
    return out, num_test, gallery_only


def _cameras(seqs: Sequence[MotSequence], mapping: Dict[str, int]) -> List[int]:
    if not mapping:
        return list(range(1, len(seqs) + 1))
    unknown = sorted(set(mapping) - {s.folder.name for s in seqs})
    if unknown:
        raise DatasetError(f"--camera names sequence(s) {', '.join(unknown)} that were not read (sequences: "
                           f"{', '.join(s.folder.name for s in seqs)}).")
    missing = [s.folder.name for s in seqs if s.folder.name not in mapping]
    if missing:
        raise DatasetError(f"--camera gives no camera for {', '.join(missing)}; give one for every sequence "
                           f"(--camera SEQ=N) or none (one camera per sequence).")
    return [mapping[s.folder.name] for s in seqs]


def _prepare_output(output: Path, overwrite: bool) -> Path:
    """A fresh temporary folder beside ``output``; refuses to replace a folder mot2reid did not write."""
    if output.exists() and any(output.iterdir()):
        if not (output / MANIFEST).is_file():
            raise DatasetError(f"--output {str(output)!r} exists and was not written by mot2reid (no {MANIFEST}); "
                               f"choose another folder.")
        if not overwrite:
            raise DatasetError(f"--output {str(output)!r} holds an earlier conversion; pass --overwrite to replace "
                               f"it or choose another folder.")
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}-tmp-", dir=output.parent))


def mot_to_reid(mot_root: str | Path, output: str | Path, opts: Optional[Mot2ReidOptions] = None,
                sequences: Sequence[str] = (), overwrite: bool = False, progress: bool = True) -> Mot2ReidSummary:
    """Crop every kept box of the sequences under ``mot_root`` into ``output`` (bounding_box_train/, query/,
    bounding_box_test/, as ``<pid>_c<camera>s<sequence>_<frame>_00.jpg``), with ``identities.csv`` (pid ->
    sequence, track) and ``mot2reid.json`` (options and summary). Written into a temporary folder and renamed into
    place, so an interrupted run leaves nothing half-written."""
    opts = opts or Mot2ReidOptions()
    opts.check()
    output = Path(output).resolve()
    boxes, duplicates, digests = [], {}, {}
    for folder in find_sequences(Path(mot_root), sequences):
        gt = folder / "gt" / "gt.txt"
        seq_boxes = read_gt(gt)
        digest = file_sha256(gt)
        if digest in digests:  # MOT17 ships each sequence three times (one per public detector), same gt
            duplicates[folder.name] = digests[digest]
            continue
        digests[digest] = folder.name
        boxes.append((read_sequence(folder), seq_boxes))
    cameras = _cameras([s for s, _ in boxes], opts.cameras)
    skipped: Counter = Counter()
    crops: Dict[Tuple[int, int], List[_Crop]] = defaultdict(list)
    for i, (seq, seq_boxes) in enumerate(boxes):
        for box in seq_boxes:
            clipped = _keep(box, (seq.width, seq.height), opts, skipped)
            if clipped is not None:
                crops[(i, box.track)].append(_Crop(i, box.frame, box.track, clipped))
    if not crops:
        raise DatasetError(f"No box of {str(mot_root)!r} passed the filters ({dict(skipped)}); lower --min-height / "
                           f"--min-visibility or --stride.")
    splits, num_test, gallery_only = _split(crops, opts)
    if not splits["query"]:
        raise DatasetError(f"No test identity has two crops, so there is no query; lower --stride (now "
                           f"{opts.stride}) or raise --test-fraction.")
    pids = {key: i + 1 for i, key in enumerate(sorted(crops))}
    tmp = _prepare_output(output, overwrite)
    try:
        _write_crops(tmp, [s for s, _ in boxes], cameras, splits, pids, progress)
        summary = Mot2ReidSummary(
            str(output), {s.folder.name: c for (s, _), c in zip(boxes, cameras)}, duplicates,
            {"train": len(crops) - num_test, "test": num_test}, {k: len(v) for k, v in splits.items()},
            dict(skipped), gallery_only)
        with open(tmp / "identities.csv", "w", encoding="utf-8") as f:
            f.write("pid,sequence,track,camera\n")
            f.writelines(f"{pid},{boxes[s][0].folder.name},{t},{cameras[s]}\n" for (s, t), pid in pids.items())
        (tmp / MANIFEST).write_text(json.dumps({"options": asdict(opts), "mot_root": str(mot_root),
                                                "summary": asdict(summary)}, indent=2) + "\n", encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        os.rename(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _write_crops(folder: Path, seqs: Sequence[MotSequence], cameras: Sequence[int], splits: Dict[str, List[_Crop]],
                 pids: Dict[Tuple[int, int], int], progress: bool) -> None:
    """Read each frame once and write its crops."""
    by_frame: Dict[Tuple[int, int], List[Tuple[str, _Crop]]] = defaultdict(list)
    for split, crops in splits.items():
        for c in crops:
            by_frame[(c.seq, c.frame)].append((split, c))
    for sub in SPLIT_FOLDERS.values():
        (folder / sub).mkdir()
    for (s, frame), items in tqdm(sorted(by_frame.items()), desc="mot2reid frames", unit="frame",
                                  disable=not progress):
        seq = seqs[s]
        image = read_image(str(seq.frame_path(frame)), FRAME_FIX)
        if image.size != (seq.width, seq.height):
            raise DatasetError(f"Frame {str(seq.frame_path(frame))!r} is {image.size[0]} x {image.size[1]} pixels, "
                               f"but the sequence's are {seq.width} x {seq.height} (seqinfo.ini or its first frame).")
        for split, c in items:
            name = market_file_name(pids[(c.seq, c.track)], cameras[s] - 1, s + 1, frame, 0)
            image.crop(c.box).save(folder / SPLIT_FOLDERS[split] / name, quality=95)
