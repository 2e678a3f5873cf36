"""``reid-extract`` / ``tools/extract.py``: embed a folder (or a list) of images with a trained checkpoint into
an .npz, optionally with a FAISS index beside it; ``--append`` adds images to an existing gallery."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..api import FeatureFile, ReIDModel, list_images
from ..config import cfg_to_dict
from ..config.changes import flat_items
from ..index import KINDS, GalleryIndex, build_index, index_path
from ..utils.errors import CheckpointError, DatasetError
from .parser import config_parser, run_tool

EPILOG = """examples:
  reid-extract --weights output/market1501/resnet50_circle/model_final.pt --input crops/ --output feats.npz
  reid-extract --weights model_final.pt --input list.txt --output feats.npz TEST.FLIP True
  reid-extract --weights model_final.pt --input crops/ --output gallery.npz --index ivfpq
  reid-extract --weights model_final.pt --input new_crops/ --output gallery.npz --append

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

--append embeds only the new images and adds them to the existing --output (and to its index, without
re-embedding or re-training anything). It refuses another checkpoint (by its SHA-256), another config, another
dimension or normalisation, and names already in the gallery."""


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
                        help="add the images to the existing --output gallery (and its index) instead of "
                             "replacing it")
    args = parser.parse_args(argv)

    # The config (checkpoint's, --config, overrides) is resolved and validated before any image is listed.
    model = ReIDModel.from_checkpoint(args.weights, config=args.config or None, device=args.device, opts=args.opts)
    paths, names = list_images(args.input)
    normalize = not args.no_normalize
    old = _check_append(args.output, model, names, normalize) if args.append else None
    feats = model.embed(paths, normalize=normalize, batch_size=args.batch_size, num_workers=args.num_workers,
                        progress=True)
    new = FeatureFile.of(model, feats, names, normalize)
    if old is not None:
        if new.features.shape[1] != old.features.shape[1]:
            raise DatasetError(f"--append: the model embeds {new.features.shape[1]}-d features but "
                               f"{args.output!r} holds {old.features.shape[1]}-d ones; extract into a new file.")
        new.features = np.concatenate([old.features, new.features])
        new.names = old.names + new.names
    out = new.save(args.output)
    what = f"appended {feats.shape[0]} embeddings ({len(new.names)} in all)" if old is not None else \
        f"wrote {feats.shape[0]} embeddings"
    print(f"{what} of dimension {feats.shape[1]} ({'L2-normalised' if normalize else 'raw'}) to {out}")
    _write_index(args, out, new, feats.shape[0] if old is not None else None, model.device.type)
    return 0


def _check_append(output: str, model: ReIDModel, names: Sequence[str], normalize: bool) -> FeatureFile:
    """The gallery to append to, after checking that the new images are embedded alike and are new."""
    if not Path(output).is_file():
        raise DatasetError(f"--append: {output!r} does not exist; extract the gallery first (without --append).")
    old = FeatureFile.load(output)
    digest = model.weights_sha256
    if old.weights_sha256 and old.weights_sha256 != digest or not old.weights_sha256 and old.weights != model.weights:
        raise CheckpointError(f"--append: {output!r} was extracted with another checkpoint ({old.weights!r}); "
                              f"embeddings of two models cannot be compared. Use --weights {old.weights} or "
                              f"extract a new gallery.")
    keys = _differing(_embedding_settings(json.loads(old.cfg_json)),
                      _embedding_settings(json.loads(json.dumps(cfg_to_dict(model.cfg))))) if old.cfg_json else []
    if keys:
        raise CheckpointError(f"--append: {output!r} was extracted with other settings ({', '.join(keys[:5])} "
                              f"differ); pass the same --config and overrides as for the gallery.")
    if old.normalized != normalize:
        raise DatasetError(f"--append: {output!r} holds {'L2-normalised' if old.normalized else 'raw'} features; "
                           f"{'drop' if old.normalized else 'add'} --no-normalize.")
    twice = sorted(set(old.names) & set(names))
    if twice:
        raise DatasetError(f"--append: {len(twice)} images are already in {output!r}, e.g. {twice[:3]}; remove them "
                           f"from --input.")
    return old


def _embedding_settings(cfg: dict) -> dict:
    """What changes an embedding: the model (not where it runs or its weights file), the input and TEST.FLIP."""
    model = {k: v for k, v in cfg.get("MODEL", {}).items() if k not in ("DEVICE", "WEIGHTS")}
    return {"MODEL": model, "INPUT": cfg.get("INPUT", {}), "TEST": {"FLIP": cfg.get("TEST", {}).get("FLIP")}}


def _differing(a: dict, b: dict) -> List[str]:
    """Dotted keys whose values differ between two nested config dicts, sorted."""
    old, new = dict(flat_items(a)), dict(flat_items(b))
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _write_index(args, out: Path, gallery: FeatureFile, appended: Optional[int], device: str) -> None:
    """Build, rebuild or extend the index beside ``out`` as --index / --append ask."""
    path = index_path(out)
    if appended is not None and path.is_file() and args.index in (None, _stored_kind(path)):
        index = GalleryIndex.load(path, gallery.features[:-appended], gallery.names[:-appended],
                                  f"{str(out)!r} before appending")
        index.add(gallery.features[-appended:], gallery.features, gallery.names)
        print(f"added {appended} vectors to the {index.kind} index {index.save(path)} ({index.count} in all)")
        return
    if args.index in (None, "exact"):
        if path.is_file():  # it would describe the replaced gallery; search refuses it, so say so now
            print(f"note: {path} was built for the previous gallery; rebuild it with --index KIND or delete it")
        return
    index = build_index(gallery.features, gallery.names, args.index, device)
    print(f"wrote a {index.kind} index of {index.count} vectors to {index.save(path)}")


def _stored_kind(path: Path) -> str:
    with np.load(path, allow_pickle=False) as data:
        return str(data["kind"])


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
