"""The images ``ReIDModel`` accepts (paths, PIL images, uint8 arrays and tensors, frames and boxes in them) turned
into one form, and the listing of an image folder or list file; every wrong input is a DatasetError that says what
to pass."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..data.io import read_image
from ..utils.errors import DatasetError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
Images = Union[ImageLike, Sequence[ImageLike], torch.Tensor]
Frame = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# What to do about an image file that does not decode, where no dataset config is read (embed, search, frames).
UNREADABLE_FIX = ("Replace or remove the file (reid-extract skips unreadable files with DATASETS.SKIP_UNREADABLE "
                  "True)")


def is_uint8(x: Any) -> bool:
    return x.dtype in (torch.uint8, np.uint8)


def is_embeddings(x: Any) -> bool:
    """Whether ``x`` is an (N, D) float batch of embeddings rather than images (a 2-d array is never an image)."""
    return isinstance(x, (torch.Tensor, np.ndarray)) and not is_uint8(x) and x.ndim == 2


def as_image_list(images: Images) -> List[Any]:
    """Split the accepted inputs into a list of single images (tensor rows stay tensors)."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DatasetError(
                f"A tensor batch must be uint8 RGB of shape (B, 3, H, W); got {images.dtype} {tuple(images.shape)}. "
                f"Permute a channels-last batch with x.permute(0, 3, 1, 2); for already normalised float batches "
                f"call ReIDModel.net(batch) directly."
            )
        return list(images)
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        return [images]
    return list(images)


def to_pil(item: Any) -> Image.Image:
    """One image of any accepted kind as an RGB PIL image (the form the test-time resize takes)."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(os.fspath(item), UNREADABLE_FIX)
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise DatasetError(f"A NumPy image must be H x W x 3 uint8 RGB; got {item.dtype} {item.shape}. "
                               f"Convert BGR frames (OpenCV) with arr[..., ::-1].")
        return Image.fromarray(np.ascontiguousarray(item))
    if isinstance(item, torch.Tensor):
        if item.dtype != torch.uint8 or item.dim() != 3 or item.shape[0] != 3:
            raise DatasetError(f"A tensor image must be uint8 RGB of shape (3, H, W); got {item.dtype} "
                               f"{tuple(item.shape)}.")
        return Image.fromarray(item.permute(1, 2, 0).contiguous().cpu().numpy())
    raise DatasetError(f"Cannot embed an object of type {type(item).__name__}; pass file paths, PIL images, "
                       f"H x W x 3 uint8 arrays or a uint8 (B, 3, H, W) tensor.")


def frame_array(frame: Frame) -> Union[np.ndarray, torch.Tensor]:
    """An H x W x 3 uint8 RGB array (or CPU/GPU tensor) from any accepted frame."""
    if isinstance(frame, (str, os.PathLike)):
        frame = read_image(os.fspath(frame), UNREADABLE_FIX)
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if isinstance(frame, (np.ndarray, torch.Tensor)) and is_uint8(frame) and frame.ndim == 3 \
            and frame.shape[2] == 3:
        return frame
    shape = tuple(frame.shape) if hasattr(frame, "shape") else type(frame).__name__
    dtype = getattr(frame, "dtype", "")
    raise DatasetError(f"A frame must be an H x W x 3 uint8 RGB array or tensor, a PIL image or an image path; got "
                       f"{dtype} {shape}. Convert BGR frames (OpenCV) with frame[..., ::-1]; permute a 3 x H x W "
                       f"tensor with frame.permute(1, 2, 0).")


def pixel_boxes(boxes_xyxy: Any, height: int, width: int) -> np.ndarray:
    """(N, 4) int64 pixel boxes x1, y1, x2, y2 (exclusive ends) of ``boxes_xyxy`` clipped to a ``width`` x
    ``height`` frame: x1, y1 rounded down, x2, y2 up. Non-finite boxes and boxes with no area inside the frame
    are a DatasetError naming their indices."""
    boxes = np.asarray(torch.as_tensor(boxes_xyxy).cpu() if isinstance(boxes_xyxy, torch.Tensor) else boxes_xyxy,
                       dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DatasetError(f"boxes_xyxy must be N x 4 (x1, y1, x2, y2 in pixels), got shape {boxes.shape}.")
    bad = np.flatnonzero(~np.isfinite(boxes).all(1))
    if len(bad):
        raise DatasetError(f"boxes {bad[:10].tolist()} have non-finite coordinates: {boxes[bad[:3]].tolist()}.")
    x1, x2 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 2], 0, width)
    y1, y2 = np.clip(boxes[:, 1], 0, height), np.clip(boxes[:, 3], 0, height)
    empty = np.flatnonzero((x2 <= x1) | (y2 <= y1))
    if len(empty):
        raise DatasetError(f"boxes {empty[:10].tolist()}{' ...' if len(empty) > 10 else ''} have no area inside the "
                           f"{width} x {height} frame (after clipping to it): {boxes[empty[:3]].tolist()}. Boxes are "
                           f"x1, y1, x2, y2 in pixels with x2 > x1 and y2 > y1; drop empty or off-frame detections.")
    return np.stack([np.floor(x1), np.floor(y1), np.ceil(x2), np.ceil(y2)], 1).astype(np.int64)


def list_images(source: str | os.PathLike) -> Tuple[List[str], List[str]]:
    """(paths to read, names to store) for a folder (searched recursively) or a text file listing images.

    Names are paths relative to the folder (POSIX separators), or the lines of the list as written; relative
    lines are read relative to the list file's folder. Blank lines and lines starting with '#' are skipped.
    """
    src = Path(source)
    if src.is_dir():
        found = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not found:
            raise DatasetError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(src)!r} (searched "
                               f"recursively). Point --input at the folder holding the images, or at a text file "
                               f"listing one image path per line.")
        return [str(p) for p in found], [p.relative_to(src).as_posix() for p in found]
    if not src.is_file():
        raise DatasetError(f"Input {str(src)!r} does not exist; give a folder of images or a text file listing "
                           f"one image path per line.")
    try:
        lines = src.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"Input {str(src)!r} is not a UTF-8 text file; give a folder of images or a text file "
                           f"listing one image path per line.") from None
    names = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    if not names:
        raise DatasetError(f"The list {str(src)!r} names no images; write one image path per line.")
    paths = [str(src.parent / n) for n in names]
    missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(names)} images listed in {str(src)!r} do not exist, e.g. "
                           f"{missing[:3]} (relative lines are read relative to {str(src.parent)!r}).")
    return paths, names
