"""Checkpoint files written by a background thread, so that the GPU keeps training while one goes to disk.

A training checkpoint is large (ResNet50 with Adam's moments ~290 MB, MGN ~840 MB) and written every epoch by the
real-data configs; written on the training thread it stalls the GPU for about a second per epoch. :meth:`submit`
copies the state to host memory (a snapshot: training goes on updating the weights in place) and returns; a thread
writes the copy with :func:`save_checkpoint` (atomic: temp file, fsync, rename), so a crash or a kill during the
write leaves the previous file intact. One write is in flight at a time: the next :meth:`submit` and :meth:`wait`
wait for it first, and both raise a failed write's error (e.g. a full disk, with :func:`save_checkpoint`'s message).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ..utils.errors import ReIDError
from .io import save_checkpoint

logger = logging.getLogger("reid")


def to_host(obj: Any) -> Any:
    """A copy of ``obj`` in host memory: tensors copied to the CPU (also CPU tensors: they are updated in place by
    training), containers rebuilt, other values (numbers, strings) shared."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_host(v) for v in obj)
    return obj


class AsyncCheckpointWriter:
    """Writes one checkpoint at a time in a background thread; errors surface at the next submit or wait."""

    def __init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    @property
    def busy(self) -> bool:
        """Whether a write is in flight."""
        return self._thread is not None and self._thread.is_alive()

    def submit(self, path: str | Path, state: Dict[str, Any]) -> None:
        """Wait for the write in flight (raising its error), snapshot ``state`` to host memory and start writing it
        to ``path``."""
        self.wait()
        snapshot = to_host(state)
        # Not a daemon: an interpreter that is exiting still finishes the file it started.
        self._thread = threading.Thread(target=self._write, args=(Path(path), snapshot), daemon=False,
                                        name=f"checkpoint writer ({Path(path).name})")
        self._thread.start()

    def _write(self, path: Path, state: Dict[str, Any]) -> None:
        try:
            save_checkpoint(path, state)
        except BaseException as e:  # noqa: BLE001 - handed to the training thread at its next submit / wait
            self._error = e

    def wait(self, raise_error: bool = True) -> None:
        """Block until the write in flight is on disk. Its error is raised (``raise_error``) or logged (for a
        caller that is already handling another exception)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is None:
            return
        if raise_error:
            raise error
        logger.error("%s", error if isinstance(error, ReIDError) else f"Checkpoint write failed: {error!r}")
