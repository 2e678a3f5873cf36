"""Evaluation benchmark: sort-free `evaluate_rank` / `evaluate` against an argsort-based NumPy evaluator, and
`evaluate` with the verification metrics (AUC, EER, TAR at FAR) counted in the same pass against `evaluate` alone.

Random features of the real sizes with a realistic identity / camera structure (identity centre + camera shift +
per-image noise in a low-dimensional latent space, projected to `--dim`). Each measurement runs in a fresh
subprocess so its peak RSS is its own; on a GPU an untimed warm-up on a small slice loads the CUDA libraries
first. One JSON line is printed per measurement.

    python benchmarks/eval_bench.py --dataset market --device cpu
    python benchmarks/eval_bench.py --dataset msmt17 --device cuda
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.evaluation import compute_distance, evaluate, evaluate_rank  # noqa: E402
from reid.evaluation.verification import VerificationCounter  # noqa: E402


@dataclass(frozen=True)
class Split:
    """Sizes of a test split: queries, gallery (with distractors pid 0), extra junk (pid -1), ids, cameras."""

    num_query: int
    num_gallery: int
    num_distractors: int
    num_junk: int
    num_ids: int
    num_cams: int


# Market-1501: 3,368 queries, 15,913 gallery images (2,793 distractors) + 3,819 junk, 750 query ids, 6 cameras.
# MSMT17: 11,659 queries, 82,161 gallery images, 3,060 test ids, 15 cameras.
SPLITS = {
    "market": Split(3368, 15913, 2793, 3819, 750, 6),
    "msmt17": Split(11659, 82161, 0, 0, 3060, 15),
    "tiny": Split(100, 400, 40, 20, 30, 4),  # a smoke run in a second (benchmarks/gpu_check.sh --cpu-smoke)
}
LATENT = 64  # identity structure lives in a low-dimensional space, as in real embeddings


def make_split(name: str, dim: int = 2048, seed: int = 0, device: str = "cpu", junk: bool = True):
    """Features (float32, on `device`) and ids: query, gallery (distractors, then junk unless `junk=False`).

    Built in chunks so that the peak memory is about the features themselves.
    """
    split = SPLITS[name]
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((split.num_ids, LATENT))
    cam_shift = 0.45 * rng.standard_normal((split.num_cams, LATENT))
    proj = rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)
    ids = np.arange(split.num_ids)
    q_pids = np.concatenate([ids, rng.choice(ids, split.num_query - split.num_ids)]) + 1
    num_real = split.num_gallery - split.num_distractors
    g_pids = np.concatenate([
        np.concatenate([ids, rng.choice(ids, num_real - split.num_ids)]) + 1,
        np.zeros(split.num_distractors, np.int64),
        np.full(split.num_junk if junk else 0, -1),
    ])
    q_cams = rng.integers(0, split.num_cams, split.num_query)
    g_cams = rng.integers(0, split.num_cams, len(g_pids))

    def features(pids: np.ndarray, cams: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(pids), dim, device=device)
        for start in range(0, len(pids), 8192):
            p, c = pids[start : start + 8192], cams[start : start + 8192]
            person = np.where(p > 0, p - 1, rng.integers(0, split.num_ids, len(p)))  # junk: a bad crop of anyone
            latent = centres[person] + cam_shift[c]
            latent[p == 0] = rng.standard_normal((int((p == 0).sum()), LATENT))  # each distractor: its own person
            noise = rng.lognormal(-0.1, 0.35, (len(p), 1))  # some images are much harder than others
            latent += noise * rng.standard_normal(latent.shape) * np.where(p == -1, 2.0, 1.0)[:, None]
            block = latent @ proj + 0.3 * rng.standard_normal((len(p), dim))
            out[start : start + len(p)] = torch.from_numpy(block.astype(np.float32))
        return out

    return features(q_pids, q_cams), features(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def run_measurement(fn, device: str, repeat: int, warmup=None) -> tuple[dict, object]:
    """Wall time of each of `repeat` runs of `fn` (the best is `wall_s`), peak RSS of this process and, on a GPU, the
    peak memory of each run. On a GPU `warmup` (the same work on a small slice) runs first, untimed: the first
    CUDA call loads libraries and creates handles, which would otherwise be timed as part of the first run."""
    out: dict = {}
    if device.startswith("cuda") and warmup is not None:
        torch.cuda.synchronize()
        start = time.perf_counter()
        warmup()
        torch.cuda.synchronize()
        out["warmup_s"] = round(time.perf_counter() - start, 4)
    rss_before = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        gpu_before = torch.cuda.memory_allocated() / 2**20
    times, cpu_times, peaks, result = [], [], [], None
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
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
    if device.startswith("cuda"):
        out["peak_gpu_mb"] = max(peaks)
        out["peak_gpu_mb_all"] = peaks  # per run, inputs included
        out["gpu_inputs_mb"] = round(gpu_before, 1)
    return out, result


WARMUP_ROWS = (256, 2048)  # queries and gallery items of the warm-up slice


def peak_rss_mb() -> float:
    """This process's peak resident size so far (``ru_maxrss``), in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


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
        sys.path.insert(0, str(ROOT / "tests"))
        from test_eval_rank import brute_force_rank

        if args.mode == "distmat":
            distmat = compute_distance(q, g).cpu().numpy()
            stats, result = run_measurement(lambda: brute_force_rank(distmat, *ids), "cpu", 1)
        else:
            stats, result = run_measurement(
                lambda: brute_force_rank(compute_distance(q, g).cpu().numpy(), *ids), "cpu", 1)
    return {**stats, **_metrics(result)}


def spawn(script: str, argv: list[str], in_process=None) -> dict:
    """Run `script --worker argv` in a fresh process and return the JSON it prints last (or the error);
    `in_process(argv)` measures in this process instead (no start-up cost; peak RSS then includes earlier work)."""
    if in_process is not None:
        return in_process(argv)
    done = subprocess.run([sys.executable, script, "--worker", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def common_fields(bench: str, args: argparse.Namespace) -> dict:
    return {"bench": bench, "dataset": args.dataset, "device": args.device, "device_name": device_name(args.device),
            "dim": args.dim, "torch": torch.__version__, "load_avg_1min": round(os.getloadavg()[0], 2)}


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The shared options, passed on to the measuring subprocess."""
    argv = ["--dataset", args.dataset, "--device", args.device, "--dim", str(args.dim)]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def setup_worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def peer_status(modules: dict[str, str]) -> dict:
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


def base_parser(doc: str) -> argparse.ArgumentParser:
    """Options shared by the evaluation benchmarks (the hidden ones are for the measuring subprocess)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(SPLITS), default="market")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process, not a fresh one per measurement (quick smoke runs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="reid", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--mode", choices=["distmat", "features", "both"], default=None,
                        help="evaluate_rank from a distance matrix, evaluate from features, or both "
                             "(default: both for market, features for msmt17)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported, all listed)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the argsort-based NumPy evaluator and the peer toolkits' check")
    parser.add_argument("--no-verification", action="store_true",
                        help="skip evaluate(features) with the verification metrics counted in the same pass")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    mode = args.mode or ("both" if args.dataset == "market" else "features")
    split = SPLITS[args.dataset]
    common = {**common_fields("eval", args), "num_query": split.num_query,
              "num_gallery": split.num_gallery + split.num_junk}
    argv = worker_argv(args)
    local = (lambda a: worker(parser.parse_args(["--worker", *a]))) if args.in_process else None
    for m in (["distmat", "features"] if mode == "both" else [mode]):
        ours = spawn(__file__, [*argv, "--impl", "reid", "--mode", m, "--repeat", str(args.repeat)], local)
        line = {**common, "what": "evaluate_rank(distmat)" if m == "distmat" else "evaluate(features)",
                "impl": "reid", **ours}
        if args.no_baseline:
            line["baseline"] = "skipped: --no-baseline"
        else:
            base = spawn(__file__, [*argv, "--impl", "numpy_argsort", "--mode", m, "--repeat", "1"], local)
            print(json.dumps({**common, "what": line["what"], "impl": "numpy_argsort_reference", **base}))
            if "wall_s" in base and "wall_s" in ours:
                line["baseline_wall_s"] = base["wall_s"]
                line["speedup_vs_baseline"] = round(base["wall_s"] / ours["wall_s"], 2)
                line["same_metrics_as_baseline"] = all(
                    abs(ours[k] - base[k]) < 1e-9 for k in ("rank1", "mAP", "mINP"))
        if not args.no_baseline:
            line["peers"] = peer_status({"fastreid": "fastreid.evaluation.rank",
                                         "torchreid": "torchreid.reid.metrics.rank"})
        print(json.dumps(line), flush=True)
        if m == "features" and not args.no_verification:
            both = spawn(__file__, [*argv, "--impl", "reid+verification", "--mode", m, "--repeat", str(args.repeat)],
                         local)
            out = {**common, "what": "evaluate(features) + verification in the same pass", "impl": "reid+verification",
                   **both}
            if "wall_s" in both and "wall_s" in ours:
                out["evaluate_alone_wall_s"], out["evaluate_alone_peak_rss_mb"] = ours["wall_s"], ours["peak_rss_mb"]
                out["time_ratio"] = round(both["wall_s"] / ours["wall_s"], 3)
                out["peak_rss_ratio"] = round(both["peak_rss_mb"] / ours["peak_rss_mb"], 3)
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
