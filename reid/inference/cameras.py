"""The cameras ``ReIDModel`` takes with images: one 0-based camera per image (or one for all), checked against the
model's camera table (SIE, TransReID) before any image is decoded.

Models with camera embeddings add a learned vector per camera to every token, so they need the camera of each
image at test time too; a model without them ignores cameras (they are still checked to be one per image).
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch

from ..utils.errors import DatasetError

Cameras = Union[None, int, Any]  # None, one int for all images, or a sequence / array / tensor of one per image


def needs_cameras_message(num_cameras: int) -> str:
    """What to say when an SIE model gets no cameras."""
    return (f"This model adds a camera embedding (SIE) learned for {num_cameras} cameras, so it needs the camera of "
            f"each image: embed(images, cameras=[...]) with one 0-based camera (0..{num_cameras - 1}) per image, or "
            f"cameras=C for all of them (embed_boxes(frame, boxes, cameras=C) likewise).")


def camera_ids(cameras: Cameras, count: int, num_cameras: int) -> Optional[torch.Tensor]:
    """(count,) int64 0-based cameras for a model whose SIE table has ``num_cameras`` cameras (0: none), or None
    for a model that ignores them.

    ``cameras``: None, one int for every image, or one per image (sequence, NumPy array or tensor of integers).
    Refused: a count other than ``count``, non-integers, and for an SIE model no cameras or one outside
    0..num_cameras - 1 (a camera it was not trained with has no embedding).
    """
    if cameras is None:
        if num_cameras:
            raise DatasetError(needs_cameras_message(num_cameras))
        return None
    if isinstance(cameras, torch.Tensor):
        values = cameras.detach().cpu()
    else:
        try:
            values = torch.as_tensor(np.asarray(cameras))
        except (TypeError, ValueError, RuntimeError):
            values = None
    if values is None or values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise DatasetError(f"cameras must be integers (0-based camera ids), one per image or one for all; got "
                           f"{type(cameras).__name__} {str(cameras)[:60]}.")
    values = values.long().reshape(-1) if values.dim() else values.long().expand(count)
    if values.numel() != count:
        raise DatasetError(f"Got {values.numel()} cameras for {count} images; give one 0-based camera per image, or "
                           f"one int for all of them.")
    if not num_cameras:
        return None
    bad = ((values < 0) | (values >= num_cameras)).nonzero().flatten()
    if len(bad):
        shown = ", ".join(f"image {i}: {values[i].item()}" for i in bad[:5].tolist())
        raise DatasetError(f"Cameras must be 0-based ids of the {num_cameras} cameras this model was trained with "
                           f"(0..{num_cameras - 1}); got {shown}{' ...' if len(bad) > 5 else ''}. A camera the "
                           f"model was not trained with has no embedding.")
    return values.contiguous()
