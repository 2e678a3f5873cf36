"""Checkpoint files written by a background thread, so that the GPU keeps training while one goes to disk.

A training checkpoint is large (ResNet50 with Adam's moments ~290 MB, MGN ~840 MB) and written every epoch by the
real-data configs; written on the training thread it stalls the GPU for about a second per epoch. :meth:`submit`
copies the state to host memory (a snapshot: training goes on updating the weights in place) and returns; a thread
writes the copy with :func:`save_checkpoint` (atomic: temp file, fsync, rename), so a crash or a kill during the
write leaves the previous file intact.

Up to ``MAX_QUEUED`` (2) snapshots wait or are being written at once, written one after the other in submission
order: an epoch that improves the best metric submits model_best.pt and then model_last.pt, and the second is
queued behind the first instead of stalling training until the first is on disk. A third :meth:`submit` waits
for the oldest write; :meth:`submit` and :meth:`wait` raise a failed write's error (e.g. a full disk, with
:func:`save_checkpoint`'s message). Host memory: up to two snapshots.

The snapshot of GPU tensors is copied into pinned (page-locked) host buffers with ``non_blocking=True`` and the
device is synchronised once at the end, instead of one blocking copy (a sync) per tensor into pageable memory.
torch's caching host allocator keeps the pinned buffers for the next snapshot of the same sizes.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Set

import torch

from ..utils.errors import ReIDError
from .io import save_checkpoint

logger = logging.getLogger("reid")

MAX_QUEUED = 2  # snapshots held in host memory at once (model_best.pt and model_last.pt of one epoch)


def _copy(obj: Any, devices: Set[torch.device]) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach()
        if obj.device.type != "cuda":
            return obj.to("cpu", copy=True)  # CPU tensors too: training updates them in place
        devices.add(obj.device)
        pinned = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=True)
        return pinned.copy_(obj, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _copy(v, devices) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(v, devices) for v in obj)
    return obj


def to_host(obj: Any) -> Any:
    """A copy of ``obj`` in host memory: tensors copied to the CPU (GPU tensors into pinned buffers, asynchronously,
    then one synchronisation per GPU; CPU tensors too, as training updates them in place), containers rebuilt,
    other values (numbers, strings) shared."""
    devices: Set[torch.device] = set()
    out = _copy(obj, devices)
    for device in devices:
        torch.cuda.synchronize(device)  # the asynchronous copies are complete before anything reads them
    return out


class _Write:
    """One queued write: a thread that waits for the write before it, then writes its snapshot."""

    def __init__(self, path: Path, state: Dict[str, Any], before: Optional["_Write"]) -> None:
        self.error: Optional[BaseException] = None
        # Not a daemon: an interpreter that is exiting still finishes the files it started.
        self.thread = threading.Thread(target=self._run, args=(path, state, before), daemon=False,
                                       name=f"checkpoint writer ({path.name})")
        self.thread.start()

    def _run(self, path: Path, state: Dict[str, Any], before: Optional["_Write"]) -> None:
        if before is not None:
            before.thread.join()  # in submission order (model_last.pt of epoch n before that of epoch n + 1)
        try:
            save_checkpoint(path, state)
        except BaseException as e:  # noqa: BLE001 - handed to the training thread at its next submit / wait
            self.error = e


class AsyncCheckpointWriter:
    """Writes checkpoints in submission order in background threads, up to ``MAX_QUEUED`` snapshots at once;
    errors surface at the next submit or wait."""

    def __init__(self) -> None:
        self._queue: Deque[_Write] = deque()

    @property
    def busy(self) -> bool:
        """Whether a write is queued or in flight."""
        return any(w.thread.is_alive() for w in self._queue)

    def submit(self, path: str | Path, state: Dict[str, Any]) -> None:
        """Snapshot ``state`` to host memory and queue its write to ``path``; when ``MAX_QUEUED`` writes are
        pending, wait for the oldest first. A failed earlier write's error is raised (this one is not started)."""
        self._collect(block=len(self._queue) >= MAX_QUEUED)
        snapshot = to_host(state)
        self._queue.append(_Write(Path(path), snapshot, self._queue[-1] if self._queue else None))

    def _collect(self, block: bool) -> None:
        """Drop the finished writes from the queue (waiting for the oldest when ``block``) and raise the first
        error among them."""
        if block:
            self._queue[0].thread.join()
        errors: List[BaseException] = []
        while self._queue and not self._queue[0].thread.is_alive():
            done = self._queue.popleft()
            if done.error is not None:
                errors.append(done.error)
        if errors:
            raise errors[0]

    def wait(self, raise_error: bool = True) -> None:
        """Block until every queued write is on disk. The first error is raised (``raise_error``) or logged (for a
        caller that is already handling another exception)."""
        errors = []
        while self._queue:
            done = self._queue.popleft()
            done.thread.join()
            if done.error is not None:
                errors.append(done.error)
        if not errors:
            return
        if raise_error:
            raise errors[0]
        for error in errors:
            logger.error("%s", error if isinstance(error, ReIDError) else f"Checkpoint write failed: {error!r}")
