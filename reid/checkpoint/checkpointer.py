"""Named checkpointables saved to one checkpoint file and restored from it, without a hand-written list.

A checkpointable is anything with ``state_dict()`` / ``load_state_dict(state)`` (optimizer, LR schedule,
GradScaler, the engine's hooks). The file keeps the layout of CONTRIBUTING.md ("Checkpoints"): ``model`` (weights),
one entry per checkpointable under its name, ``epoch``, ``rng`` (Python/NumPy/torch generator states, the CUDA one
of the model's GPU) and what rebuilding the model for inference needs (``cfg``, ``num_classes``,
``meta_architecture``). Files are written atomically by :func:`save_checkpoint` (in a background thread with
``async_write``, see ``writer.py``) and read safely by :func:`load_checkpoint`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Protocol, Tuple

import torch
from torch import nn

from ..config import cfg_to_dict
from ..utils.env import get_rng_state, set_rng_state
from ..utils.errors import CheckpointError
from ..utils.outputs import BEST
from .io import load_checkpoint, save_checkpoint
from .state import load_model_state
from .writer import AsyncCheckpointWriter

logger = logging.getLogger("reid")


class Checkpointable(Protocol):
    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> Any: ...


def model_record(cfg, model: nn.Module) -> Dict[str, Any]:
    """What :func:`reid.checkpoint.load_for_inference` needs besides the weights to rebuild ``model``."""
    return {"cfg": cfg_to_dict(cfg), "num_classes": model.num_classes,
            "meta_architecture": cfg.MODEL.META_ARCHITECTURE}


def threshold_record(metrics: Optional[Dict[str, Any]], far: Optional[float] = None) -> Dict[str, Any]:
    """The entries of a checkpoint to use (model_final.pt, model_best.pt) that keep the verification threshold of
    the evaluation in ``metrics`` (metrics.json's form) at false-accept rate ``far`` (default: the one the metrics
    name, TEST.VERIFY_FAR): ``threshold`` (a TEST.METRIC distance: "same person" when d <= threshold),
    ``threshold_far`` and ``threshold_dataset`` (the first test set); none when the evaluation has no threshold."""
    verification = (metrics or {}).get("verification") or {}
    if verification.get("threshold") is None:
        return {}
    far = verification.get("far") if far is None else far
    return {"threshold": float(verification["threshold"]), "threshold_far": None if far is None else float(far),
            "threshold_dataset": metrics.get("dataset", "")}


def stored_threshold(state: Dict[str, Any]) -> Tuple[Optional[float], Optional[float]]:
    """(threshold, false-accept rate) kept in a checkpoint's content: its ``threshold`` entries
    (:func:`threshold_record`), else the one in its ``metrics`` (model_best.pt files written before the entries
    were added to them); (None, None) when it has none (converted, or never evaluated)."""
    if state.get("threshold") is not None:
        far = state.get("threshold_far")
        return float(state["threshold"]), None if far is None else float(far)
    metrics = state.get("metrics")
    verification = metrics.get("verification") if isinstance(metrics, dict) else None
    if isinstance(verification, dict) and verification.get("threshold") is not None:
        far = verification.get("far")
        return float(verification["threshold"]), None if far is None else float(far)
    return None, None


class Checkpointer:
    """Saves ``model`` and the named ``checkpointables`` into ``save_dir`` and restores them for ``--resume``.

    ``save_to_disk`` is False on every rank but 0 under DDP (their :meth:`save` writes nothing). Entries named in
    ``optional`` may be missing from a file (written before they existed, e.g. ``scaler`` or ``hooks``); the
    others must be there. With ``async_write`` :meth:`save` returns once the state is copied to host memory and a
    background thread writes the file; :meth:`wait` blocks until it is on disk (and raises a failed write's error,
    as the next :meth:`save` does).
    """

    def __init__(self, model: nn.Module, cfg, save_dir: str | Path, *, save_to_disk: bool = True,
                 optional: Iterable[str] = (), async_write: bool = False,
                 **checkpointables: Checkpointable) -> None:
        reserved = {"model", "epoch", "rng", "cfg", "num_classes", "meta_architecture"} & set(checkpointables)
        if reserved:
            raise ValueError(f"checkpointable names {sorted(reserved)} are reserved for the checkpoint's own keys")
        self.model, self.cfg, self.save_dir = model, cfg, Path(save_dir)
        self.save_to_disk = save_to_disk
        self.optional = frozenset(optional)
        self.checkpointables: Dict[str, Checkpointable] = dict(checkpointables)
        self.writer = AsyncCheckpointWriter() if async_write and save_to_disk else None

    @property
    def device(self) -> Optional[torch.device]:
        """The model's device: its GPU's random state is the one stored and restored."""
        first = next(self.model.parameters(), None)
        return first.device if first is not None else None

    def state_dict(self, epoch: int, model: Optional[nn.Module] = None) -> Dict[str, Any]:
        """The checkpoint content after ``epoch`` epochs; ``model`` replaces the weights stored as ``model`` (e.g.
        the EMA weights in model_final.pt), the architecture record always describes the trained model."""
        return {"model": (model if model is not None else self.model).state_dict(),
                **{name: obj.state_dict() for name, obj in self.checkpointables.items()},
                "epoch": epoch, "rng": get_rng_state(self.device), **model_record(self.cfg, self.model)}

    def save(self, name: str, epoch: int, model: Optional[nn.Module] = None, **extra: Any) -> Path:
        """Write ``save_dir/name`` atomically (rank 0 only) with ``extra`` top-level entries; returns its path
        (with ``async_write`` the file is complete after :meth:`wait`)."""
        path = self.save_dir / name
        if self.save_to_disk:
            self._write(path, {**self.state_dict(epoch, model), **extra})
        return path

    def save_model(self, name: str, epoch: int, model: Optional[nn.Module] = None, **extra: Any) -> Path:
        """Write ``save_dir/name`` with the weights of ``model`` (default: the trained model), what rebuilding it
        needs and ``extra`` entries (e.g. the metrics that chose it), but no optimizer, schedule, hook or RNG
        state: a file to use, not to resume (rank 0 only); returns its path (complete after :meth:`wait` with
        ``async_write``)."""
        path = self.save_dir / name
        if self.save_to_disk:
            weights = model if model is not None else self.model
            self._write(path, {"model": weights.state_dict(), "epoch": epoch, **model_record(self.cfg, self.model),
                               **extra})
        return path

    def _write(self, path: Path, state: Dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.submit(path, state)
        else:
            save_checkpoint(path, state)

    def wait(self, raise_error: bool = True) -> None:
        """Block until the checkpoint being written is on disk; a failed write's error is raised, or logged with
        ``raise_error=False`` (for a caller already handling another exception). A no-op for synchronous writes."""
        if self.writer is not None:
            self.writer.wait(raise_error)

    def resume(self, path: str | Path, state: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Restore the model, every checkpointable and the RNG states from ``path`` (``state``: its content when
        already loaded); returns the file's content (its ``epoch`` says where training continues)."""
        state = state if state is not None else load_checkpoint(path)
        missing = [k for k in ("model", *self.checkpointables, "epoch", "rng")
                   if k not in state and k not in self.optional]
        if missing:
            raise CheckpointError(f"{str(path)!r} is not a training checkpoint (missing {missing}).")
        load_model_state(self.model, state, path, cfg=self.cfg,
                         advice="Resume with the config the run was started with (same data and MODEL settings).")
        for name, obj in self.checkpointables.items():
            if state.get(name):
                self._load(path, name, obj, state[name])
            elif obj.state_dict():  # an empty state (a disabled GradScaler's) has nothing to restore
                logger.warning("%s has no %r state (written by an older version or another config); this run's "
                               "%s starts afresh.", path, name, name)
        set_rng_state(state["rng"], self.device)
        return state

    @staticmethod
    def _load(path: str | Path, name: str, obj: Checkpointable, value: Dict[str, Any]) -> None:
        try:
            obj.load_state_dict(value)
        except (ValueError, KeyError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"The {name} state in {str(path)!r} does not fit this run ({e}). Resume with the "
                                  f"config the run was started with.") from None
