"""Image reading that turns every way a file can be broken into a DatasetError naming the file."""
from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError

from ..utils.errors import DatasetError


def read_image(path: str) -> Image.Image:
    """Decode ``path`` fully into an RGB image.

    ``img.load()`` runs inside the ``try`` because PIL decodes lazily: a truncated JPEG only fails there, and it
    would otherwise surface deep inside a DataLoader worker as an unrelated-looking OSError.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"Image {path!r} does not exist (was the dataset moved or partly extracted?).")
    if os.path.getsize(path) == 0:
        raise DatasetError(f"Image {path!r} is empty (0 bytes); re-extract the dataset or delete the file "
                           f"(DATASETS.SKIP_UNREADABLE True skips unreadable images).")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"Image {path!r} cannot be decoded ({type(e).__name__}: {e}); it is truncated or not "
                           f"an image. Re-extract the dataset or set DATASETS.SKIP_UNREADABLE True.") from None
