"""``reid-convert`` / ``tools/convert.py``: a peer's checkpoint (torchreid, fast-reid, TransReID, CLIP-ReID,
SOLIDER-REID) -> a verified reid checkpoint."""
from __future__ import annotations

from typing import Optional, Sequence

from ..checkpoint.convert import SOURCES, ConversionError, convert_checkpoint
from ..checkpoint.convert.torchreid import ARCHS
from .parser import plain_parser, run_tool

EPILOG = f"""examples:
  reid-convert --source torchreid --arch osnet_x1_0 --weights osnet_x1_0_msmt17.pth --output osnet_x1_0_msmt17.pt
  reid-convert --source fastreid --peer-config logs/market1501/sbs_R50-ibn/config.yaml \\
      --weights logs/market1501/sbs_R50-ibn/model_final.pth --output sbs_R50-ibn.pt
  reid-convert --source transreid --peer-config TransReID/configs/MSMT17/vit_transreid_stride.yml \\
      --weights transformer_120.pth --output transreid_msmt17.pt
  reid-test MODEL.WEIGHTS osnet_x1_0_msmt17.pt DATASETS.TESTS "['Market1501']"

torchreid architectures: {', '.join(sorted(ARCHS))}.
fast-reid: Baseline (BoT, AGW, SBS: ResNet 18/34/50/101, IBN-a, non-local, GeM) and MGN; --peer-config is the
config.yaml fast-reid wrote beside the checkpoint, or the model-zoo config (with its Base-*.yml files beside it).
TransReID (ViT / DeiT, overlapping patches, SIE, JPM), CLIP-ReID (CLIP ViT-B/16 with SIE, RN50) and SOLIDER-REID
(Swin-T/S/B with the semantic weight): --peer-config is the YAML of the peer's configs/ folder it was trained with.
These peers cannot be installed, so nothing is compared when converting; reid's tests compare each importer with
embeddings the authors' code computed.

The output is an ordinary reid checkpoint holding its resolved config: test, visualize, extract, search, export
and ReIDModel.from_checkpoint use it like any other. Every tensor of the file must map onto exactly one of the
model's and every tensor of the model must be filled (the classifier of the training identities is not
converted); otherwise the command fails and names the keys. Files are read with torch.load(weights_only=True);
--trust-pickle allows a file that needs full unpickling, which can run code: use it only for files from a source
you trust. When the peer package is importable, its own model embeds the same images as the converted one and
the largest difference is printed; above --atol (relative to the embedding scale) the command exits with 1."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = plain_parser("Import a torchreid, fast-reid, TransReID, CLIP-ReID or SOLIDER-REID checkpoint as a reid "
                          "checkpoint, verified against the peer's own model.", EPILOG, prog="reid-convert")
    parser.add_argument("--source", required=True, choices=SOURCES, help="the toolkit that wrote --weights")
    parser.add_argument("--weights", required=True, metavar="FILE", help="the peer's checkpoint file")
    parser.add_argument("--output", required=True, metavar="OUT.pt", help="the reid checkpoint to write")
    parser.add_argument("--arch", metavar="NAME", help="torchreid: the model name it was built with (e.g. osnet_x1_0)")
    parser.add_argument("--peer-config", metavar="CONFIG.yml", help="fast-reid, transreid, clipreid, solider: the config the model was "
                                                                      "trained with")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest allowed difference from the peer's embeddings, relative to their largest "
                             "absolute value (default 1e-4)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load a file that needs full unpickling; this can run code, so only for files from a "
                             "source you trust")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with the peer's model")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="overrides of the converted config, after all options (e.g. TEST.METRIC cosine); "
                             "INPUT.SIZE_TEST also sets the size both models are compared at")
    args = parser.parse_args(argv)

    report = convert_checkpoint(args.source, args.weights, args.output, arch=args.arch,
                                peer_config=args.peer_config, trust_pickle=args.trust_pickle,
                                verify=not args.no_verify, atol=args.atol, opts=args.opts)
    print("\n".join(report.lines()))
    check = report.verification
    if check is not None and not check.peer_finite:
        raise ConversionError(f"The conversion to {str(report.path)!r} cannot be verified: {check.peer}'s own model "
                              f"gives non-finite embeddings (NaN or inf) on the {check.images} check images, so there "
                              f"is nothing to compare with. The file's weights are probably damaged (NaN or inf "
                              f"values, negative BatchNorm variances); check them, or use another copy of the file "
                              f"(--no-verify skips the check, at your own risk).")
    if check is not None and not check.ok:
        raise ConversionError(f"The converted checkpoint {str(report.path)!r} does not reproduce {check.peer}'s "
                              f"embeddings (max difference {check.relative:.3e} of the embedding scale > atol "
                              f"{check.atol:g}); do not use it. Report the model and this message, or raise --atol "
                              f"if the difference is acceptable.")
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
