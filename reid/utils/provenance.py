"""Where a result came from: the header of ``log.txt`` (command line, resolved config, versions, device and the
git commit of reid's source, as fast-reid logs them), so that a number in a log can be traced and rerun."""
from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..version import __version__

_SOURCE = Path(__file__).resolve().parents[2]  # the folder holding the reid package (a checkout's root)


def command_line() -> str:
    """The command that started this process, quoted so that it can be pasted into a shell."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(".py"):
        argv = ["python", *argv]
    return shlex.join(argv)


def versions() -> str:
    """Python, reid, torch (with its CUDA and cuDNN), torchvision and NumPy versions."""
    import torchvision

    parts = [f"python {platform.python_version()}", f"reid {__version__}", f"torch {torch.__version__}"]
    if torch.version.cuda:
        parts[-1] += f" (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    parts += [f"torchvision {torchvision.__version__}", f"numpy {np.__version__}"]
    return ", ".join(parts)


def describe_device(device: torch.device, world_size: int = 1) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3) x 8 processes`` / ``cpu (2 threads)``."""
    if device.type == "cuda":
        text = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        threads = torch.get_num_threads()
        text = f"{device} ({threads} thread{'s' if threads > 1 else ''})"
    return text + (f" x {world_size} processes" if world_size > 1 else "")


def git_commit(source: Path = _SOURCE) -> Optional[str]:
    """``<commit>`` of the checkout reid runs from, ``<commit> + uncommitted changes`` when tracked files differ
    from it; None when reid is not run from a git checkout (an installed package) or git is missing."""
    if not (source / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit} + uncommitted changes" if dirty else commit


def run_header(device: torch.device, world_size: int = 1, config_path: Optional[str | Path] = None) -> List[str]:
    """The lines that open a run's log."""
    commit = git_commit()
    return [f"command: {command_line()}",
            *([f"resolved config: {config_path}"] if config_path else []),
            f"versions: {versions()}",
            f"device: {describe_device(device, world_size)}",
            f"git commit: {commit}" if commit else f"git commit: none ({_SOURCE} is not a git checkout)"]
