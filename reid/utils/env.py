"""Devices, seeding and RNG state capture (for exact resume)."""
from __future__ import annotations

import os
import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``MODEL.DEVICE`` -> torch.device; "auto" picks CUDA when available. Asking for a missing GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"MODEL.DEVICE {name!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"MODEL.DEVICE is {name!r} but no CUDA GPU is available; use MODEL.DEVICE cpu (or auto).")
    return device


CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's deterministic workspace (cuBLAS docs, "Results reproducibility")


def deterministic_environment() -> None:
    """What DETERMINISTIC needs before any GPU work: cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it creates a handle
    (at the process's first matmul on a GPU), so the command-line tools set it at start, before anything else runs;
    :func:`seed_all` sets it too (in time for a process whose first matmul comes later)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def seed_all(seed: int, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch; a negative seed draws one from the OS. Returns the seed used.

    ``deterministic`` (DETERMINISTIC): deterministic cuDNN and cuBLAS algorithms and torch's deterministic variants
    of its scatter / index kernels (``torch.use_deterministic_algorithms``); reid's pooling layers are reductions
    with deterministic gradients. An operation that has no deterministic CUDA kernel still runs, with torch's
    warning naming it (``warn_only``: a long run is not stopped by it). So: on a CPU a resumed run repeats the
    uninterrupted one bit for bit; on a GPU it does when no such warning is in the log (else it agrees to float
    rounding)."""
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        deterministic_environment()
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed


def _cuda_index(device: Optional[torch.device]) -> int:
    """The index of ``device`` when it is a GPU, else the current GPU's (the one ``distributed()`` selects for the
    process's LOCAL_RANK)."""
    if device is not None and device.type == "cuda" and device.index is not None:
        return device.index
    return torch.cuda.current_device()


def get_rng_state(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """RNG states of Python, NumPy, torch's CPU generator and the generator of ``device``'s GPU (default: the
    current GPU), storable with weights_only loading.

    One GPU's state, not one per visible GPU: each process trains on one GPU, and a checkpoint written on an 8-GPU
    machine must resume on a machine with fewer."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(_cuda_index(device))
    return state


def set_rng_state(state: Dict[str, Any], device: Optional[torch.device] = None) -> None:
    """Inverse of :func:`get_rng_state`: the stored GPU state goes to ``device``'s GPU (default: the current one).

    Checkpoints of earlier versions hold a list with one state per GPU of the machine that wrote them; the entry
    of this GPU's index is used (the last one when that machine had fewer GPUs)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    index = _cuda_index(device)
    if isinstance(cuda, (list, tuple)):
        if not cuda:
            return
        cuda = cuda[min(index, len(cuda) - 1)]
    torch.cuda.set_rng_state(cuda, index)
