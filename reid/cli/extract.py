"""``reid-extract`` / ``tools/extract.py``: embed a folder (or a list) of images with a trained checkpoint into
an .npz."""
from __future__ import annotations

from typing import Optional, Sequence

from ..api import FeatureFile, ReIDModel, list_images
from .parser import config_parser, run_tool

EPILOG = """examples:
  reid-extract --weights output/market1501/resnet50_circle/model_final.pt --input crops/ --output feats.npz
  reid-extract --weights model_final.pt --input list.txt --output feats.npz TEST.FLIP True

The model is rebuilt from the config stored in the checkpoint; --config FILE (needed for a bare state dict)
and KEY VALUE overrides (after all options) are merged over it. Images are resized and normalised exactly as
at test time (INPUT.SIZE_TEST, INPUT.INTERPOLATION, INPUT.PIXEL_MEAN / PIXEL_STD). --input is a folder
(searched recursively for .jpg .jpeg .png .bmp .webp .tif) or a text file with one image path per line
(relative to the list's folder).

The .npz holds "features" (N, D) float32 (L2-normalised unless --no-normalize), "names" (paths relative to the
folder, or the list's lines), "normalized", "weights" (the checkpoint) and "cfg" (the config, as JSON), which
tools/search.py uses to embed queries the same way. Read it with np.load(path)."""


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
    args = parser.parse_args(argv)

    # The config (checkpoint's, --config, overrides) is resolved and validated before any image is listed.
    model = ReIDModel.from_checkpoint(args.weights, config=args.config or None, device=args.device, opts=args.opts)
    paths, names = list_images(args.input)
    normalize = not args.no_normalize
    feats = model.embed(paths, normalize=normalize, batch_size=args.batch_size, num_workers=args.num_workers,
                        progress=True)
    out = FeatureFile.of(model, feats, names, normalize).save(args.output)
    print(f"wrote {feats.shape[0]} embeddings of dimension {feats.shape[1]} "
          f"({'L2-normalised' if normalize else 'raw'}) to {out}")
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
