"""Export the test-time model to ONNX, TorchScript or OpenVINO IR and verify the file against PyTorch.

Peers' exports break silently: a batch size baked into a reshape, an op exported differently, a branch of MGN
left out. So an export here is only reported as done after the exported file, run by its own runtime
(onnxruntime, ``torch.jit.load``, OpenVINO's CPU runtime), reproduced PyTorch's embeddings on batch sizes other
than the one used to export. Any meta-architecture whose eval-mode forward maps (B, 3, H, W) to (B, D) exports
the same way. A model with camera embeddings (SIE: ``num_cameras`` > 0 on the exported module, as
``EmbeddingModule`` has it) gets a second input, "cameras": int64 (B,) 0-based, verified on random cameras.

The check is relative to the embedding scale (the largest |value| PyTorch returns), as the checkpoint importers'
is: embeddings of published models reach ~170 (fast-reid's SBS R50-ibn), where float32 rounding alone moves
values by ~1e-4 while the direction, which ranking uses, is unchanged. A difference passes when it is at most
``max(atol, rtol x scale)``. ``half=True`` (ONNX) computes in float16 inside a float32-in, float32-out graph:
it is checked against float32 PyTorch with ``HALF_RTOL``, float16's precision over a deep network.

The output path is checked before the model is loaded (:func:`check_output`): never the checkpoint itself, a
suffix of its format, a folder that can be written, and no existing file other than an earlier export of the same
format unless ``overwrite`` (a checkpoint, with its config and threshold, is not replaced by a graph by mistake).
"""
from __future__ import annotations

import copy
import importlib
import json
import math
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import nn

from ..inference import ReIDModel
from ..utils.errors import ReIDError

INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
CAMERA_NAME = "cameras"  # the second input of a model with camera embeddings (SIE)
ONNX_OPSET = 17
METADATA_KEY = "reid"  # ONNX metadata_props key / TorchScript extra file / OpenVINO rt_info holding the contract
ATOL, RTOL = 1e-4, 1e-5  # absolute floor, and the allowed difference relative to the embedding scale
HALF_RTOL = 2e-2  # float16 (11-bit significand, ~5e-4 per operation) accumulated over a ResNet-50


class ExportError(ReIDError):
    """An export that cannot be written (missing package, bad format) or whose numbers differ from PyTorch's."""


def _require(module: str, extra: str = "export") -> object:
    try:
        return importlib.import_module(module)
    except ImportError:
        what = "OpenVINO" if extra == "openvino" else "ONNX"
        raise ExportError(f"{what} export needs the '{module}' package: pip install -e '.[{extra}]' (or "
                          f"pip install {module}).") from None


class HalfPrecision(nn.Module):
    """``module`` computing in float16 between float32 input and output (what ``--half`` exports)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module).half()
        self.num_cameras = camera_count(module)

    def forward(self, images: torch.Tensor, *cameras: torch.Tensor) -> torch.Tensor:
        return self.module(images.half(), *cameras).float()


def camera_count(module: nn.Module) -> int:
    """Cameras of the module's camera embedding (``num_cameras``; 0: it takes images only)."""
    return int(getattr(module, "num_cameras", 0))


def _input_names(example: Tuple[torch.Tensor, ...]) -> list:
    return [INPUT_NAME, CAMERA_NAME][:len(example)]


def _save_onnx(module: nn.Module, example: Tuple[torch.Tensor, ...], path: Path, metadata: str) -> None:
    onnx = _require("onnx")
    names = _input_names(example)
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of torch.export (which needs onnxscript); it is
        # the one that handles every model here, and the verification below checks its output.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed.*")
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.save(proto, str(path))


def _is_onnx_export(path: Path) -> bool:
    onnx = _require("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - whatever fails to parse is not an ONNX export of ours
        return False
    return any(entry.key == METADATA_KEY for entry in proto.metadata_props)


def _run_onnx(path: Path) -> Callable[..., torch.Tensor]:
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda *x: torch.from_numpy(session.run([OUTPUT_NAME], {n: t.numpy() for n, t in
                                                                   zip(_input_names(x), x)})[0])


def _save_torchscript(module: nn.Module, example: Tuple[torch.Tensor, ...], path: Path, metadata: str) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.\w+` is deprecated.*")
        # check_trace re-runs the same batch; verify_export's check on other batch sizes is the stronger one.
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": metadata})


def _is_torchscript_export(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:  # torch.jit.save writes a zip; our contract is its extra file
            return any(name.endswith(f"/extra/{METADATA_KEY}.json") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _save_openvino(module: nn.Module, example: Tuple[torch.Tensor, ...], path: Path, metadata: str) -> None:
    ov = _require("openvino", "openvino")
    with warnings.catch_warnings():  # OpenVINO traces the module with torch.jit, which warns that it is deprecated
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.\w+` is deprecated.*")
        shapes = [(-1, *example[0].shape[1:]), *[((-1,), ov.Type.i64)] * (len(example) - 1)]
        model = ov.convert_model(module, example_input=example, input=shapes)
    for port, name in zip(model.inputs, _input_names(example)):
        port.get_tensor().set_names({name})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    model.set_rt_info(metadata, [METADATA_KEY])
    ov.save_model(model, str(path), compress_to_fp16=False)  # the .xml and its .bin (weights) beside it


def _is_openvino_export(path: Path) -> bool:
    try:
        with open(path, "rb") as f:  # the IR ends with its rt_info, where the contract is kept
            f.seek(max(0, os.path.getsize(path) - (1 << 16)))
            tail = f.read()
    except OSError:
        return False
    return b"<rt_info>" in tail and f"<{METADATA_KEY} value=".encode() in tail


def _run_openvino(path: Path) -> Callable[..., torch.Tensor]:
    ov = _require("openvino", "openvino")
    # f32: CPUs with bf16 / AMX units would otherwise run in bf16 and not reproduce PyTorch's float32 numbers.
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda *x: torch.from_numpy(compiled([t.numpy() for t in x])[compiled.output(0)].copy())


def _run_torchscript(path: Path) -> Callable[..., torch.Tensor]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.\w+` is deprecated.*")
        return torch.jit.load(str(path), map_location="cpu")


@dataclass(frozen=True)
class ExportFormat:
    """How one format is written (from example inputs: images, and cameras for an SIE model) and run back (by its
    own runtime, not by the PyTorch module, on the same inputs)."""

    suffix: str
    runtime: str
    save: Callable[[nn.Module, Tuple[torch.Tensor, ...], Path, str], None]
    load: Callable[[Path], Callable[..., torch.Tensor]]
    is_export: Callable[[Path], bool]  # whether a file is an export of ours in this format (holds the contract)
    suffixes: Tuple[str, ...]  # the file suffixes this format may be written under


FORMATS: Dict[str, ExportFormat] = {
    "onnx": ExportFormat(".onnx", "onnxruntime", _save_onnx, _run_onnx, _is_onnx_export, (".onnx",)),
    "torchscript": ExportFormat(".torchscript.pt", "torch.jit.load", _save_torchscript, _run_torchscript,
                                _is_torchscript_export, (".pt", ".pth", ".ts", ".torchscript", ".jit")),
    "openvino": ExportFormat(".xml", "OpenVINO CPU", _save_openvino, _run_openvino, _is_openvino_export, (".xml",)),
}


_TITLES = {"onnx": "an ONNX", "torchscript": "a TorchScript", "openvino": "an OpenVINO"}


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ExportError(f"Unknown export format {name!r}; choose one of {', '.join(FORMATS)}.")
    return FORMATS[name]


def _example(batch: int, size: Tuple[int, int], seed: int, cameras: int = 0) -> Tuple[torch.Tensor, ...]:
    """The inputs of a batch, reproducible: normalised-looking images (zero mean, unit variance), and with
    ``cameras`` (an SIE model's camera count) a random 0-based camera per image."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, *size, generator=gen)
    return (images, torch.randint(0, cameras, (batch,), generator=gen)) if cameras else (images,)


def _open_for_writing(path: Path) -> None:
    """Open ``path`` for writing once before the export: a path the system refuses (e.g. under /proc, even for
    root) fails here as an OSError with its reason, where torch's writers would raise an opaque RuntimeError."""
    existed = path.exists()
    with open(path, "ab"):
        pass
    if not existed:
        path.unlink()


def export_module(module: nn.Module, fmt: str, path: str | Path, input_size: Tuple[int, int], batch: int = 4,
                  metadata: Dict | None = None) -> Path:
    """Write ``module`` (eval mode, CPU, (B, 3, H, W) -> (B, D); with a camera input (B,) when it has camera
    embeddings, ``camera_count``) to ``path`` with a dynamic batch dimension.

    ``metadata`` (JSON-able: input size, normalisation, ...) is stored inside the file for whoever deploys it.
    """
    spec = get_format(fmt)
    if batch < 1:
        raise ExportError(f"The export batch size must be >= 1, got {batch}.")
    path = Path(path)
    module = module.eval().cpu()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _open_for_writing(path)
        with torch.no_grad():
            spec.save(module, _example(batch, input_size, 0, camera_count(module)), path,
                      json.dumps(metadata or {}, sort_keys=True))
    except ExportError:
        raise
    except OSError as e:  # the file system, not the model: say what is wrong with the path
        raise ExportError(f"Cannot write {str(path)!r}: {e.strerror or e}"
                          + (f" ({e.filename})" if e.filename and str(e.filename) != str(path) else "")
                          + ". Choose an --output in a folder you can write, on a disk with room.") from None
    except Exception as e:  # noqa: BLE001 - exporter failures have many types; all mean "this model did not export"
        raise ExportError(f"Writing {str(path)!r} as {fmt} failed: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}. Try the other format, and report the "
                          f"model's MODEL.META_ARCHITECTURE with this message.") from e
    return path


@dataclass(frozen=True)
class Verification:
    """Max abs difference between PyTorch's and the exported file's embeddings over the checked batch sizes, and
    the embedding scale it is judged against (allowed: ``max(atol, rtol x scale)``)."""

    fmt: str
    runtime: str
    export_batch: int
    batches: Tuple[int, ...]
    max_abs_diff: float
    atol: float
    scale: float = 0.0
    rtol: float = 0.0

    @property
    def tolerance(self) -> float:
        return max(self.atol, self.rtol * self.scale)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance  # False for NaN too

    def line(self) -> str:
        sizes = " and ".join(str(b) for b in self.batches)
        relative = self.max_abs_diff / self.scale if self.scale > 0 else math.inf
        return (f"verify {self.fmt} ({self.runtime}): batch {sizes} (exported with {self.export_batch}): "
                f"max abs diff {self.max_abs_diff:.3e} vs PyTorch, {relative:.2e} of the embedding scale "
                f"{self.scale:.4g}; allowed max(atol {self.atol:g}, rtol {self.rtol:g} x scale) = "
                f"{self.tolerance:.3e}: {'OK' if self.ok else 'MISMATCH'}")


def verify_export(module: nn.Module, fmt: str, path: str | Path, input_size: Tuple[int, int],
                  export_batch: int = 4, atol: float = ATOL, rtol: float = RTOL) -> Verification:
    """Run the exported file with its runtime and PyTorch's ``module`` on batches of other sizes; compare.

    Batch 1 and ``export_batch + 3`` are checked (only the latter when exporting with batch 1), so a batch
    size frozen into the graph or a per-sample op mixing samples shows up as a failure or a difference; a model
    with camera embeddings gets random cameras, so a camera frozen into the graph shows up too.
    """
    spec = get_format(fmt)
    run = spec.load(Path(path))
    batches = tuple(b for b in (export_batch + 3, 1) if b != export_batch)
    module = module.eval().cpu()
    diffs, scales = [], []
    for i, b in enumerate(batches):
        x = _example(b, input_size, 1 + i, camera_count(module))
        with torch.no_grad():
            expected = module(*x)
            try:
                got = run(*x)
            except Exception as e:  # noqa: BLE001 - any runtime failure on another batch size is a failed check
                raise ExportError(f"The exported {fmt} file {str(path)!r} fails on a batch of {b} (exported with "
                                  f"{export_batch}): {type(e).__name__}: {str(e).splitlines()[0]}") from None
        if got.shape != expected.shape:
            raise ExportError(f"The exported {fmt} file {str(path)!r} returns shape {tuple(got.shape)} for a batch "
                              f"of {b}; PyTorch returns {tuple(expected.shape)}.")
        diffs.append((got.float() - expected.float()).abs().max().item())
        scales.append(expected.float().abs().max().item())
    worst = math.nan if any(math.isnan(d) for d in diffs) else max(diffs)  # NaN must fail the check
    return Verification(fmt, spec.runtime, export_batch, batches, worst, atol, max(scales), rtol)


def default_output(weights: str | Path, fmt: str, half: bool = False) -> Path:
    """``model_final.pt`` -> ``model_final.onnx`` (``.fp16.onnx`` with ``half``) / ``model_final.torchscript.pt`` /
    ``model_final.xml`` (+ ``.bin``) beside the checkpoint."""
    weights = Path(weights)
    return weights.with_name(weights.stem + (".fp16" if half else "") + get_format(fmt).suffix)


def check_output(weights: str | Path, fmt: str, output: str | Path | None = None, half: bool = False,
                 overwrite: bool = False) -> Path:
    """The path an export of ``weights`` goes to (``output``, else :func:`default_output`), checked before any
    work: not the checkpoint itself (whatever ``overwrite``), a suffix of ``fmt``, a folder that is or can be made
    and is writable, and no existing file (for OpenVINO, nor a .bin beside the .xml) other than an earlier export
    of the same format unless ``overwrite``."""
    spec = get_format(fmt)
    path = Path(output) if output else default_output(weights, fmt, half)
    if path.resolve() == Path(weights).resolve():
        raise ExportError(f"--output {str(path)!r} is the checkpoint being exported; writing there would replace "
                          f"its weights, config and threshold by {_TITLES[fmt]} graph. Leave --output out (default "
                          f"{default_output(weights, fmt, half).name!r} beside it) or name another file.")
    if path.suffix.lower() not in spec.suffixes:
        others = [name for name, f in FORMATS.items() if name != fmt and path.suffix.lower() in f.suffixes]
        what = f"the suffix of {_TITLES[others[0]]} file" if others else "not a suffix of this format"
        raise ExportError(f"--output {str(path)!r} ends in {path.suffix or '(no suffix)'!r}, {what}, but --format "
                          f"{fmt} writes {_TITLES[fmt]} file: name it {path.with_suffix(spec.suffixes[0]).name!r} "
                          f"(or choose the --format its name says).")
    for folder in (path.parent, *path.parent.parents):  # the first one that exists decides
        if folder.exists():
            if not folder.is_dir():
                raise ExportError(f"Cannot write {str(path)!r}: {str(folder)!r} is a file, not a folder.")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ExportError(f"Cannot write {str(path)!r}: the folder {str(folder)!r} is not writable by you; "
                                  f"choose another --output.")
            break
    targets = [path] + ([path.with_suffix(".bin")] if fmt == "openvino" else [])
    for target in targets:
        if target.is_dir():
            raise ExportError(f"--output {str(path)!r}: {str(target)!r} is a folder; name a file.")
    if not overwrite and any(t.exists() for t in targets) and not (path.is_file() and spec.is_export(path)):
        held = ", ".join(repr(str(t)) for t in targets if t.exists())
        raise ExportError(f"{held} already exists and is not {_TITLES[fmt]} export of reid; writing the export "
                          f"would replace it. Name another --output, or add --overwrite to replace it.")
    return path


def deployment_metadata(cfg, flip: bool, half: bool = False, cameras: int = 0) -> Dict:
    """What a consumer of the file must do to the images (and, with camera embeddings, ``cameras`` > 0, which
    cameras it must give) before feeding them, stored inside the export."""
    sie = {"cameras_input": f"{CAMERA_NAME}: int64 (B,), each image's 0-based camera, 0..{cameras - 1}",
           "num_cameras": cameras} if cameras else {}
    return {
        **sie,
        "input": f"{INPUT_NAME}: float32 (B, 3, H, W), RGB scaled to [0, 1] then (x - pixel_mean) / pixel_std",
        "size_hw": list(cfg.INPUT.SIZE_TEST),
        "resize_interpolation": cfg.INPUT.INTERPOLATION,
        "pixel_mean": list(cfg.INPUT.PIXEL_MEAN),
        "pixel_std": list(cfg.INPUT.PIXEL_STD),
        "output": f"{OUTPUT_NAME}: float32 (B, D), not L2-normalised",
        "flip_averaged": bool(flip),
        "compute_dtype": "float16" if half else "float32",
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
    }


def export_checkpoint(weights: str | Path, fmt: str, output: str | Path | None = None, batch: int = 4,
                      atol: float = ATOL, config=None, opts: Sequence[str] = (), rtol: float | None = None,
                      half: bool = False, overwrite: bool = False) -> Tuple[Path, Verification]:
    """Load a checkpoint (as ``ReIDModel.from_checkpoint``), export its test-time model, verify the file against
    float32 PyTorch (``rtol`` default: RTOL, HALF_RTOL with ``half``). The output is checked first
    (:func:`check_output`; ``overwrite`` replaces an existing file that is not an export of this format).

    Returns the path and the verification; the caller decides what a mismatch means (tools/export.py exits 1).
    """
    get_format(fmt)  # fail on a bad format or path before loading anything
    if half and fmt != "onnx":
        why = ("OpenVINO chooses its precision when the model is compiled: INFERENCE_PRECISION_HINT"
               if fmt == "openvino" else "TorchScript keeps the model's float32 weights")
        raise ExportError(f"--half exports float16 ONNX only (--format onnx --half); --format {fmt} is exported in "
                          f"float32 ({why}). Drop --half, or export ONNX.")
    path = check_output(weights, fmt, output, half, overwrite)
    model = ReIDModel.from_checkpoint(weights, config=config, device="cpu", opts=opts)
    net = HalfPrecision(model.net) if half else model.net
    path = export_module(net, fmt, path, model.input_size, batch,
                         deployment_metadata(model.cfg, model.net.flip, half, model.num_cameras))
    rtol = (HALF_RTOL if half else RTOL) if rtol is None else rtol
    return path, verify_export(model.net, fmt, path, model.input_size, batch, atol, rtol)
