"""Search benchmark: FAISS gallery indexes (reid/gallery/index.py) against reid's exact torch search, in the same run.

A gallery of `--size` structured random features (identity centres in a low-dimensional latent space projected to
`--dim`, per-image noise, L2-normalised, as in eval_bench) and `--queries` queries (other views of gallery
identities). For each index kind: build time, index size, the process's peak RSS, queries/s (all queries in one
call; the median of --repeat calls) and recall@k against the exact search's top-k. One JSON line per measurement.

    python -m benchmarks.search_bench                         # 1 M x 512 on the CPU: exact, flat, ivfpq
    python -m benchmarks.search_bench --kinds ivfpq,hnsw --size 200000
    python -m benchmarks.search_bench --size 10000000 --device cuda   # with faiss-gpu
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Tuple, TypeVar

import numpy as np
import torch

from reid.gallery import DEFAULTS, build_index, search

from .common import device_name, emit, peak_rss_mb, timed_calls
from .splits import LATENT

T = TypeVar("T")


def make_data(size: int, queries: int, dim: int, ids: int, seed: int = 0):
    """(gallery, queries) float32, L2-normalised, built in chunks (peak memory about the gallery itself)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, LATENT)).astype(np.float32)
    proj = (rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(np.float32)

    def views(n: int) -> np.ndarray:
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, 65536):
            m = min(65536, n - start)
            latent = centres[rng.integers(0, ids, m)] + 0.5 * rng.standard_normal((m, LATENT)).astype(np.float32)
            x = latent @ proj + 0.3 * rng.standard_normal((m, dim)).astype(np.float32)
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return views(size), views(queries)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="gallery vectors (default 1 M)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ids", type=int, default=100_000, help="identities in the gallery")
    parser.add_argument("--k", type=int, default=10, help="recall@k")
    parser.add_argument("--kinds", default="flat,ivfpq", help="index kinds, comma-separated (flat, ivfpq, hnsw)")
    parser.add_argument("--nprobe", default="", help="IVF-PQ cells scanned, comma-separated (default: the index's "
                                                     "default and half and twice it)")
    parser.add_argument("--refine", default="10", help="IVF-PQ candidates re-ranked exactly, x k, comma-separated")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (faiss-gpu)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls of each search; the median is reported "
                                                              "(one call of 1,000 queries is too short to trust)")
    args = parser.parse_args()
    common = {"bench": "search", "size": args.size, "dim": args.dim, "queries": args.queries, "k": args.k,
              "device": args.device, "device_name": device_name(args.device),
              "torch_threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    gallery, queries = make_data(args.size, args.queries, args.dim, args.ids)
    emit({**common, "what": "data", "seconds": round(time.perf_counter() - t0, 2),
          "gallery_mb": round(gallery.nbytes / 2**20, 1), "peak_rss_mb": peak_rss_mb()})
    names = [str(i) for i in range(args.size)]
    q = torch.from_numpy(queries)
    g = torch.from_numpy(gallery).to(args.device)
    search(q[:8].to(args.device), g, args.k)  # warm-up
    exact_s, (_, exact) = timed(lambda: search(q.to(args.device), g, args.k), args.repeat, args.device)
    exact = exact.cpu().numpy()
    exact_qps = args.queries / exact_s
    emit({**common, "what": "exact torch search", "seconds": round(exact_s, 3), "repeat": args.repeat,
          "queries_per_s": round(exact_qps, 1), "peak_rss_mb": peak_rss_mb()})
    del g
    for kind in args.kinds.split(","):
        t0 = time.perf_counter()
        index = build_index(gallery, names, kind, args.device)
        build_s = time.perf_counter() - t0
        import faiss

        size_mb = len(faiss.serialize_index(index.index)) / 2**20
        probes = [int(n) for n in args.nprobe.split(",")] if args.nprobe else \
            [p * index.params.get("nprobe", 1) // 2 for p in (1, 2, 4)]
        settings = [{"nprobe": n, "refine": int(r)} for r in args.refine.split(",")
                    for n in probes] if kind == "ivfpq" else [{}]
        for extra in settings:
            index.search(q[:8], gallery, args.k, args.device, **extra)  # warm-up
            seconds, (_, found) = timed(lambda: index.search(q, gallery, args.k, args.device, **extra), args.repeat,
                                       args.device)
            recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(found.tolist(), exact.tolist())]))
            params = {**DEFAULTS[kind], **index.params, **extra}
            emit({**common, "what": f"{kind} index", "params": params, "build_s": round(build_s, 2),
                  "index_mb": round(size_mb, 1), "peak_rss_mb": peak_rss_mb(), "seconds": round(seconds, 3),
                  "repeat": args.repeat, "queries_per_s": round(args.queries / seconds, 1),
                  "speedup_vs_exact": round(exact_s / seconds, 2), f"recall_at_{args.k}": round(recall, 4)})
        del index


def timed(call: Callable[[], T], repeat: int, device: str) -> Tuple[float, T]:
    """(median seconds of ``repeat`` calls, the last call's result); on a GPU each call ends synchronised, so its
    queued kernels are timed with it."""
    times, result = timed_calls(call, repeat, device)
    return float(np.median(times)), result


if __name__ == "__main__":
    main()
