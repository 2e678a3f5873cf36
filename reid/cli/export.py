"""``reid-export`` / ``tools/export.py``: export a checkpoint's test-time model to ONNX or TorchScript, verified."""
from __future__ import annotations

from typing import Optional, Sequence

from ..export import ExportError, export_checkpoint
from .parser import config_parser, run_tool

EPILOG = """examples:
  reid-export --weights output/market1501/resnet50_circle/model_final.pt --format onnx
  reid-export --weights model_final.pt --format torchscript --output reid.pt --batch 8 --atol 1e-5

The exported graph takes "images", a float32 (B, 3, H, W) batch of any size B, resized to INPUT.SIZE_TEST
(with INPUT.INTERPOLATION), RGB scaled to [0, 1] and normalised with INPUT.PIXEL_MEAN / PIXEL_STD, and returns
"embeddings" (B, D), not L2-normalised (averaged with the mirror image when TEST.FLIP is True; override with
TEST.FLIP False). These facts are stored in the file (ONNX metadata_props / TorchScript extra file "reid.json").

After writing, the file is run by its own runtime (onnxruntime / torch.jit.load) on batch sizes other than
--batch and compared with PyTorch; the maximum absolute difference is printed and a difference above --atol
(or a failure) exits with status 1. --config FILE (needed for a bare state dict) and KEY VALUE overrides
(after all options) are merged over the config stored in the checkpoint."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser("Export a re-ID model to ONNX or TorchScript, verified against PyTorch.", EPILOG,
                           prog="reid-export")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint written by tools/train.py")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="export format")
    parser.add_argument("--output", metavar="FILE",
                        help="file to write (default: beside the checkpoint, .onnx / .torchscript.pt)")
    parser.add_argument("--batch", type=int, default=4, help="batch size of the example used to export (default 4)")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest allowed absolute difference from PyTorch's embeddings (default 1e-4)")
    args = parser.parse_args(argv)

    path, check = export_checkpoint(args.weights, args.format, args.output, args.batch, args.atol,
                                    config=args.config or None, opts=args.opts)
    print(f"exported {args.format}: {path} (dynamic batch)")
    print(check.line())
    if not check.ok:
        raise ExportError(f"The exported file {str(path)!r} does not reproduce PyTorch's embeddings "
                          f"(max abs diff {check.max_abs_diff:.3e} > atol {check.atol:g}); do not deploy it. "
                          f"Report the model and format, or raise --atol if the difference is acceptable.")
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
