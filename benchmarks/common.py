"""What every benchmark shares: the machine it ran on, memory peaks, timing with the device synchronised, and the
output (one JSON line per measurement on stdout; logs on stderr)."""
from __future__ import annotations

import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple, TypeVar

import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository (configs/ are read from it)
T = TypeVar("T")


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo), or what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def device_name(device: str | torch.device) -> str:
    """The GPU's name, or the CPU model with its number of cores."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} cores"


def device_label(device: str | torch.device) -> str:
    """``cuda: <GPU name>`` / ``cpu: <CPU model>, <N> cores``."""
    return f"{torch.device(device).type}: {device_name(device)}"


def fp32_precision() -> Dict[str, str]:
    """torch's fp32_precision of cuDNN convolutions and cuBLAS matrix products (TF32 or full float32)."""
    return {"conv": torch.backends.cudnn.conv.fp32_precision, "matmul": torch.backends.cuda.matmul.fp32_precision}


def load_average() -> float:
    """The 1-minute load average: every line carries it, so that a measurement on a busy machine shows."""
    return round(os.getloadavg()[0], 2)


def peak_rss_mb() -> float:
    """This process's peak resident size so far (``ru_maxrss``), in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float:
    """This process's resident size now, in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on a CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(call: Callable[[], T], repeat: int, device: str | torch.device) -> Tuple[List[float], T]:
    """The seconds of each of ``repeat`` (at least 1) calls and the last call's result; the device is synchronised
    before the first call (earlier queued work is not timed) and after each (its own queued work is)."""
    synchronize(device)
    times, result = [], None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times, result


def emit(line: Dict[str, object]) -> None:
    """Print one measurement as a JSON line, at once (a later failure or time limit does not lose it)."""
    print(json.dumps(line), flush=True)


def log_to_stderr() -> None:
    """reid's log on stderr (its set-up keeps an existing console handler), so that stdout holds JSON lines only."""
    logging.getLogger("reid").addHandler(logging.StreamHandler(sys.stderr))


def peer_status(modules: Dict[str, str]) -> Dict[str, str]:
    """Which peer toolkits (fast-reid, torchreid; requirements-peers.txt installs them) can be imported here; they
    are reported, not run."""
    out = {}
    for name, module in modules.items():
        try:
            __import__(module)
            out[name] = "importable (not wired: run it by hand for a comparison)"
        except Exception as err:  # noqa: BLE001 - any failure means "not available here"
            out[name] = f"skipped: {type(err).__name__}: {err}"
    return out
