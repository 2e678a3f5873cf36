"""Retrieval benchmark: `evaluate_retrieval` (leave-one-out Recall@K, MAP@R, R-precision) at Stanford Online
Products scale, with the fp32 matrix-product floor and, when installed, pytorch-metric-learning's
AccuracyCalculator (faiss k-NN) measured in the same run.

Random 512-d features of the SOP test split's size: 60,502 images of 11,316 classes (2 to 12 images each, as SOP),
class centre + per-image noise. Each measurement runs in a fresh subprocess so that its peak RSS is its own. One
JSON line is printed per measurement.

    python benchmarks/retrieval_bench.py                  # SOP size, CPU
    python benchmarks/retrieval_bench.py --device cuda
    python benchmarks/retrieval_bench.py --size tiny      # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from reid.evaluation.distance import exact_mm
from reid.evaluation.retrieval import evaluate_retrieval

SIZES = {"sop": (60502, 11316), "tiny": (2000, 400)}  # (images, classes): SOP's test split is 60,502 / 11,316
KS = (1, 10, 100, 1000)  # SOP's Recall@K (Oh Song et al. 2016)
LATENT, LATENT_NOISE = 32, 0.6  # class structure of the features (see make_split)


def make_split(size: str, dim: int, seed: int, device: str,
               unstructured: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Features (float32 on `device`) and class labels: every class 2..12 images, summing to the split's size.

    Class centre + per-image noise in a 32-d latent space projected to `dim` (Recall@1 about 0.8, a trained
    model's range), or with `unstructured` i.i.d. Gaussian features: the evaluator's worst case, where a query's
    true matches lie anywhere in its ranking."""
    num, classes = SIZES[size]
    rng = np.random.default_rng(seed)
    counts = np.full(classes, 2)
    extra = num - counts.sum()
    while extra > 0:  # spread the remaining images over random classes, at most 12 per class
        room = np.flatnonzero(counts < 12)
        pick = rng.choice(room, size=min(extra, room.size), replace=False)
        counts[pick] += 1
        extra -= pick.size
    labels = rng.permutation(np.repeat(np.arange(classes), counts))
    if unstructured:
        return torch.from_numpy(rng.standard_normal((num, dim), dtype=np.float32)).to(device), labels
    latent = rng.standard_normal((classes, LATENT), dtype=np.float32)[labels]
    latent += LATENT_NOISE * rng.standard_normal((num, LATENT), dtype=np.float32)
    proj = rng.standard_normal((LATENT, dim), dtype=np.float32) / np.sqrt(LATENT)
    feats = latent @ proj + 0.1 * rng.standard_normal((num, dim), dtype=np.float32)
    return torch.from_numpy(feats.astype(np.float32)).to(device), labels


def matmul_floor(feats: torch.Tensor) -> float:
    """Seconds for the N x N fp32 similarity products alone, by blocks of 2,048 rows (nothing kept)."""
    out = torch.empty(2048, feats.shape[0], device=feats.device)
    start = time.perf_counter()
    for row in range(0, feats.shape[0], 2048):
        block = feats[row:row + 2048]
        exact_mm(block, feats.T, out=out[: block.shape[0]])
    _sync(feats.device)
    return time.perf_counter() - start


def pml_accuracy(feats: torch.Tensor, labels: np.ndarray) -> dict:
    """pytorch-metric-learning's AccuracyCalculator (faiss IndexFlatL2, k = largest class) on normalised features."""
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
                              k="max_bin_count", device=feats.device)
    normed = torch.nn.functional.normalize(feats, dim=1)
    return calc.get_accuracy(normed, torch.from_numpy(labels).to(feats.device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this process: its wall time, peak RSS and (GPU) peak allocated memory."""
    device = torch.device(args.device)
    feats, labels = make_split(args.size, args.dim, args.seed, args.device, args.unstructured)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        evaluate_retrieval(feats[:2048], labels[:2048], KS)  # untimed: loads the CUDA libraries
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if args.worker == "floor":
        result: dict = {}
        wall = matmul_floor(feats)
    else:
        result = evaluate_retrieval(feats, labels, KS) if args.worker == "reid" else pml_accuracy(feats, labels)
        _sync(device)
        wall = time.perf_counter() - start
    line = {"measure": args.worker, "wall_s": round(wall, 3), "rss_before_mb": round(rss_before),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "result": {k: round(v, 6) if isinstance(v, float) else v for k, v in result.items()}}
    if device.type == "cuda":
        line["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="sop")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unstructured", action="store_true", help="i.i.d. Gaussian features (worst case)")
    parser.add_argument("--no-baseline", action="store_true", help="skip pytorch-metric-learning's calculator")
    parser.add_argument("--worker", choices=("reid", "floor", "pml"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    num, classes = SIZES[args.size]
    common = {"size": args.size, "unstructured": args.unstructured, "images": num, "classes": classes, "dim": args.dim, "ks": list(KS),
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
              or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    measures = ["reid", "floor"]
    if not args.no_baseline:
        try:
            import pytorch_metric_learning  # noqa: F401
            measures.append("pml")
        except ImportError:
            print(json.dumps({**common, "measure": "pml", "skipped": "pytorch-metric-learning is not installed"}))
    for measure in measures:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", measure, "--size", args.size, "--dim",
               str(args.dim), "--device", args.device, "--seed", str(args.seed)] + ["--unstructured"] * args.unstructured
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(json.dumps({**common, "measure": measure, "error": done.stderr.strip()[-2000:]}))
            continue
        line = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps({**common, **line, "load_avg_1min": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
