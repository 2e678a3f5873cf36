"""``reid-search`` / ``tools/search.py``: rank the images of a feature file (reid-extract) for query images,
exactly or from a FAISS index, optionally keeping only the matches under a verification threshold."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..gallery import FeatureFile, Gallery
from ..gallery.index import check_nprobe
from ..utils.errors import ConfigError, DatasetError
from .cameras import add_camera_options, camera_help, cameras_from_args
from .parser import plain_parser, run_tool

EPILOG = """examples:
  reid-search --gallery feats.npz --query person.jpg other.jpg --topk 5
  reid-search --gallery gallery.npz --query-npz queries.npz --topk 10 --output results.json
  reid-search --gallery gallery.npz --query person.jpg --threshold auto --aqe
  reid-search --gallery transreid_feats.npz --query 0001_c1s1_001051_00.jpg --camera 1

Distances are cosine distances (1 - cosine similarity, 0 = same direction, 2 = opposite). Query images are
embedded with the checkpoint and the config recorded in the gallery file (so resizing, TEST.FLIP and
normalisation match the gallery's); --weights names the same checkpoint elsewhere (moved or copied). Query
features (--query-npz) and --weights of another checkpoint (by SHA-256, as recorded in the files) or other
embedding settings are refused: distances between embeddings of two models mean nothing.

--index auto (the default) answers from the FAISS index beside the gallery (gallery.index.npz, written by
reid-extract --index) when there is one, else by reid's exact search; --index exact forces the exact search,
--index FILE names an index. An index that was not built from this gallery is refused.
--threshold VALUE keeps only matches at a distance <= VALUE ("same person"); --threshold auto uses the threshold
the checkpoint's training run chose at TEST.VERIFY_FAR (recorded in the gallery file).
--aqe expands each query with its nearest gallery items (alpha query expansion, TEST.AQE.QE_TIME / QE_K / ALPHA
of the gallery's config) before ranking.
--output writes {"metric", "gallery", "topk", "index", "threshold", "queries": [{"query", "matches": [{"rank",
"name", "distance"}]}]}.

""" + camera_help("the --query path as given")


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
                             "slower. Only for an IVF-PQ index (refused otherwise)")
    parser.add_argument("--threshold", default=None, metavar="auto|VALUE",
                        help="keep matches at a cosine distance <= VALUE; auto: the checkpoint's threshold")
    parser.add_argument("--aqe", action="store_true", help="alpha query expansion of the queries before ranking")
    parser.add_argument("--output", metavar="JSON", help="also write the ranked matches to this JSON file")
    parser.add_argument("--weights", metavar="CKPT", help="the gallery's checkpoint, to embed --query images with "
                                                          "(default: the path recorded in the gallery file)")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda or cuda:N")
    add_camera_options(parser, "--query")
    args = parser.parse_args(argv)
    if args.topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {args.topk}.")
    if args.query_npz and (args.camera is not None or args.cameras_from_names):
        raise ConfigError("--camera and --cameras-from-names give the cameras of --query images; --query-npz "
                          "features were embedded with theirs already (reid-extract --camera ...).")
    gallery = Gallery.open(args.gallery, index=args.index, device=args.device)
    check_nprobe(gallery.index.kind if gallery.index is not None else "exact", args.nprobe)  # before any embedding
    threshold = gallery.resolve_threshold(_threshold(args.threshold))
    if args.query_npz:
        queries = FeatureFile.load(args.query_npz)
        gallery.check_queries(queries, f"The features of --query-npz {args.query_npz!r}")
        q_feats, q_names = torch.from_numpy(queries.features), queries.names
    else:
        _check_query_files(args.query)  # before the model is loaded
        model = gallery.query_model(args.weights)
        cameras = cameras_from_args(args, args.query, model.num_cameras, "--query")
        q_feats, q_names = model.embed(args.query, cameras=cameras), list(args.query)
    result = gallery.search(q_feats, args.topk, aqe=args.aqe, threshold=threshold, nprobe=args.nprobe)
    results = [{"query": name, "matches": [{"rank": m.rank, "name": m.name, "distance": round(m.distance, 6)}
                                           for m in result.matches(q)]}
               for q, name in enumerate(q_names)]
    for res in results:
        print(f"query {res['query']}")
        print(f"  {'rank':>4}  {'distance':>8}  gallery")
        for m in res["matches"]:
            print(f"  {m['rank']:>4}  {m['distance']:>8.4f}  {m['name']}")
        if not res["matches"]:
            print("  (no gallery image within the threshold)")
    kind = "exact" if gallery.index is None else gallery.index.kind
    how = "exact search" if gallery.index is None else f"{kind} index"
    print(f"({len(gallery)} gallery images, {how}" +
          (f", threshold {threshold:.6f}: same person when distance <= threshold)" if threshold is not None else ")"))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"metric": "cosine", "gallery": args.gallery, "topk": args.topk, "index": kind,
                                   "threshold": threshold, "queries": results}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


def _check_query_files(paths: Sequence[str]) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(repr(p) for p in missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise DatasetError(f"--query: no image file {shown} (relative paths are read from {Path.cwd()}). Give the "
                           f"paths of existing image files, or query features written by tools/extract.py with "
                           f"--query-npz.")


def _threshold(choice: Optional[str]) -> Union[None, float, str]:
    """--threshold as Gallery.search takes it: None, "auto" or a distance."""
    if choice is None or choice == "auto":
        return choice
    try:
        return float(choice)
    except ValueError:
        raise ConfigError(f"--threshold must be auto or a distance, e.g. 0.4; got {choice!r}.") from None


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
