"""Listing a release's image folders whose file names carry identity (and camera): one pass, sorted, and one error
naming every misnamed file."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Tuple

from ...utils.errors import DatasetError
from .base import is_image_name, require_dir


def scan_images(folder: Path, pattern: re.Pattern, naming: str,
                layout: str) -> List[Tuple[Path, re.Match]]:
    """``(path, match of pattern)`` for every image of ``folder`` in sorted name order; non-image files are
    ignored, an image whose name does not fully match ``pattern`` is a DatasetError listing the first ones and
    ``naming`` (the scheme in words, with an example)."""
    require_dir(folder, layout)
    found, bad = [], []
    for name in sorted(os.listdir(folder)):
        if not is_image_name(name):
            continue
        match = pattern.fullmatch(name)
        if match is None:
            bad.append(name)
        else:
            found.append((folder / name, match))
    if bad:
        shown = ", ".join(map(repr, bad[:5])) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        raise DatasetError(f"{len(bad)} image(s) in {str(folder)!r} do not follow {naming} (regex "
                           f"{pattern.pattern}): {shown}. Rename or remove them.")
    return found


def subfolders(folder: Path, layout: str) -> List[str]:
    """The names of the folders in ``folder`` (identities, tracklets), sorted; files are ignored."""
    require_dir(folder, layout)
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())
