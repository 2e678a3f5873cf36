"""``reid-search`` / ``tools/search.py``: rank the images of a feature file (reid-extract) for query images,
exactly or from a FAISS index, optionally keeping only the matches under a verification threshold."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..api import FeatureFile, ReIDModel, search
from ..checkpoint import load_checkpoint
from ..config import get_cfg
from ..evaluation.query_expansion import expand_queries
from ..index import GalleryIndex, index_path
from ..utils.errors import CheckpointError, ConfigError, DatasetError
from .parser import plain_parser, run_tool

EPILOG = """examples:
  reid-search --gallery feats.npz --query person.jpg other.jpg --topk 5
  reid-search --gallery gallery.npz --query-npz queries.npz --topk 10 --output results.json
  reid-search --gallery gallery.npz --query person.jpg --threshold auto --aqe

Distances are cosine distances (1 - cosine similarity, 0 = same direction, 2 = opposite). Query images are
embedded with the checkpoint and the config recorded in the gallery file (so resizing, TEST.FLIP and
normalisation match the gallery's); --weights names another checkpoint of the same model.

--index auto (the default) answers from the FAISS index beside the gallery (gallery.index.npz, written by
reid-extract --index) when there is one, else by reid's exact search; --index exact forces the exact search,
--index FILE names an index. An index that was not built from this gallery is refused.
--threshold VALUE keeps only matches at a distance <= VALUE ("same person"); --threshold auto uses the threshold
the checkpoint's training run chose at TEST.VERIFY_FAR (recorded in the gallery file).
--aqe expands each query with its nearest gallery items (alpha query expansion, TEST.AQE.QE_TIME / QE_K / ALPHA
of the gallery's config) before ranking.
--output writes {"metric", "gallery", "topk", "index", "threshold", "queries": [{"query", "matches": [{"rank",
"name", "distance"}]}]}."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = plain_parser("Search a gallery feature file for the nearest images to queries.", EPILOG,
                          prog="reid-search")
    parser.add_argument("--gallery", required=True, metavar="NPZ", help="feature file written by tools/extract.py")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--query", nargs="+", metavar="IMG", help="query image file(s)")
    query.add_argument("--query-npz", metavar="NPZ", help="query feature file written by tools/extract.py")
    parser.add_argument("--topk", type=int, default=10, help="matches to show per query (default 10)")
    parser.add_argument("--index", default="auto", metavar="auto|exact|FILE",
                        help="answer from the FAISS index beside the gallery (auto, the default, when there is "
                             "one), by exact search (exact), or from FILE")
    parser.add_argument("--nprobe", type=int, default=None,
                        help="IVF-PQ cells to scan (default: the index's, 1/16 of its cells); more = higher recall, "
                             "slower")
    parser.add_argument("--threshold", default=None, metavar="auto|VALUE",
                        help="keep matches at a cosine distance <= VALUE; auto: the checkpoint's threshold")
    parser.add_argument("--aqe", action="store_true", help="alpha query expansion of the queries before ranking")
    parser.add_argument("--output", metavar="JSON", help="also write the ranked matches to this JSON file")
    parser.add_argument("--weights", metavar="CKPT", help="checkpoint to embed --query images with "
                                                          "(default: the one recorded in the gallery file)")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    if args.topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {args.topk}.")
    gallery = FeatureFile.load(args.gallery)
    threshold = _threshold(args.threshold, gallery, args.gallery)
    index = _index(args.index, gallery, args.gallery)
    if args.query_npz:
        queries = FeatureFile.load(args.query_npz)
        q_feats, q_names = torch.from_numpy(queries.features), queries.names
    else:
        _check_query_files(args.query)  # before the model is loaded
        weights = args.weights or gallery.weights
        if not weights:
            raise CheckpointError(f"{args.gallery!r} records no checkpoint; pass --weights CKPT to embed the queries.")
        model = ReIDModel.from_checkpoint(weights, config=gallery.config(), device=args.device)
        q_feats, q_names = model.embed(args.query), list(args.query)
    g_feats = torch.from_numpy(gallery.features)
    overrides = {"nprobe": args.nprobe} if args.nprobe else {}
    if args.aqe:
        aqe = (gallery.config() or get_cfg()).TEST.AQE  # the gallery's TEST.AQE, or the defaults without a config

        def neighbours(rows: torch.Tensor, k: int):  # the index's neighbours as (similarities, indices)
            dist, idx = index.search(rows, gallery.features, k, args.device, **overrides)
            return 1 - dist, idx

        q_feats = expand_queries(q_feats, g_feats, aqe.QE_TIME, aqe.QE_K, aqe.ALPHA,
                                 neighbours=None if index is None else neighbours)
    if index is None:
        dist, idx = search(q_feats, g_feats, args.topk)
    else:
        dist, idx = index.search(q_feats, gallery.features, args.topk, args.device, **overrides)
    results = []
    for q, name in enumerate(q_names):
        matches = [{"rank": r + 1, "name": gallery.names[j], "distance": round(d, 6)}
                   for r, (d, j) in enumerate(zip(dist[q].tolist(), idx[q].tolist()))
                   if j >= 0 and (threshold is None or d <= threshold)]
        results.append({"query": name, "matches": matches})
    for res in results:
        print(f"query {res['query']}")
        print(f"  {'rank':>4}  {'distance':>8}  gallery")
        for m in res["matches"]:
            print(f"  {m['rank']:>4}  {m['distance']:>8.4f}  {m['name']}")
        if not res["matches"]:
            print("  (no gallery image within the threshold)")
    how = "exact search" if index is None else f"{index.kind} index"
    print(f"({len(gallery.names)} gallery images, {how}" +
          (f", threshold {threshold:.6f}: same person when distance <= threshold)" if threshold is not None else ")"))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"metric": "cosine", "gallery": args.gallery, "topk": args.topk,
                                   "index": "exact" if index is None else index.kind, "threshold": threshold,
                                   "queries": results}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


def _check_query_files(paths: Sequence[str]) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(repr(p) for p in missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise DatasetError(f"--query: no image file {shown} (relative paths are read from {Path.cwd()}). Give the "
                           f"paths of existing image files, or query features written by tools/extract.py with "
                           f"--query-npz.")


def _index(choice: str, gallery: FeatureFile, gallery_path: str) -> Optional[GalleryIndex]:
    if choice == "exact":
        return None
    path = index_path(gallery_path) if choice == "auto" else Path(choice)
    if choice == "auto" and not path.is_file():
        return None
    return GalleryIndex.load(path, gallery.features, gallery.names, repr(gallery_path))


def _threshold(choice: Optional[str], gallery: FeatureFile, gallery_path: str) -> Optional[float]:
    """None (no filtering), a given distance, or the checkpoint's verification threshold."""
    if choice is None:
        return None
    if choice != "auto":
        try:
            return float(choice)
        except ValueError:
            raise ConfigError(f"--threshold must be auto or a distance, e.g. 0.4; got {choice!r}.") from None
    value = gallery.threshold
    if math.isnan(value) and gallery.weights and os.path.isfile(gallery.weights):
        value = load_checkpoint(gallery.weights).get("threshold", float("nan"))  # a gallery written before thresholds
    if value is None or math.isnan(value):
        raise CheckpointError(f"--threshold auto: the checkpoint of {gallery_path!r} ({gallery.weights or 'none'}) "
                              f"stores no verification threshold (written before thresholds were kept, converted "
                              f"from another toolkit, or never evaluated by reid-train). Pass --threshold VALUE, "
                              f"e.g. verification.threshold of the metrics.json that reid-test writes for it.")
    cfg = gallery.config()
    if cfg is not None and cfg.TEST.METRIC != "cosine":
        raise CheckpointError(f"--threshold auto: the checkpoint's threshold is a {cfg.TEST.METRIC} distance but "
                              f"reid-search ranks by cosine distance; pass --threshold VALUE.")
    return float(value)


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
