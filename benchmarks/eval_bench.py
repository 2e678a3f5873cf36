"""Evaluation benchmark: sort-free `evaluate_rank` / `evaluate` against an argsort-based NumPy evaluator, and
`evaluate` with the verification metrics (AUC, EER, TAR at FAR) counted in the same pass against `evaluate` alone.

Random features of the real sizes with a realistic identity / camera structure (identity centre + camera shift +
per-image noise in a low-dimensional latent space, projected to `--dim`). Each measurement runs in a fresh
subprocess so its peak RSS is its own; on a GPU an untimed warm-up on a small slice loads the CUDA libraries
first. One JSON line is printed per measurement.

    python -m benchmarks.eval_bench --dataset market --device cpu
    python -m benchmarks.eval_bench --dataset msmt17 --device cuda
"""
from __future__ import annotations

import argparse

import torch

from reid.evaluation import compute_distance, evaluate, evaluate_rank
from reid.evaluation.verification import VerificationCounter

from .common import emit, peer_status
from .measure import (WARMUP_ROWS, base_parser, common_fields, floor_fields, matmul_floor, run_measurement,
                      setup_worker, spawn, worker_argv)
from .references import brute_force_rank
from .splits import SPLITS, make_split

MODULE = "benchmarks.eval_bench"  # run again by spawn, once per measurement


def _metrics(result) -> dict:
    if isinstance(result, tuple):  # the NumPy reference returns (cmc, mAP, mINP, num_valid, ap, inp)
        return {"rank1": float(result[0][0]), "mAP": float(result[1]), "mINP": float(result[2])}
    return {"rank1": float(result.cmc[0]), "mAP": result.mAP, "mINP": result.mINP}


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process."""
    setup_worker(args)
    q, g, q_pids, g_pids, q_cams, g_cams = make_split(args.dataset, args.dim, device=args.device)
    ids = (q_pids, g_pids, q_cams, g_cams)
    nq, ng = WARMUP_ROWS
    few = (q_pids[:nq], g_pids[:ng], q_cams[:nq], g_cams[:ng])
    if args.impl == "floor":  # the query x gallery fp32 product, in the same kind of fresh process
        return {"wall_s": round(matmul_floor(q, g), 4), "torch_threads": torch.get_num_threads()}
    if args.impl == "reid" and args.mode == "distmat":
        distmat = compute_distance(q, g)
        stats, result = run_measurement(lambda: evaluate_rank(distmat, *ids), args.device, args.repeat,
                                        warmup=lambda: evaluate_rank(distmat[:nq, :ng], *few))
    elif args.impl == "reid":
        stats, result = run_measurement(lambda: evaluate(q, g, *ids), args.device, args.repeat,
                                        warmup=lambda: evaluate(q[:nq], g[:ng], *few))
    elif args.impl == "reid+verification":
        def both(qf, gf, pids_cams):
            counter = VerificationCounter(*pids_cams, device=args.device)
            return evaluate(qf, gf, *pids_cams, observe=counter.add), counter.result()

        stats, (result, ver) = run_measurement(lambda: both(q, g, ids), args.device, args.repeat,
                                               warmup=lambda: both(q[:nq], g[:ng], few))
        return {**stats, **_metrics(result), "verification": {k: v for k, v in ver.as_dict().items()
                                                              if k not in ("far", "threshold")}}
    else:
        if args.mode == "distmat":
            distmat = compute_distance(q, g).cpu().numpy()
            stats, result = run_measurement(lambda: brute_force_rank(distmat, *ids), "cpu", 1)
        else:
            stats, result = run_measurement(
                lambda: brute_force_rank(compute_distance(q, g).cpu().numpy(), *ids), "cpu", 1)
    return {**stats, **_metrics(result)}


def main() -> None:
    parser = base_parser(__doc__, MODULE, repeat=3, baseline="the argsort-based NumPy evaluator")
    parser.add_argument("--mode", choices=["distmat", "features", "both"], default=None,
                        help="evaluate_rank from a distance matrix, evaluate from features, or both "
                             "(default: both for market, features for msmt17)")
    parser.add_argument("--no-verification", action="store_true",
                        help="skip evaluate(features) with the verification metrics counted in the same pass")
    args = parser.parse_args()
    if args.worker:
        emit(worker(args))
        return
    mode = args.mode or ("both" if args.dataset == "market" else "features")
    split = SPLITS[args.dataset]
    common = {**common_fields("eval", args), "num_query": split.num_query,
              "num_gallery": split.num_gallery + split.num_junk}
    argv = worker_argv(args)
    local = (lambda a: worker(parser.parse_args(["--worker", *a]))) if args.in_process else None
    for m in (["distmat", "features"] if mode == "both" else [mode]):
        ours = spawn(MODULE, [*argv, "--impl", "reid", "--mode", m, "--repeat", str(args.repeat)], local)
        line = {**common, "what": "evaluate_rank(distmat)" if m == "distmat" else "evaluate(features)",
                "impl": "reid", **ours}
        floor = spawn(MODULE, [*argv, "--impl", "floor", "--mode", m], local) if m == "features" else {}
        line.update(floor_fields(ours, floor))  # the floor: num_query x num_gallery x dim products
        if args.no_baseline:
            line["baseline"] = "skipped: --no-baseline"
        else:
            base = spawn(MODULE, [*argv, "--impl", "numpy_argsort", "--mode", m, "--repeat", "1"], local)
            emit({**common, "what": line["what"], "impl": "numpy_argsort_reference", **base})
            if "wall_s" in base and "wall_s" in ours:
                line["baseline_wall_s"] = base["wall_s"]
                line["speedup_vs_baseline"] = round(base["wall_s"] / ours["wall_s"], 2)
                line["same_metrics_as_baseline"] = all(
                    abs(ours[k] - base[k]) < 1e-9 for k in ("rank1", "mAP", "mINP"))
        if not args.no_baseline:
            line["peers"] = peer_status({"fastreid": "fastreid.evaluation.rank",
                                         "torchreid": "torchreid.reid.metrics.rank"})
        emit(line)
        if m == "features" and not args.no_verification:
            both = spawn(MODULE, [*argv, "--impl", "reid+verification", "--mode", m, "--repeat", str(args.repeat)],
                         local)
            out = {**common, "what": "evaluate(features) + verification in the same pass", "impl": "reid+verification",
                   **both}
            if "wall_s" in both and "wall_s" in ours:
                out["evaluate_alone_wall_s"], out["evaluate_alone_peak_rss_mb"] = ours["wall_s"], ours["peak_rss_mb"]
                out["time_ratio"] = round(both["wall_s"] / ours["wall_s"], 3)
                out["peak_rss_ratio"] = round(both["peak_rss_mb"] / ours["peak_rss_mb"], 3)
                out.update(floor_fields(both, floor))
            emit(out)


if __name__ == "__main__":
    main()
