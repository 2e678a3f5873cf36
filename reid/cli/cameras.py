"""The camera options of reid-extract and reid-search, for models with camera embeddings (SIE: TransReID,
CLIP-ReID), which need each image's camera: ``--camera N`` for every image, or ``--cameras-from-names [REGEX]``
from each image's name. On the command line cameras are numbered from 1, as file names and reid's datasets number
them (Market-1501's ``c1``, MSMT17's ``01``, ``cameras.csv``); the model takes them 0-based (camera 1 -> 0)."""
from __future__ import annotations

import argparse
import os
import re
import textwrap
from typing import List, Optional, Sequence

from ..data.datasets.base import camera_token
from ..utils.errors import ConfigError, DatasetError

TOKEN = "c<digits>"  # --cameras-from-names without REGEX: the camera token of reid's datasets


def camera_help(names: str) -> str:
    """The --help paragraph on cameras; ``names`` says what an image's name is for the command."""
    return textwrap.fill(
        "Cameras (models with camera embeddings, SIE: TransReID, CLIP-ReID): --camera N gives every image camera N; "
        "--cameras-from-names reads each image's camera from the c<digits> token of its file name, as Market-1501 "
        "and reid's folder datasets write it (0002_c3s1_000451_03.jpg, front_c3_0001.jpg: camera 3), and "
        f"--cameras-from-names REGEX from the first group of REGEX, searched in {names}, e.g. '^cam(\\d+)/' for "
        "one folder per camera, or '(?:^|/)\\d+_\\d+_(\\d+)_' for MSMT17's 0003_019_05_... (camera 5). Cameras are "
        "numbered from 1 here, as in the file names; camera 1 is the first camera the model was trained with. A "
        "model with camera embeddings refuses images without cameras; a model without them ignores these options.",
        width=114, break_on_hyphens=False, break_long_words=False)


def add_camera_options(parser: argparse.ArgumentParser, images: str) -> None:
    """``--camera N`` and ``--cameras-from-names [REGEX]`` for the ``images`` (e.g. "--input") of a command."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--camera", type=int, metavar="N",
                       help=f"camera of every {images} image, numbered from 1 (models with camera embeddings)")
    group.add_argument("--cameras-from-names", nargs="?", const=TOKEN, metavar="REGEX",
                       help=f"camera of each {images} image from its name: its {TOKEN} token (default), or the "
                            f"first group of REGEX; numbered from 1")


def cameras_from_args(args: argparse.Namespace, names: Sequence[str], num_cameras: int,
                      images: str) -> Optional[List[int]]:
    """The 0-based cameras of the images ``names`` for a model with ``num_cameras`` SIE cameras, from
    ``--camera`` / ``--cameras-from-names``; None for a model without camera embeddings (a note says the options
    are ignored). An SIE model without either option, a name without a camera and a camera outside 1..num_cameras
    are errors that say what to give."""
    given = "--camera" if args.camera is not None else "--cameras-from-names" if args.cameras_from_names else ""
    if not num_cameras:
        if given:
            print(f"note: the model has no camera embeddings; {given} is ignored")
        return None
    if not given:
        raise ConfigError(f"The model adds a camera embedding (SIE) learned for {num_cameras} cameras and needs the "
                          f"camera of each {images} image: give --camera N (every image from camera N, 1..."
                          f"{num_cameras}) or --cameras-from-names [REGEX] (each image's camera from its name: by "
                          f"default its {TOKEN} token, as in 0002_c3s1_000451_03.jpg; see --help).")
    if args.camera is not None:
        numbers = [args.camera] * len(names)
        source = "--camera"
    else:
        numbers = _numbers_from_names(args.cameras_from_names, names, images)
        source = "--cameras-from-names"
    bad = [(n, c) for n, c in zip(names, numbers) if not 1 <= c <= num_cameras]
    if bad:
        shown = ", ".join(f"{n!r}: {c}" for n, c in bad[:3])
        raise DatasetError(f"{source}: the model's camera embedding knows cameras 1..{num_cameras} (numbered from 1, "
                           f"as in file names); {len(bad)} of {len(names)} {images} images have another ({shown}). "
                           f"A camera the model was not trained with has no embedding.")
    return [c - 1 for c in numbers]


def _numbers_from_names(pattern: str, names: Sequence[str], images: str) -> List[int]:
    """Camera numbers (as written) of ``names``: their c<digits> token, or the first group of ``pattern``."""
    if pattern == TOKEN:
        numbers = [camera_token(os.path.basename(n)) for n in names]
    else:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"--cameras-from-names {pattern!r} is not a regular expression: {e}.") from None
        if regex.groups < 1:
            raise ConfigError(f"--cameras-from-names {pattern!r} has no group; put the camera number in "
                              f"parentheses, e.g. '_c(\\d+)_'.")
        numbers = [_group_number(regex.search(n)) for n in names]
    missing = [n for n, c in zip(names, numbers) if c is None]
    if missing:
        what = f"a {TOKEN} token" if pattern == TOKEN else f"a match of {pattern!r} whose first group is a number"
        raise DatasetError(f"--cameras-from-names: {len(missing)} of {len(names)} {images} images have no camera in "
                           f"their name ({what}), e.g. {missing[:3]}. Give the pattern that finds it "
                           f"(--cameras-from-names REGEX), or --camera N when all come from one camera.")
    return numbers


def _group_number(match: Optional[re.Match]) -> Optional[int]:
    text = match.group(1) if match else None
    return int(text) if text is not None and text.isascii() and text.isdigit() else None
