"""``reid-search`` / ``tools/search.py``: rank the images of a feature file (reid-extract) for query images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..api import FeatureFile, ReIDModel, search
from ..utils.errors import CheckpointError, DatasetError
from .parser import plain_parser, run_tool

EPILOG = """examples:
  reid-search --gallery feats.npz --query person.jpg other.jpg --topk 5
  reid-search --gallery gallery.npz --query-npz queries.npz --topk 10 --output results.json

Distances are cosine distances (1 - cosine similarity, 0 = same direction, 2 = opposite). Query images are
embedded with the checkpoint and the config recorded in the gallery file (so resizing, TEST.FLIP and
normalisation match the gallery's); --weights names another checkpoint of the same model. --output writes
{"metric", "gallery", "topk", "queries": [{"query", "matches": [{"rank", "name", "distance"}]}]}."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = plain_parser("Search a gallery feature file for the nearest images to queries.", EPILOG,
                          prog="reid-search")
    parser.add_argument("--gallery", required=True, metavar="NPZ", help="feature file written by tools/extract.py")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--query", nargs="+", metavar="IMG", help="query image file(s)")
    query.add_argument("--query-npz", metavar="NPZ", help="query feature file written by tools/extract.py")
    parser.add_argument("--topk", type=int, default=10, help="matches to show per query (default 10)")
    parser.add_argument("--output", metavar="JSON", help="also write the ranked matches to this JSON file")
    parser.add_argument("--weights", metavar="CKPT", help="checkpoint to embed --query images with "
                                                          "(default: the one recorded in the gallery file)")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    gallery = FeatureFile.load(args.gallery)
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
    dist, idx = search(q_feats, torch.from_numpy(gallery.features), args.topk)
    results = [{"query": name, "matches": [{"rank": r + 1, "name": gallery.names[j], "distance": round(d, 6)}
                                           for r, (d, j) in enumerate(zip(dist[q].tolist(), idx[q].tolist()))]}
               for q, name in enumerate(q_names)]
    for res in results:
        print(f"query {res['query']}")
        print(f"  {'rank':>4}  {'distance':>8}  gallery")
        for m in res["matches"]:
            print(f"  {m['rank']:>4}  {m['distance']:>8.4f}  {m['name']}")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"metric": "cosine", "gallery": args.gallery, "topk": args.topk,
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


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
