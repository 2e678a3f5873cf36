"""Export the test-time model to ONNX or TorchScript and verify the file against PyTorch.

Peers' exports break silently: a batch size baked into a reshape, an op exported differently, a branch of MGN
left out. So an export here is only reported as done after the exported file, run by its own runtime
(onnxruntime, ``torch.jit.load``), reproduced PyTorch's embeddings on batch sizes other than the one used to
export. Any meta-architecture whose eval-mode forward maps (B, 3, H, W) to (B, D) exports the same way.
"""
from __future__ import annotations

import importlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import nn

from ..api import ReIDModel
from ..utils.errors import ReIDError

INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
ONNX_OPSET = 17
METADATA_KEY = "reid"  # ONNX metadata_props key / TorchScript extra file holding the preprocessing contract


class ExportError(ReIDError):
    """An export that cannot be written (missing package, bad format) or whose numbers differ from PyTorch's."""


def _require(module: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"ONNX export needs the '{module}' package: pip install -e '.[export]' (or "
                          f"pip install -r requirements.txt).") from None


def _save_onnx(module: nn.Module, example: torch.Tensor, path: Path, metadata: str) -> None:
    onnx = _require("onnx")
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of torch.export (which needs onnxscript); it is
        # the one that handles every model here, and the verification below checks its output.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed.*")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.save(proto, str(path))


def _run_onnx(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


def _save_torchscript(module: nn.Module, example: torch.Tensor, path: Path, metadata: str) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.\w+` is deprecated.*")
        # check_trace re-runs the same batch; verify_export's check on other batch sizes is the stronger one.
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": metadata})


def _run_torchscript(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.\w+` is deprecated.*")
        return torch.jit.load(str(path), map_location="cpu")


@dataclass(frozen=True)
class ExportFormat:
    """How one format is written and run back (by its own runtime, not by the PyTorch module)."""

    suffix: str
    runtime: str
    save: Callable[[nn.Module, torch.Tensor, Path, str], None]
    load: Callable[[Path], Callable[[torch.Tensor], torch.Tensor]]


FORMATS: Dict[str, ExportFormat] = {
    "onnx": ExportFormat(".onnx", "onnxruntime", _save_onnx, _run_onnx),
    "torchscript": ExportFormat(".torchscript.pt", "torch.jit.load", _save_torchscript, _run_torchscript),
}


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ExportError(f"Unknown export format {name!r}; choose one of {', '.join(FORMATS)}.")
    return FORMATS[name]


def _example(batch: int, size: Tuple[int, int], seed: int) -> torch.Tensor:
    """A normalised-looking input batch (zero mean, unit variance), reproducible."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=gen)


def export_module(module: nn.Module, fmt: str, path: str | Path, input_size: Tuple[int, int], batch: int = 4,
                  metadata: Dict | None = None) -> Path:
    """Write ``module`` (eval mode, CPU, (B, 3, H, W) -> (B, D)) to ``path`` with a dynamic batch dimension.

    ``metadata`` (JSON-able: input size, normalisation, ...) is stored inside the file for whoever deploys it.
    """
    spec = get_format(fmt)
    if batch < 1:
        raise ExportError(f"The export batch size must be >= 1, got {batch}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().cpu()
    try:
        with torch.no_grad():
            spec.save(module, _example(batch, input_size, seed=0), path, json.dumps(metadata or {}, sort_keys=True))
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - exporter failures have many types; all mean "this model did not export"
        raise ExportError(f"Writing {str(path)!r} as {fmt} failed: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}. Try the other format, and report the "
                          f"model's MODEL.META_ARCHITECTURE with this message.") from e
    return path


@dataclass(frozen=True)
class Verification:
    """Max abs difference between PyTorch's and the exported file's embeddings over the checked batch sizes."""

    fmt: str
    runtime: str
    export_batch: int
    batches: Tuple[int, ...]
    max_abs_diff: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol  # False for NaN too

    def line(self) -> str:
        sizes = " and ".join(str(b) for b in self.batches)
        return (f"verify {self.fmt} ({self.runtime}): batch {sizes} (exported with {self.export_batch}): "
                f"max abs diff {self.max_abs_diff:.3e} vs PyTorch, atol {self.atol:g}: "
                f"{'OK' if self.ok else 'MISMATCH'}")


def verify_export(module: nn.Module, fmt: str, path: str | Path, input_size: Tuple[int, int],
                  export_batch: int = 4, atol: float = 1e-4) -> Verification:
    """Run the exported file with its runtime and PyTorch's ``module`` on batches of other sizes; compare.

    Batch 1 and ``export_batch + 3`` are checked (only the latter when exporting with batch 1), so a batch
    size frozen into the graph or a per-sample op mixing samples shows up as a failure or a difference.
    """
    spec = get_format(fmt)
    run = spec.load(Path(path))
    batches = tuple(b for b in (export_batch + 3, 1) if b != export_batch)
    module = module.eval().cpu()
    diffs = []
    for i, b in enumerate(batches):
        x = _example(b, input_size, seed=1 + i)
        with torch.no_grad():
            expected = module(x)
            try:
                got = run(x)
            except Exception as e:  # noqa: BLE001 - any runtime failure on another batch size is a failed check
                raise ExportError(f"The exported {fmt} file {str(path)!r} fails on a batch of {b} (exported with "
                                  f"{export_batch}): {type(e).__name__}: {str(e).splitlines()[0]}") from None
        if got.shape != expected.shape:
            raise ExportError(f"The exported {fmt} file {str(path)!r} returns shape {tuple(got.shape)} for a batch "
                              f"of {b}; PyTorch returns {tuple(expected.shape)}.")
        diffs.append((got.float() - expected.float()).abs().max().item())
    worst = math.nan if any(math.isnan(d) for d in diffs) else max(diffs)  # NaN must fail the check
    return Verification(fmt, spec.runtime, export_batch, batches, worst, atol)


def default_output(weights: str | Path, fmt: str) -> Path:
    """``model_final.pt`` -> ``model_final.onnx`` / ``model_final.torchscript.pt`` beside the checkpoint."""
    weights = Path(weights)
    return weights.with_name(weights.stem + get_format(fmt).suffix)


def deployment_metadata(cfg, flip: bool) -> Dict:
    """What a consumer of the file must do to the images before feeding them, stored inside the export."""
    return {
        "input": f"{INPUT_NAME}: float32 (B, 3, H, W), RGB scaled to [0, 1] then (x - pixel_mean) / pixel_std",
        "size_hw": list(cfg.INPUT.SIZE_TEST),
        "resize_interpolation": cfg.INPUT.INTERPOLATION,
        "pixel_mean": list(cfg.INPUT.PIXEL_MEAN),
        "pixel_std": list(cfg.INPUT.PIXEL_STD),
        "output": f"{OUTPUT_NAME}: float32 (B, D), not L2-normalised",
        "flip_averaged": bool(flip),
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
    }


def export_checkpoint(weights: str | Path, fmt: str, output: str | Path | None = None, batch: int = 4,
                      atol: float = 1e-4, config=None, opts: Sequence[str] = ()) -> Tuple[Path, Verification]:
    """Load a checkpoint (as ``ReIDModel.from_checkpoint``), export its test-time model, verify the file.

    Returns the path and the verification; the caller decides what a mismatch means (tools/export.py exits 1).
    """
    get_format(fmt)  # fail on a bad format before loading anything
    model = ReIDModel.from_checkpoint(weights, config=config, device="cpu", opts=opts)
    path = export_module(model.net, fmt, output or default_output(weights, fmt), model.input_size, batch,
                         deployment_metadata(model.cfg, model.net.flip))
    return path, verify_export(model.net, fmt, path, model.input_size, batch, atol)
