"""Synthetic MOT-challenge sequences: the synthetic pedestrians walking along known tracks over a static scene,
written as ``SEQ/img1/*.jpg``, ``SEQ/gt/gt.txt`` and ``SEQ/seqinfo.ini``, so that ``reid-mot2reid`` can be tested
and tried without tracking data.

Each sequence is one camera (its own light, colour cast, background). What a converter has to handle is in every
sequence: people occluding each other (the visibility column is the share of a person's pixels left visible), a
walker leaving the frame (boxes cut by the border, then wholly outside it) and a parked car (class 3, flag 0).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, NamedTuple, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..datasets.pedestrians import VIEWS, apply_camera, background, render_sprite, sample_camera, sample_identity

CAR_TRACK = 1000  # track id of the parked car


class GtRow(NamedTuple):
    """One ground-truth box as written to gt.txt; ``left``/``top`` 0-based pixels (gt.txt holds them + 1)."""

    sequence: str
    frame: int
    track: int
    left: int
    top: int
    width: int
    height: int
    flag: int
    cls: int
    visibility: float


class _Walker(NamedTuple):
    track: int
    identity: object
    height: int
    foot_y: float
    x0: float
    vx: float
    view: str
    phase: float


def _walkers(rng: np.random.Generator, num: int, size: Tuple[int, int]) -> List[_Walker]:
    """``num`` people; the first walks out of the frame through its right border, the others stay inside."""
    h, w = size
    walkers = []
    for k in range(num):
        height = int(rng.uniform(0.45, 0.7) * h)
        foot_y = rng.uniform(height + 2, h - 2)
        if k == 0:
            x0, vx = 0.8 * w, w / 30  # cut by the border, then gone
        else:
            x0, vx = rng.uniform(0.15, 0.85) * w, rng.uniform(-2.0, 2.0)
        view = "side" if abs(vx) > 1.5 else VIEWS[int(rng.integers(2))]
        walkers.append(_Walker(k + 1, sample_identity(rng), height, foot_y, x0, vx, view, rng.uniform(0, 6.3)))
    return walkers


def _write_sequence(folder: Path, name: str, seed: int, num_tracks: int, num_frames: int,
                    size: Tuple[int, int]) -> List[GtRow]:
    h, w = size
    rng = np.random.default_rng(seed)
    cam = sample_camera(rng, int(rng.integers(3)), 0.3)
    scene = background(cam, rng, h, w)
    car = (int(0.05 * w), int(0.62 * h), int(0.3 * w), int(0.18 * h))  # left, top, width, height
    ImageDraw.Draw(scene).rectangle([car[0], car[1], car[0] + car[2] - 1, car[1] + car[3] - 1], fill=(90, 90, 100))
    walkers = _walkers(rng, num_tracks, size)
    (folder / "img1").mkdir(parents=True)
    (folder / "gt").mkdir()
    rows: List[GtRow] = []
    for frame in range(1, num_frames + 1):
        img = scene.copy()
        owner = np.full((h, w), -1, dtype=np.int64)  # who is seen at each pixel (drawn far to near)
        boxes = []
        for walker in sorted(walkers, key=lambda p: p.foot_y):
            x = walker.x0 + walker.vx * (frame - 1)
            sprite = render_sprite(walker.identity, walker.height, walker.view, 1 if walker.vx >= 0 else -1,
                                   0.5 * np.sin(0.6 * frame + walker.phase))
            sw, sh = sprite.size
            left, top = int(round(x - sw / 2)), int(round(walker.foot_y - sh))
            img.paste(sprite, (left, top), sprite)
            mask = np.asarray(sprite.getchannel("A")) >= 128
            y0, y1, x0, x1 = max(top, 0), min(top + sh, h), max(left, 0), min(left + sw, w)
            if y1 > y0 and x1 > x0:
                inside = mask[y0 - top:y1 - top, x0 - left:x1 - left]
                owner[y0:y1, x0:x1][inside] = walker.track
            boxes.append((walker.track, left, top, sw, sh, int(mask.sum())))
        pixels = apply_camera(img, cam, np.random.default_rng([seed, frame]))
        Image.fromarray(pixels).save(folder / "img1" / f"{frame:06d}.jpg", quality=90)
        for track, left, top, sw, sh, area in boxes:
            visible = float((owner == track).sum()) / max(area, 1)
            rows.append(GtRow(name, frame, track, left, top, sw, sh, 1, 1, round(visible, 3)))
        rows.append(GtRow(name, frame, CAR_TRACK, *car, 0, 3, 1.0))
    with open(folder / "gt" / "gt.txt", "w", encoding="utf-8") as f:
        for r in sorted(rows, key=lambda r: (r.track, r.frame)):  # MOT files are sorted by track, then frame
            f.write(f"{r.frame},{r.track},{r.left + 1},{r.top + 1},{r.width},{r.height},{r.flag},{r.cls},"
                    f"{r.visibility}\n")
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate=30\nseqLength={num_frames}\nimWidth={w}\nimHeight={h}\n"
        f"imExt=.jpg\n", encoding="utf-8")
    return rows


def write_synthetic_mot(folder: str | Path, num_sequences: int = 2, tracks_per_sequence: int = 4,
                        num_frames: int = 20, size: Tuple[int, int] = (144, 256), seed: int = 0) -> List[GtRow]:
    """Write ``num_sequences`` sequences ``SYN-01``, ``SYN-02``... of ``num_frames`` frames of ``size`` (height,
    width) into ``folder`` and return every ground-truth row written. Deterministic under ``seed``."""
    folder = Path(folder)
    rows: List[GtRow] = []
    for s in range(num_sequences):
        name = f"SYN-{s + 1:02d}"
        rows += _write_sequence(folder / name, name, seed * 1000 + s, tracks_per_sequence, num_frames, size)
    return rows
