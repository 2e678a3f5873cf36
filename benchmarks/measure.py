"""How the evaluation and re-ranking benchmarks measure: each measurement in a fresh process (so that its peak RSS
is its own), best of N runs, after an untimed warm-up on a GPU; and the options they share."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from reid.evaluation.distance import exact_mm

from .common import ROOT, device_name, load_average, peak_rss_mb, rss_mb, synchronize
from .splits import SPLITS

WARMUP_ROWS = (256, 2048)  # queries and gallery items of the warm-up slice


def run_measurement(fn: Callable[[], object], device: str, repeat: int,
                    warmup: Optional[Callable[[], object]] = None) -> Tuple[dict, object]:
    """Wall time of each of `repeat` runs of `fn` (the best is `wall_s`), peak RSS of this process and, on a GPU, the
    peak memory of each run. On a GPU `warmup` (the same work on a small slice) runs first, untimed: the first
    CUDA call loads libraries and creates handles, which would otherwise be timed as part of the first run."""
    cuda = device.startswith("cuda")
    out: dict = {}
    if cuda and warmup is not None:
        synchronize(device)
        start = time.perf_counter()
        warmup()
        synchronize(device)
        out["warmup_s"] = round(time.perf_counter() - start, 4)
    rss_before = rss_mb()
    synchronize(device)
    gpu_before = torch.cuda.memory_allocated() / 2**20 if cuda else 0.0
    times, cpu_times, peaks, result = [], [], [], None
    for _ in range(repeat):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = None  # the previous run's output (re-ranking: the whole q x g matrix) is not held during the next
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn()
        synchronize(device)
        if cuda:
            peaks.append(round(torch.cuda.max_memory_allocated() / 2**20, 1))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    out.update({
        "wall_s": round(min(times), 4),
        "wall_s_all": [round(t, 4) for t in times],
        "cpu_s_all": [round(t, 4) for t in cpu_times],  # all threads: wall_s x threads when nothing else runs
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
    })
    if cuda:
        out["peak_gpu_mb"] = max(peaks)
        out["peak_gpu_mb_all"] = peaks  # per run, inputs included
        out["gpu_inputs_mb"] = round(gpu_before, 1)
    return out, result


def spawn(module: str, argv: List[str], in_process: Optional[Callable[[List[str]], dict]] = None) -> dict:
    """Run ``python -m module --worker argv`` in a fresh process and return the JSON it prints last (or the
    error); `in_process(argv)` measures in this process instead (no start-up cost; peak RSS then includes earlier
    work)."""
    if in_process is not None:
        return in_process(argv)
    done = subprocess.run([sys.executable, "-m", module, "--worker", *argv], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def common_fields(bench: str, args: argparse.Namespace) -> dict:
    return {"bench": bench, "dataset": args.dataset, "device": args.device, "device_name": device_name(args.device),
            "dim": args.dim, "torch": torch.__version__, "load_avg_1min": load_average()}


def worker_argv(args: argparse.Namespace) -> List[str]:
    """The shared options, passed on to the measuring subprocess."""
    argv = ["--dataset", args.dataset, "--device", args.device, "--dim", str(args.dim)]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def setup_worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def base_parser(doc: str, module: str, repeat: int, baseline: str, datasets: Sequence[str] = tuple(SPLITS),
                dataset: str = "market") -> argparse.ArgumentParser:
    """Options shared by the evaluation benchmarks (the hidden ones are for the measuring subprocess): ``repeat``
    is the default of --repeat, ``baseline`` what --no-baseline skips, ``datasets`` the choices of --dataset (the
    sizes the benchmark knows) and ``dataset`` its default."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=repeat, help="timed runs of ours (best is reported, all listed)")
    parser.add_argument("--no-baseline", action="store_true", help=f"skip {baseline} and the peer toolkits' check")
    parser.add_argument("--dataset", choices=sorted(datasets), default=dataset)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process, not a fresh one per measurement (quick smoke runs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="reid", help=argparse.SUPPRESS)
    return parser


def matmul_floor(a: torch.Tensor, b: torch.Tensor, upper: bool = False, rows: int = 2048) -> float:
    """Seconds for the fp32 products ``a @ b.T`` alone (the work exact evaluation cannot avoid), by blocks of
    ``rows`` rows written into one buffer; ``upper``: ``a`` is ``b`` and only the upper triangle (each pair once,
    as the re-ranking's neighbour pass) is computed."""
    out = torch.empty(min(rows, a.shape[0]), b.shape[0], dtype=a.dtype, device=a.device)
    synchronize(a.device)
    start = time.perf_counter()
    for lo in range(0, a.shape[0], rows):
        block, first = a[lo : lo + rows], lo if upper else 0
        exact_mm(block, b[first:].T, out=out[: block.shape[0], : b.shape[0] - first])
    synchronize(a.device)
    return time.perf_counter() - start


def floor_fields(measured: dict, floor: dict) -> dict:
    """``fp32_floor_s`` (the floor's measured wall time) and ``x_floor`` (``measured``'s time as a multiple of it),
    or nothing when either measurement failed."""
    if "wall_s" not in floor or "wall_s" not in measured:
        return {}
    return {"fp32_floor_s": floor["wall_s"], "x_floor": round(measured["wall_s"] / floor["wall_s"], 2)}
