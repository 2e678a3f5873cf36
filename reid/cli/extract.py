"""``reid-extract`` / ``tools/extract.py``: embed a folder (or a list) of images with a trained checkpoint into
an .npz, optionally with a FAISS index beside it; ``--append`` adds images to an existing gallery."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..gallery import KINDS, Gallery
from ..inference import ReIDModel, list_images
from ..utils.errors import ConfigError, DatasetError
from .cameras import add_camera_options, camera_help, cameras_from_args
from .parser import config_parser, run_tool

EPILOG = """examples:
  reid-extract --weights output/market1501/resnet50_circle/model_final.pt --input crops/ --output feats.npz
  reid-extract --weights model_final.pt --input list.txt --output feats.npz TEST.FLIP True
  reid-extract --weights model_final.pt --input crops/ --output gallery.npz --index ivfpq
  reid-extract --weights model_final.pt --input new_crops/ --output gallery.npz --append
  reid-extract --weights transreid_market.pt --input bounding_box_test/ --output feats.npz --cameras-from-names

The model is rebuilt from the config stored in the checkpoint; --config FILE (needed for a bare state dict)
and KEY VALUE overrides (after all options) are merged over it. Images are resized and normalised exactly as
at test time (INPUT.SIZE_TEST, INPUT.INTERPOLATION, INPUT.PIXEL_MEAN / PIXEL_STD). --input is a folder
(searched recursively for .jpg .jpeg .png .bmp .webp .tif) or a text file with one image path per line
(relative to the list's folder).

The .npz holds "features" (N, D) float32 (L2-normalised unless --no-normalize), "names" (paths relative to the
folder, or the list's lines), "normalized", "weights" (the checkpoint) with "weights_sha256", "cfg" (the
config, as JSON) and "threshold" (the checkpoint's verification threshold, NaN if none), which tools/search.py
uses to embed queries the same way. Read it with np.load(path).

--index flat|ivfpq|hnsw also writes a FAISS index beside it (feats.npz -> feats.index.npz; pip install
faiss-cpu): flat = exact, ivfpq = inverted file + product quantisation re-ranked with the exact features (the
choice for millions of crops), hnsw = graph search. The index records the gallery it was built from; reid-search
refuses one that does not match. --index exact (the default) writes none.

An existing --output is not replaced unless --overwrite is given (which also removes the FAISS index of the
replaced gallery). --append embeds only the new images and adds them to the existing --output (and to its index,
without re-embedding or re-training anything). It refuses another checkpoint (by its SHA-256), another config,
another dimension or normalisation, names already in the gallery and a damaged index, before anything is embedded;
the file and its index are written only once everything is computed.

An image that cannot be decoded stops the extraction and is named; DATASETS.SKIP_UNREADABLE True skips such files
instead (each image is then decoded once more up front to check it) and lists them.

""" + camera_help("the name (the path below --input, or the line of the list)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser("Extract re-ID embeddings of a folder or list of images into an .npz file.", EPILOG,
                           prog="reid-extract")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint written by tools/train.py")
    parser.add_argument("--input", required=True, metavar="DIR_OR_LIST",
                        help="folder of images (recursive) or text file listing image paths")
    parser.add_argument("--output", required=True, metavar="NPZ", help="feature file to write, e.g. feats.npz")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default TEST.IMS_PER_BATCH)")
    parser.add_argument("--num-workers", type=int, default=2, help="threads decoding and resizing images")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda or cuda:N")
    parser.add_argument("--no-normalize", action="store_true", help="store raw embeddings (not L2-normalised)")
    parser.add_argument("--index", choices=KINDS, default=None,
                        help="also write a FAISS index of this kind beside the .npz (default exact: none; with "
                             "--append: the existing index's kind)")
    parser.add_argument("--append", action="store_true",
                        help="add the images to the existing --output gallery (and its index)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output gallery (and remove the index of the replaced one)")
    add_camera_options(parser, "--input")
    args = parser.parse_args(argv)
    if args.append and args.overwrite:
        raise ConfigError("--append adds to the gallery in --output and --overwrite replaces it; give one of them.")
    if not args.append:
        Gallery.check_new(args.output, args.overwrite)  # before the model is loaded

    # The config (checkpoint's, --config, overrides) is resolved and validated before any image is listed.
    model = ReIDModel.from_checkpoint(args.weights, config=args.config or None, device=args.device, opts=args.opts)
    paths, names = list_images(args.input)
    cameras = cameras_from_args(args, names, model.num_cameras, "--input")
    normalize = not args.no_normalize
    options = dict(normalize=normalize, index=args.index, batch_size=args.batch_size, num_workers=args.num_workers,
                   progress=True, cameras=cameras)
    if args.append:
        if not Path(args.output).is_file():
            raise DatasetError(f"--append: {args.output!r} does not exist; extract the gallery first (without "
                               f"--append).")
        gallery = Gallery.open(args.output, index="exact", device=args.device)  # the index beside it: append's
        before = len(gallery)
        gallery.append(model, paths, names, **options)
        what = f"appended {len(gallery) - before} embeddings ({len(gallery)} in all)"
    else:
        gallery = Gallery.extract(args.output, model, paths, names, overwrite=args.overwrite, **options)
        what = f"wrote {len(gallery)} embeddings"
    if gallery.skipped:
        shown = "; ".join(f"{name} {problem}" for name, problem in gallery.skipped[:3])
        more = f"; and {len(gallery.skipped) - 3} more" if len(gallery.skipped) > 3 else ""
        print(f"skipped {len(gallery.skipped)} unreadable image(s) (DATASETS.SKIP_UNREADABLE): {shown}{more}")
    print(f"{what} of dimension {gallery.dim} ({'L2-normalised' if normalize else 'raw'}) to {gallery.path}")
    change = gallery.index_change
    if change.action == "added":
        print(f"added {change.count - before} vectors to the {change.kind} index {change.path} ({change.count} in "
              f"all)")
    elif change.action == "removed":
        print(f"removed {change.path}, the index of the replaced gallery (write a new one with --index KIND)")
    elif change.action == "built":
        print(f"wrote a {change.kind} index of {change.count} vectors to {change.path}")
    elif change.action == "stale":  # it describes the replaced gallery; search refuses it, so say so now
        print(f"note: {change.path} was built for the previous gallery; rebuild it with --index KIND or delete it")
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
