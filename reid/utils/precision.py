"""Full float32 matrix products inside a block, whatever faster precision the process runs with.

torch keeps one process-wide float32 matmul precision per backend: ``torch.backends.cuda.matmul.fp32_precision``
(cuBLAS: "tf32" rounds inputs to a 10-bit mantissa) and ``torch.backends.mkldnn.matmul.fp32_precision`` (oneDNN
on CPUs: "bf16" or "tf32" where the CPU has them). Training may want them; distances must not (they change
rankings). torch refuses a mix of its two APIs ("mix of the legacy and new APIs"): reading the legacy setting raises
once the new one has set backends apart, and a process that enabled TF32 the legacy way
(``torch.set_float32_matmul_precision("high")``, ``allow_tf32 = True``) gets that error from every cuBLAS matmul
once only the new per-backend setting is changed. So ``ieee_matmul`` follows the process: where the legacy
setting was used (it reads other than "highest"), it sets the legacy one to "highest" (all backends at once) and
restores it; otherwise it sets the device's backend through the new API.

Threads: the setting cannot be made per thread or per call, so ``ieee_matmul`` counts the threads inside it per
backend, under a lock: the first to enter saves the setting and sets "ieee", the last to leave restores it, and
none sees another restore in the middle of its block. The price of a global: while any thread is inside, other
threads' matmuls on that backend also run in "ieee" (slower, never less exact), and a change another thread makes
to the setting meanwhile is undone when the last one leaves.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Dict, Iterator

import torch

# device type -> the torch.backends module whose matmul.fp32_precision applies to it
_MATMUL_BACKENDS = {"cuda": torch.backends.cuda, "cpu": torch.backends.mkldnn}

_LEGACY = "legacy"  # the key of the legacy, process-wide setting (every backend at once)

_lock = threading.Lock()
_inside: Dict[str, int] = {}  # device type (or _LEGACY) -> threads inside ieee_matmul
_saved: Dict[str, str] = {}  # device type (or _LEGACY) -> the precision to restore when the last one leaves


def _legacy_in_use() -> bool:
    """Whether the process set matmul precision the legacy way (``set_float32_matmul_precision`` other than
    "highest", or ``allow_tf32``); False when only the new API was used (reading the legacy value then raises)."""
    try:
        return torch.get_float32_matmul_precision() != "highest"
    except RuntimeError:  # the new API set the backends apart: the process uses the new API
        return False


@contextmanager
def ieee_matmul(device: torch.device | str) -> Iterator[None]:
    """Float32 matrix products on ``device`` run in full float32 ("ieee") inside the block; the previous setting
    is restored afterwards (see the module docstring for threads). Other device types are left alone."""
    kind = torch.device(device).type
    backend = _MATMUL_BACKENDS.get(kind)
    if backend is None:
        yield
        return
    with _lock:
        legacy = _inside.get(_LEGACY) or (not any(_inside.values()) and _legacy_in_use())
        key = _LEGACY if legacy else kind
        if not _inside.get(key):
            if legacy:
                _saved[key] = torch.get_float32_matmul_precision()
                torch.set_float32_matmul_precision("highest")
            else:
                _saved[key] = backend.matmul.fp32_precision
                backend.matmul.fp32_precision = "ieee"
        _inside[key] = _inside.get(key, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _inside[key] -= 1
            if not _inside[key]:
                if legacy:
                    torch.set_float32_matmul_precision(_saved.pop(key))
                else:
                    backend.matmul.fp32_precision = _saved.pop(key)
