"""Image reading that turns every way a file can be broken into a DatasetError naming the file."""
from __future__ import annotations

import os
from typing import Optional, Tuple

from PIL import Image, UnidentifiedImageError

from ..utils.errors import DatasetError

_ADVICE = {
    "missing": "was the dataset moved or partly extracted?",
    "empty": "re-extract the dataset or delete the file (DATASETS.SKIP_UNREADABLE True skips unreadable images)",
    "broken": "Re-extract the dataset or set DATASETS.SKIP_UNREADABLE True",
}


def _decode(path: str) -> Tuple[Optional[Image.Image], str, str]:
    """(RGB image, "", "") or (None, what is wrong, which advice)."""
    if not os.path.isfile(path):
        return None, "does not exist", "missing"
    if os.path.getsize(path) == 0:
        return None, "is empty (0 bytes)", "empty"
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB"), "", ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return None, f"cannot be decoded ({type(e).__name__}: {e})", "broken"


def read_image(path: str, fix: Optional[str] = None) -> Image.Image:
    """Decode ``path`` fully into an RGB image.

    ``img.load()`` runs inside the ``try`` because PIL decodes lazily: a truncated JPEG only fails there, and it
    would otherwise surface deep inside a DataLoader worker as an unrelated-looking OSError. ``fix`` replaces the
    advice for an empty or broken file (the default names DATASETS.SKIP_UNREADABLE, which only the dataset
    pipelines and reid-extract read).
    """
    img, problem, advice = _decode(path)
    if img is None:
        if advice == "missing":
            raise DatasetError(f"Image {path!r} {problem} ({_ADVICE[advice]}).")
        if advice == "empty":
            raise DatasetError(f"Image {path!r} {problem}; {fix or _ADVICE[advice]}.")
        raise DatasetError(f"Image {path!r} {problem}; it is truncated or not an image. {fix or _ADVICE[advice]}.")
    return img


def image_problem(path: str) -> str:
    """What makes ``path`` unreadable ("does not exist", "is empty (0 bytes)", "cannot be decoded (...)"), or ""
    when it decodes."""
    return _decode(path)[1]
