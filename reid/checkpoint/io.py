"""Checkpoint files: atomic writes (temp file, fsync, rename) and safe loads (weights_only=True).

A crash, a kill or a full disk while writing leaves the previous checkpoint untouched: the new bytes go to a
temporary file ``.<name>.<pid>.<random>.tmp`` in the same folder, which replaces the old file (an atomic rename)
only once it is complete and on disk. Temporary files left by a killed writer are removed by the next write.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..utils.errors import CheckpointError

LAST = "model_last.pt"
FINAL = "model_final.pt"

logger = logging.getLogger(__name__)


class _Recorder:
    """The file object torch.save writes to: it keeps the OSError of a failed write (ENOSPC, EFBIG, EIO), which
    torch.save would otherwise turn into a RuntimeError such as 'unexpected pos 704 vs 598'."""

    def __init__(self, f) -> None:
        self.f = f
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(path: str | Path, state: Dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically; on failure the old file (if any) is intact and the error says so."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"Cannot create the folder {str(path.parent)!r} for checkpoint {path.name} "
                              f"({e.strerror or e}); change OUTPUT_DIR.") from None
    remove_stale_temps(path)
    recorder = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            recorder = _Recorder(f)
            torch.save(state, recorder)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = e if isinstance(e, OSError) else (recorder.error if recorder is not None else None)
        if cause is not None:
            raise _write_error(path, cause) from None
        raise
    _fsync_dir(path.parent)


def _write_error(path: Path, e: OSError) -> CheckpointError:
    kept = ("the previous checkpoint is intact" if path.exists() else "no earlier checkpoint existed")
    return CheckpointError(f"Could not write checkpoint {str(path)!r} ({e.strerror or e}); {kept}. Free disk "
                           f"space or change OUTPUT_DIR, then continue with --resume.")


def remove_stale_temps(path: str | Path) -> List[Path]:
    """Delete the temporary files of ``path`` whose writer (the pid in the name) is no longer running on this
    machine, e.g. one killed while writing; returns them."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    if removed:
        logger.info("Removed %d unfinished checkpoint file(s) left by an interrupted run: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):
        return True  # exists (another user's: EPERM), or cannot tell: keep the file
    return True


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


def load_checkpoint(path: str | Path, name: str = "Checkpoint") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, never arbitrary code.

    ``name`` says in errors where the path came from (e.g. "MODEL.WEIGHTS file")."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder, not a checkpoint file; name the .pt file in it "
                              f"(e.g. {str(path / FINAL)!r}).")
    if not path.is_file():
        nearby = sorted(str(p) for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        hint = f" Checkpoints in that folder: {', '.join(nearby[:6])}." if nearby else ""
        raise CheckpointError(f"{name} {str(path)!r} does not exist.{hint} Check MODEL.WEIGHTS / the path you "
                              f"gave.")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says what matters
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors have many types; all mean "not a safe checkpoint"
        raise CheckpointError(
            f"Cannot load {str(path)!r} as a checkpoint: {_load_failure(e)}. Checkpoints are read with "
            f"torch.load(weights_only=True), which accepts tensors and plain containers only and refuses anything "
            f"else for safety. Use a checkpoint written by tools/train.py."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(state).__name__}, not a checkpoint dict.")
    return state


def _load_failure(e: Exception) -> str:
    """Why torch.load refused a file, in words (never torch's advice to retry with weights_only=False)."""
    text = str(e)
    found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if found:
        return (f"it asks to import the Python object {found.group(1)}, which a checkpoint never needs (refused; "
                f"nothing was run)")
    found = re.search(r"Unsupported operand (\d+)", text)
    if found:
        return f"it is not a PyTorch checkpoint, or it is corrupt (unsupported pickle operand {found.group(1)})"
    if isinstance(e, (RuntimeError, EOFError)) or "zip archive" in text:
        first = text.split(". ")[0].strip()
        return f"the file is truncated or corrupt ({first})" if first else "the file is truncated or corrupt"
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Weights only load failed")]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
