"""``reid-export`` / ``tools/export.py``: export a checkpoint's test-time model to ONNX, TorchScript or OpenVINO
IR, verified."""
from __future__ import annotations

from typing import Optional, Sequence

from ..export import ATOL, FORMATS, HALF_RTOL, RTOL, ExportError, export_checkpoint
from .parser import config_parser, run_tool

EPILOG = f"""examples:
  reid-export --weights output/market1501/resnet50_circle/model_final.pt --format onnx
  reid-export --weights model_final.pt --format onnx --half
  reid-export --weights model_final.pt --format openvino --output deploy/reid.xml
  reid-export --weights model_final.pt --format torchscript --output reid.pt --batch 8

The exported graph takes "images", a float32 (B, 3, H, W) batch of any size B, resized to INPUT.SIZE_TEST
(with INPUT.INTERPOLATION), RGB scaled to [0, 1] and normalised with INPUT.PIXEL_MEAN / PIXEL_STD, and returns
"embeddings" (B, D), not L2-normalised (averaged with the mirror image when TEST.FLIP is True; override with
TEST.FLIP False). A model with camera embeddings (SIE: TransReID, CLIP-ReID) takes a second input, "cameras",
int64 (B,): each image's 0-based camera (camera 1 of the file names is 0). These facts are stored in the file
(ONNX metadata_props / TorchScript extra file "reid.json" / OpenVINO rt_info "reid"). OpenVINO writes FILE.xml
and FILE.bin (pip install openvino). --half (ONNX) computes in float16 between float32 input and output: half the
file, for GPUs with float16 units.

After writing, the file is run by its own runtime (onnxruntime / torch.jit.load / OpenVINO's CPU runtime in f32)
on batch sizes other than --batch and compared with float32 PyTorch. The largest difference is judged against
the embedding scale (the largest |value| PyTorch returns; published models reach ~170): it must be at most
max(--atol, --rtol x scale), default atol {ATOL:g} and rtol {RTOL:g} ({HALF_RTOL:g} with --half, float16's
precision over a deep network). A larger difference (or a failure) exits with status 1.

--output is checked before the model is loaded: it may not be the checkpoint itself, must have its format's
suffix (.onnx; .xml for OpenVINO; .pt, .pth, .ts for TorchScript) and a writable folder, and an existing file
there is replaced only when it is an earlier export of the same format, or with --overwrite. --config FILE (needed
for a bare state dict) and KEY VALUE overrides (after all options) are merged over the checkpoint's config."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser("Export a re-ID model to ONNX, TorchScript or OpenVINO, verified against PyTorch.",
                           EPILOG, prog="reid-export")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint written by tools/train.py")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="export format")
    parser.add_argument("--output", metavar="FILE",
                        help="file to write (default: beside the checkpoint, .onnx / .fp16.onnx / .torchscript.pt "
                             "/ .xml)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output that is not an export of this format (an earlier export "
                             "is replaced without it; the checkpoint itself never is)")
    parser.add_argument("--batch", type=int, default=4, help="batch size of the example used to export (default 4)")
    parser.add_argument("--half", action="store_true", help="ONNX computing in float16 (float32 input and output)")
    parser.add_argument("--atol", type=float, default=ATOL,
                        help=f"absolute floor of the allowed difference from PyTorch's embeddings (default {ATOL:g})")
    parser.add_argument("--rtol", type=float, default=None,
                        help=f"allowed difference relative to the embedding scale (default {RTOL:g}, "
                             f"{HALF_RTOL:g} with --half)")
    args = parser.parse_args(argv)

    path, check = export_checkpoint(args.weights, args.format, args.output, args.batch, args.atol,
                                    config=args.config or None, opts=args.opts, rtol=args.rtol, half=args.half,
                                    overwrite=args.overwrite)
    print(f"exported {args.format}{' (float16)' if args.half else ''}: {path} (dynamic batch)")
    print(check.line())
    if not check.ok:
        raise ExportError(f"The exported file {str(path)!r} does not reproduce PyTorch's embeddings "
                          f"(max abs diff {check.max_abs_diff:.3e} > {check.tolerance:.3e} = max(atol, rtol x "
                          f"scale {check.scale:.4g})); do not deploy it. Report the model and format, or raise "
                          f"--rtol / --atol if the difference is acceptable.")
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
