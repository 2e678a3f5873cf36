"""Re-ranking benchmark: sparse `re_ranking` against the textbook dense NumPy version (the tests' reference).

Same random features as `eval_bench` (`splits.py`; query + gallery without junk: Market-1501 N = 19,281, MSMT17
N = 93,820), L2-normalised. Each measurement runs in a fresh subprocess (on a GPU after an untimed warm-up on a
small slice); ours runs --repeat times (2). One JSON line per measurement. The
dense baseline runs in float32 like the authors' code, only where its N x N matrices fit (Market-1501 needs
about 10 GB); its output is compared with ours (max absolute difference).

    python -m benchmarks.rerank_bench --dataset market --device cpu
    python -m benchmarks.rerank_bench --dataset msmt17 --device cuda --no-baseline
    python -m benchmarks.rerank_bench --dataset msmt17 --device cpu --no-baseline --streamed --repeat 1
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

from reid.evaluation import Reranker, re_ranking

from .common import device_name, emit, peer_status
from .measure import (WARMUP_ROWS, base_parser, common_fields, floor_fields, matmul_floor, run_measurement,
                      setup_worker, spawn, worker_argv)
from .references import dense_re_ranking_reference
from .splits import SPLITS, make_split

MODULE = "benchmarks.rerank_bench"  # run again by spawn, once per measurement

# Bytes per N^2 entry the dense baseline holds at its peak (float32 distances, int64 argsort, V, V_qe, temporaries).
DENSE_BYTES_PER_ENTRY = 28


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process."""
    setup_worker(args)
    q, g, *_ = make_split(args.dataset, args.dim, device=args.device, junk=False)
    q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    if args.impl == "floor":  # the half N x N fp32 product, in the same kind of fresh process
        x = torch.cat([q, g])
        return {"wall_s": round(matmul_floor(x, x, upper=True), 4), "torch_threads": torch.get_num_threads()}
    if args.impl == "reid":
        nq, ng = WARMUP_ROWS
        stats, out = run_measurement(lambda: re_ranking(q, g, args.k1, args.k2, args.lambda_value), args.device,
                                     args.repeat, warmup=lambda: re_ranking(q[:nq], g[:ng], args.k1, args.k2,
                                                                            args.lambda_value))
        return {**stats, "output_checksum": float(out.double().sum())}
    if args.impl == "reid_streamed":  # what evaluate(rerank=True) does above HOLD_ELEMS pairs: no q x g matrix
        def streamed(qf: torch.Tensor, gf: torch.Tensor) -> float:
            rr = Reranker(qf, gf, args.k1, args.k2, args.lambda_value, hold=False)
            return sum(float(block.double().sum()) for _, block in rr.blocks())

        nq, ng = WARMUP_ROWS
        stats, checksum = run_measurement(lambda: streamed(q, g), args.device, args.repeat,
                                          warmup=lambda: streamed(q[:nq], g[:ng]))
        return {**stats, "output_checksum": checksum}
    qn, gn = q.cpu().numpy(), g.cpu().numpy()
    stats, dense = run_measurement(
        lambda: dense_re_ranking_reference(qn, gn, args.k1, args.k2, args.lambda_value, dtype=np.float32), "cpu", 1)
    ours = re_ranking(q, g, args.k1, args.k2, args.lambda_value).cpu().numpy()
    diff = np.abs(dense - ours)
    return {**stats, "max_abs_diff_vs_reid": float(diff.max()), "entries_over_1e-4": int((diff > 1e-4).sum()),
            "rows_over_1e-4": int((diff > 1e-4).any(1).sum())}


def main() -> None:
    parser = base_parser(__doc__, MODULE, repeat=2, baseline="the dense NumPy re-ranking")
    parser.add_argument("--k1", type=int, default=20)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--lambda-value", type=float, default=0.3)
    parser.add_argument("--streamed", action="store_true",
                        help="time the re-ranked rows block by block without the query x gallery matrix (what "
                             "evaluate(rerank=True) does on MSMT17-sized splits) instead of re_ranking's matrix")
    args = parser.parse_args()
    if args.worker:
        emit(worker(args))
        return
    split = SPLITS[args.dataset]
    num = split.num_query + split.num_gallery
    common = {**common_fields("rerank", args), "num_query": split.num_query, "num_gallery": split.num_gallery,
              "k1": args.k1, "k2": args.k2, "lambda_value": args.lambda_value}
    argv = [*worker_argv(args), "--k1", str(args.k1), "--k2", str(args.k2), "--lambda-value", str(args.lambda_value),
            "--repeat", str(args.repeat)]
    local = (lambda a: worker(parser.parse_args(["--worker", *a]))) if args.in_process else None
    impl, what = (("reid_streamed", "Reranker(features, hold=False).blocks(), every block summed") if args.streamed
                  else ("reid", "re_ranking(features)"))
    ours = {**common, "what": what, "impl": "reid", **spawn(MODULE, [*argv, "--impl", impl], local)}
    # the floor: N^2 / 2 x dim products, what exact re-ranking cannot avoid
    ours.update(floor_fields(ours, spawn(MODULE, [*argv, "--impl", "floor"], local)))
    need_gb = DENSE_BYTES_PER_ENTRY * num**2 / 2**30
    free_gb = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    if args.no_baseline:
        ours["baseline"] = "skipped: --no-baseline"
    elif need_gb > 0.8 * free_gb:
        ours["baseline"] = f"skipped: the dense version needs about {need_gb:.0f} GB, {free_gb:.0f} GB free"
    else:
        base = spawn(MODULE, [*argv, "--impl", "dense_numpy"], local)
        emit({**common, "what": "re_ranking(features)", "impl": "dense_numpy_reference_float32", "device": "cpu",
              "device_name": device_name("cpu"), **base})
        if "wall_s" in base and "wall_s" in ours:
            ours["baseline_wall_s"] = base["wall_s"]
            ours["speedup_vs_baseline"] = round(base["wall_s"] / ours["wall_s"], 2)
            ours["baseline_peak_rss_mb"] = base["peak_rss_mb"]
            ours["max_abs_diff_vs_baseline"] = base.get("max_abs_diff_vs_reid")
            ours["entries_over_1e-4_vs_baseline"] = base.get("entries_over_1e-4")
    if not args.no_baseline:
        ours["peers"] = peer_status({"fastreid": "fastreid.evaluation.rerank", "torchreid": "torchreid.reid.utils.rerank"})
    emit(ours)


if __name__ == "__main__":
    main()
