"""Checkpoint files: atomic writes (temp file, fsync, rename) and safe loads (weights_only=True).

A crash, a kill or a full disk while writing leaves the previous checkpoint untouched: the new bytes go to a
temporary file ``.<name>.<pid>.<random>.tmp`` in the same folder, which replaces the old file (an atomic rename)
only once it is complete and on disk. Temporary files left by a killed writer are removed by the next write.
The file is created with mode 0666 less the umask, like every other file a run writes (``tempfile.mkstemp``
would make it 0600, unreadable by colleagues on a shared server).
"""
from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..utils.errors import CheckpointError
from ..utils.outputs import FINAL, LAST

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
        fd, tmp = _create_temp(path)
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


def _create_temp(path: Path) -> Tuple[int, str]:
    """A new, exclusively created temporary file beside ``path`` (mode 0666 & ~umask); (fd, its path)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


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
        nearby = checkpoints_in(path.parent)
        hint = f" Checkpoints in that folder: {', '.join(map(str, nearby[:6]))}." if nearby else ""
        raise CheckpointError(f"{name} {str(path)!r} does not exist.{hint} Check MODEL.WEIGHTS / the path you "
                              f"gave.")
    kind = export_kind(path)
    if kind:
        raise CheckpointError(_export_message(path, kind))
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says what matters
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors have many types; all mean "not a safe checkpoint"
        raise CheckpointError(
            f"Cannot load {str(path)!r} as a checkpoint: {load_failure_reason(e)}. Checkpoints are read with "
            f"torch.load(weights_only=True), which accepts tensors and plain containers only and refuses anything "
            f"else for safety. Use a checkpoint written by tools/train.py."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(state).__name__}, not a checkpoint dict.")
    return state


def checkpoints_in(folder: Path) -> List[Path]:
    """The checkpoint files (``*.pt``, ``*.pth``) in ``folder``, leaving out exports (TorchScript, ONNX)."""
    if not folder.is_dir():
        return []
    return sorted(p for pattern in ("*.pt", "*.pth") for p in folder.glob(pattern)
                  if p.is_file() and not export_kind(p))


def export_kind(path: Path) -> str:
    """"TorchScript", "ONNX" or "OpenVINO" when ``path`` is a deployment export (tools/export.py writes each),
    recognised by its content (a TorchScript zip archive holds ``code/``; an ONNX protobuf starts with its IR
    version and producer; an OpenVINO IR is an XML ``<net>``), else ""."""
    if path.suffix == ".onnx":
        return "ONNX"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                parts = [name.split("/") for name in archive.namelist()]
            return "TorchScript" if any(len(p) > 2 and p[1] == "code" for p in parts) else ""
        with open(path, "rb") as f:
            head = f.read(64)
    except (OSError, zipfile.BadZipFile):
        return ""
    if head.startswith(b"<?xml") and b"<net " in head:
        return "OpenVINO"
    return "ONNX" if head[:1] == b"\x08" and b"\x12\x07pytorch" in head else ""


def _export_message(path: Path, kind: str) -> str:
    runtime = {"TorchScript": "torch.jit.load(path) (PyTorch alone, no reid needed)",
               "ONNX": "onnxruntime.InferenceSession(path) (or any ONNX runtime)",
               "OpenVINO": "openvino.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'}) (its "
                           "weights are the .bin beside it; without the hint, CPUs with bf16 units run in bf16, "
                           "about 1e-1 from the float32 embeddings)"}[kind]
    article = "an" if kind[0] in "AEIOU" else "a"
    return (f"{str(path)!r} is {article} {kind} export (written by tools/export.py for deployment), not a checkpoint: "
            f"run it with {runtime}; its input and output conventions are stored in the file. To evaluate, embed "
            f"or export again, give the checkpoint it was exported from (e.g. {str(path.parent / FINAL)!r}) as "
            f"MODEL.WEIGHTS / --weights, or load that with reid.api.ReIDModel.from_checkpoint.")


def load_failure_reason(e: Exception) -> str:
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
