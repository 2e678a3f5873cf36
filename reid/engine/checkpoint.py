"""Checkpoints: atomic writes (temp file, fsync, rename), safe loads (weights_only=True), model-weight loading.

A crash or a full disk while writing leaves the previous checkpoint untouched: the new bytes go to a temporary
file in the same folder, which replaces the old file only once it is complete and on disk.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable

import torch
from torch import nn

from ..utils.errors import CheckpointError

LAST = "model_last.pt"
FINAL = "model_final.pt"
# Parameters that depend on the training identities; evaluation never needs them (MODEL.WEIGHTS skips them).
CLASSIFIER_MARKER = "classifier."


def save_checkpoint(path: str | Path, state: Dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically; on failure the old file (if any) is intact and the error says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            kept = "the previous checkpoint is intact" if path.exists() else "no earlier checkpoint existed"
            raise CheckpointError(f"Could not write checkpoint {str(path)!r} ({e.strerror or e}); {kept}. "
                                  f"Free disk space or change OUTPUT_DIR.") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, never arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist. Check MODEL.WEIGHTS / the path you gave.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors have many types; all mean "not a safe checkpoint"
        raise CheckpointError(
            f"Cannot load {str(path)!r} as a checkpoint with weights_only=True (it is truncated, not a PyTorch "
            f"file, or holds objects other than tensors and plain containers, which are refused for safety): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(state).__name__}, not a checkpoint dict.")
    return state


def model_state_from(state: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint (ours: state['model']; a bare state dict is accepted too)."""
    inner = state.get("model", state)
    if not isinstance(inner, dict) or not all(isinstance(v, torch.Tensor) for v in inner.values()):
        raise CheckpointError("The checkpoint holds no model state dict (expected a 'model' entry of tensors).")
    return inner


def load_model_weights(model: nn.Module, path: str | Path, skip: Iterable[str] = (CLASSIFIER_MARKER,),
                       state: Dict[str, Any] | None = None) -> None:
    """Load model weights for evaluation/fine-tuning, ignoring classifier weights by design.

    ``state`` is the already loaded checkpoint at ``path`` (to avoid reading it twice); ``path`` names it in
    errors. Any other difference (missing or unexpected keys, shape mismatch) means the checkpoint comes from
    another architecture or configuration; the error lists the mismatched keys.
    """
    skip = tuple(skip)
    wanted = {k: v for k, v in model.state_dict().items() if not any(s in k for s in skip)}
    loaded = model_state_from(state if state is not None else load_checkpoint(path))
    given = {k: v for k, v in loaded.items() if not any(s in k for s in skip)}
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    shapes = sorted(f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(v.shape)}"
                    for k, v in wanted.items() if k in given and given[k].shape != v.shape)
    if missing or unexpected or shapes:
        def show(items):
            return ", ".join(items[:6]) + (f" ... (+{len(items) - 6} more)" if len(items) > 6 else "")
        parts = [f"{len(missing)} missing: {show(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {show(unexpected)}" if unexpected else "",
                 f"{len(shapes)} with other shapes: {show(shapes)}" if shapes else ""]
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not fit this model ({'; '.join(p for p in parts if p)}). It was "
            f"probably trained with another MODEL.META_ARCHITECTURE / MODEL.BACKBONE / MODEL.HEADS setting: "
            f"use the config it was trained with."
        )
    model.load_state_dict(given, strict=False)
