"""Retrieval benchmark: `evaluate_retrieval` (leave-one-out Recall@K, MAP@R, R-precision) at Stanford Online
Products scale, with the fp32 matrix-product floor and, when installed, pytorch-metric-learning's
AccuracyCalculator (faiss k-NN) measured in the same run.

Random 512-d features of the SOP test split's size: 60,502 images of 11,316 classes (2 to 12 images each, as SOP),
class centre + per-image noise. Each measurement runs in a fresh subprocess so that its peak RSS is its own; on a
GPU an untimed warm-up on a small slice loads the CUDA libraries first. One JSON line is printed per measurement.

    python -m benchmarks.retrieval_bench                  # SOP size, CPU
    python -m benchmarks.retrieval_bench --unstructured   # i.i.d. Gaussian features: the evaluator's worst case
    python -m benchmarks.retrieval_bench --device cuda
    python -m benchmarks.retrieval_bench --dataset tiny --in-process   # a smoke run
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from reid.evaluation.retrieval import evaluate_retrieval

from .common import emit, load_average
from .measure import base_parser, common_fields, matmul_floor, run_measurement, setup_worker, spawn, worker_argv

MODULE = "benchmarks.retrieval_bench"  # run again by spawn, once per measurement
SIZES = {"sop": (60502, 11316), "tiny": (2000, 400)}  # (images, classes): SOP's test split is 60,502 / 11,316
KS = (1, 10, 100, 1000)  # SOP's Recall@K (Oh Song et al. 2016)
LATENT, LATENT_NOISE = 32, 0.6  # class structure of the features (see make_split)
WARMUP_IMAGES = 2048


def make_split(size: str, dim: int, seed: int, device: str,
               unstructured: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Features (float32 on `device`) and class labels: every class 2..12 images, summing to the split's size.

    Class centre + per-image noise in a 32-d latent space projected to `dim` (a trained model's range of Recall@1),
    or with `unstructured` i.i.d. Gaussian features: the evaluator's worst case, where a query's true matches lie
    anywhere in its ranking."""
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


def pml_accuracy(feats: torch.Tensor, labels: np.ndarray) -> dict:
    """pytorch-metric-learning's AccuracyCalculator (faiss IndexFlatL2, k = largest class) on normalised features."""
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
                              k="max_bin_count", device=feats.device)
    normed = torch.nn.functional.normalize(feats, dim=1)
    return calc.get_accuracy(normed, torch.from_numpy(labels).to(feats.device))


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process."""
    setup_worker(args)
    feats, labels = make_split(args.dataset, args.dim, args.seed, args.device, args.unstructured)
    few = (feats[:WARMUP_IMAGES], labels[:WARMUP_IMAGES])
    if args.impl == "reid":
        stats, result = run_measurement(lambda: evaluate_retrieval(feats, labels, KS), args.device, args.repeat,
                                        warmup=lambda: evaluate_retrieval(*few, KS))
    elif args.impl == "floor":  # the N x N fp32 similarity products alone (nothing kept)
        stats, _ = run_measurement(lambda: matmul_floor(feats, feats), args.device, args.repeat,
                                   warmup=lambda: matmul_floor(few[0], few[0]))
        result = None
    else:
        stats, result = run_measurement(lambda: pml_accuracy(feats, labels), args.device, 1,
                                        warmup=lambda: pml_accuracy(*few))
    return {**stats, "result": {k: round(v, 6) if isinstance(v, float) else v for k, v in (result or {}).items()}}


def main() -> None:
    parser = base_parser(__doc__, MODULE, repeat=1, baseline="pytorch-metric-learning's AccuracyCalculator",
                         datasets=SIZES, dataset="sop")
    parser.set_defaults(dim=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unstructured", action="store_true", help="i.i.d. Gaussian features (the worst case)")
    args = parser.parse_args()
    if args.worker:
        emit(worker(args))
        return
    num, classes = SIZES[args.dataset]
    common = {**common_fields("retrieval", args), "images": num, "classes": classes, "ks": list(KS),
              "unstructured": args.unstructured}
    argv = [*worker_argv(args), "--seed", str(args.seed), "--repeat", str(args.repeat)]
    argv += ["--unstructured"] * args.unstructured
    local = (lambda a: worker(parser.parse_args(["--worker", *a]))) if args.in_process else None
    impls = ["reid", "floor"]
    if args.no_baseline:
        emit({**common, "impl": "pml", "skipped": "--no-baseline"})
    else:
        try:
            import pytorch_metric_learning  # noqa: F401
            impls.append("pml")
        except ImportError:
            emit({**common, "impl": "pml", "skipped": "pytorch-metric-learning is not installed"})
    measured = {}
    for impl in impls:
        measured[impl] = spawn(MODULE, [*argv, "--impl", impl], local)
        line = {**common, "impl": impl, **measured[impl], "load_avg_1min": load_average()}  # now, after it ran
        if impl != "reid" and "wall_s" in measured[impl] and "wall_s" in measured["reid"]:
            line["reid_wall_s_over_this"] = round(measured["reid"]["wall_s"] / measured[impl]["wall_s"], 2)
        emit(line)


if __name__ == "__main__":
    main()
