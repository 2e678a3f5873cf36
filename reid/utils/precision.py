"""Full float32 matrix products inside a block, whatever faster precision the process runs with.

torch keeps one process-wide float32 matmul precision per backend: ``torch.backends.cuda.matmul.fp32_precision``
(cuBLAS: "tf32" rounds inputs to a 10-bit mantissa) and ``torch.backends.mkldnn.matmul.fp32_precision`` (oneDNN
on CPUs: "bf16" or "tf32" where the CPU has them). Training may want them; distances must not (they change
rankings). Only this, the new API, is used: torch raises on reading the legacy ``get_float32_matmul_precision``
once the new one has set backends apart ("mix of the legacy and new APIs").

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

_lock = threading.Lock()
_inside: Dict[str, int] = {}  # device type -> threads inside ieee_matmul
_saved: Dict[str, str] = {}  # device type -> the precision to restore when the last one leaves


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
        if not _inside.get(kind):
            _saved[kind] = backend.matmul.fp32_precision
            backend.matmul.fp32_precision = "ieee"
        _inside[kind] = _inside.get(kind, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _inside[kind] -= 1
            if not _inside[kind]:
                backend.matmul.fp32_precision = _saved.pop(kind)
