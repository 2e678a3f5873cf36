"""``reid-mot2reid`` / ``tools/mot2reid.py``: re-ID crops (Market-1501 layout) from MOT-challenge tracking ground
truth."""
from __future__ import annotations

import argparse
from typing import Dict, Optional, Sequence

from ..data.prep.mot import Mot2ReidOptions, mot_to_reid
from ..utils.errors import ConfigError
from .parser import plain_parser, run_tool

EPILOG = """examples:
  reid-mot2reid --mot-root data/MOT17/train --output datasets/mot17_reid
  reid-mot2reid --mot-root data/MOT20/train --output datasets/mot20_reid --stride 5 --min-visibility 0.5
  reid-mot2reid --mot-root cams/ --output datasets/cams_reid --camera hall=1 --camera door=2 --camera door_pm=2

(python tools/mot2reid.py ... is the same command.) Reads every sequence under --mot-root (SEQ/img1/*.jpg,
SEQ/gt/gt.txt, SEQ/seqinfo.ini; MOT17's three copies of a sequence, which share one gt.txt, are read once).
An identity is a (sequence, track id); its camera is its sequence's (1, 2, ... in name order) unless --camera
maps sequences to cameras. Boxes are clipped to the frame; what is not cropped is counted by reason. Identities
are split into train and test; each test identity gives --queries-per-id queries spread over its track's time
span, the rest of its crops are its gallery. Output: bounding_box_train/, query/, bounding_box_test/ with
<pid>_c<camera>s<sequence>_<frame>_00.jpg files, identities.csv (pid -> sequence, track, camera) and
mot2reid.json. Train on it with DATASETS.NAMES "['Market1501:OUTPUT']" and evaluate with TEST.CROSS_CAMERA False
(an identity is seen by one camera only)."""


def _camera_map(pairs: Sequence[str]) -> Dict[str, int]:
    mapping: Dict[str, int] = {}
    for pair in pairs:
        seq, eq, cam = pair.rpartition("=")
        if not eq or not seq or not (cam.isascii() and cam.isdigit()):
            raise ConfigError(f"--camera {pair!r}: expected SEQ=N, a sequence folder name and a camera number "
                              f"from 1 (e.g. --camera MOT17-02=1).")
        if seq in mapping:
            raise ConfigError(f"--camera gives sequence {seq!r} twice.")
        mapping[seq] = int(cam)
    return mapping


def build_parser() -> argparse.ArgumentParser:
    d = Mot2ReidOptions()
    parser = plain_parser("Crop re-ID images (Market-1501 layout) from MOT-challenge tracking ground truth.", EPILOG,
                          prog="reid-mot2reid")
    parser.add_argument("--mot-root", required=True, metavar="DIR", help="a folder of MOT sequences, or one sequence")
    parser.add_argument("--output", required=True, metavar="DIR", help="where to write the re-ID set (a new folder, "
                                                                        "or an earlier output with --overwrite)")
    parser.add_argument("--sequences", nargs="+", default=[], metavar="SEQ", help="read only these sequences")
    parser.add_argument("--stride", type=int, default=d.stride,
                        help=f"crop frames 1, 1+N, 1+2N, ... (neighbouring frames are near-duplicates; "
                             f"default {d.stride})")
    parser.add_argument("--min-height", type=int, default=d.min_height,
                        help=f"skip boxes lower than this many pixels after clipping (default {d.min_height})")
    parser.add_argument("--min-visibility", type=float, default=d.min_visibility,
                        help=f"skip boxes whose visibility column is below this (default {d.min_visibility})")
    parser.add_argument("--all-classes", action="store_true",
                        help="keep every class; default: pedestrians only (MOT17/20 class 1)")
    parser.add_argument("--test-fraction", type=float, default=d.test_fraction,
                        help=f"share of identities in the test split, in (0, 1] (default {d.test_fraction})")
    parser.add_argument("--queries-per-id", type=int, default=d.queries_per_id,
                        help=f"queries per test identity, spread over its track (default {d.queries_per_id})")
    parser.add_argument("--camera", action="append", default=[], metavar="SEQ=N",
                        help="camera number (from 1) of a sequence, repeated for every sequence; default: one "
                             "camera per sequence")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of the train/test split (default {d.seed})")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier mot2reid output in --output")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    opts = Mot2ReidOptions(stride=args.stride, min_height=args.min_height, min_visibility=args.min_visibility,
                           pedestrians_only=not args.all_classes, test_fraction=args.test_fraction,
                           queries_per_id=args.queries_per_id, seed=args.seed, cameras=_camera_map(args.camera))
    summary = mot_to_reid(args.mot_root, args.output, opts, sequences=args.sequences, overwrite=args.overwrite)
    print(summary.format())
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
