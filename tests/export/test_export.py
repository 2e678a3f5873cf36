"""tools/export.py: ONNX and TorchScript exports of a tiny model match PyTorch on other batch sizes; a wrong
export (numbers off, batch size frozen into the graph) fails with exit status 1."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from reid.api import ReIDModel
from reid.cli.parser import run_tool
from reid.export import exporter
from reid.export.exporter import ExportError, export_checkpoint, export_module, verify_export
from reid.modeling import META_ARCH_REGISTRY
from tests.gallery.test_api import make_checkpoint

from reid.cli import export as export_tool  # noqa: E402

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
FORMATS = [pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason="needs onnx and onnxruntime")),
           "torchscript",
           pytest.param("openvino", marks=pytest.mark.skipif(not HAS_OPENVINO, reason="needs openvino"))]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model_final.pt"
    make_checkpoint(path, opts=["TEST.FLIP", "True"])
    return path


def _run_exported(fmt: str, path: Path, x: torch.Tensor, cameras: torch.Tensor | None = None) -> torch.Tensor:
    """Run the file the way a deployment would (inputs by name), independently of reid.export's own runners."""
    inputs = {"images": x.numpy(), **({} if cameras is None else {"cameras": cameras.numpy()})}
    if fmt == "onnx":
        import onnxruntime as ort

        return torch.from_numpy(ort.InferenceSession(str(path)).run(None, inputs)[0])
    if fmt == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return torch.from_numpy(compiled(inputs)["embeddings"].copy())
    return torch.jit.load(str(path))(x, *([] if cameras is None else [cameras]))


def _metadata(fmt: str, path: Path) -> dict:
    if fmt == "onnx":
        import onnx

        return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["reid"])
    if fmt == "openvino":
        import openvino as ov

        return json.loads(ov.Core().read_model(str(path)).get_rt_info(["reid"]).astype(str))
    files = {"reid.json": ""}
    torch.jit.load(str(path), _extra_files=files)
    return json.loads(files["reid.json"])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_is_verified_and_runs_any_batch_size(fmt, ckpt, tmp_path, capsys):
    # ONNX is written where --output says, TorchScript at the default place beside the checkpoint
    out = tmp_path / f"tiny{exporter.FORMATS[fmt].suffix}" if fmt != "torchscript" else \
        ckpt.with_name("model_final.torchscript.pt")
    argv = ["--weights", str(ckpt), "--format", fmt, "--batch", "2"]
    assert export_tool.main(argv + (["--output", str(out)] if fmt != "torchscript" else [])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"exported {fmt}: {out} (dynamic batch)"
    assert lines[1].startswith(f"verify {fmt} (") and "batch 5 and 1 (exported with 2)" in lines[1]
    assert lines[1].endswith("OK")
    model = ReIDModel.from_checkpoint(ckpt, device="cpu")
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        expected = model.net(x)  # includes the TEST.FLIP average, like ReIDModel.embed
    torch.testing.assert_close(_run_exported(fmt, out, x), expected, atol=1e-4, rtol=0)
    meta = _metadata(fmt, out)
    assert meta["size_hw"] == [64, 32] and meta["flip_averaged"] is True and meta["meta_architecture"] == "Baseline"


# Tiny transformers without camera embeddings (with them: test_model_with_camera_embeddings_exports_a_camera_input)
_VIT = ["MODEL.VIT.EMBED_DIM", "16", "MODEL.VIT.DEPTH", "2", "MODEL.VIT.NUM_HEADS", "2", "MODEL.VIT.STRIDE", "[12, 12]"]
TRANSFORMER_OPTS = {"TransReID": ["MODEL.BACKBONE.NAME", "vit", *_VIT],
                    "CLIPReID": ["MODEL.BACKBONE.NAME", "clip_vit", "MODEL.CLIP.PROJ_DIM", "8", *_VIT]}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", [a for a in META_ARCH_REGISTRY if a != "Baseline"])  # Baseline: tested above
def test_every_registered_meta_architecture_exports(arch, fmt, tmp_path):
    ckpt = tmp_path / "model.pt"
    make_checkpoint(ckpt, opts=["MODEL.META_ARCHITECTURE", arch, *TRANSFORMER_OPTS.get(arch, [])])
    _, check = export_checkpoint(ckpt, fmt, batch=2)
    assert check.ok, check.line()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", ["TransReID", "CLIPReID"])
def test_model_with_camera_embeddings_exports_a_camera_input(arch, fmt, tmp_path):
    """SIE over 3 cameras: the file takes "cameras" (B,) int64 beside "images", verified on random cameras, and
    gives each image the embedding of its own camera (flip-averaged with the same camera)."""
    ckpt = tmp_path / "sie.pt"
    make_checkpoint(ckpt, opts=["MODEL.META_ARCHITECTURE", arch, *TRANSFORMER_OPTS[arch], "MODEL.VIT.SIE_CAMERAS",
                                "3", "TEST.FLIP", "True"])
    path, check = export_checkpoint(ckpt, fmt, tmp_path / f"sie{exporter.FORMATS[fmt].suffix}", batch=2)
    assert check.ok, check.line()
    model = ReIDModel.from_checkpoint(ckpt, device="cpu")
    x, cams = torch.randn(4, 3, 64, 32), torch.tensor([2, 0, 1, 2])
    with torch.no_grad():
        expected = model.net(x, cams)
        other = model.net(x, (cams + 1) % 3)
    got = _run_exported(fmt, path, x, cams)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert (got - other).abs().max() > 1e-2  # the cameras given, not the export example's, are used
    meta = _metadata(fmt, path)
    assert meta["num_cameras"] == 3 and meta["cameras_input"].startswith("cameras: int64 (B,)")


@pytest.mark.skipif(not HAS_ONNX, reason="needs onnx and onnxruntime")
def test_half_onnx_of_a_model_with_camera_embeddings(tmp_path):
    ckpt = tmp_path / "sie.pt"
    make_checkpoint(ckpt, opts=["MODEL.META_ARCHITECTURE", "TransReID", *TRANSFORMER_OPTS["TransReID"],
                                "MODEL.VIT.SIE_CAMERAS", "3"])
    _, check = export_checkpoint(ckpt, "onnx", tmp_path / "half.onnx", batch=2, half=True)
    assert check.ok, check.line()


def test_mismatching_export_exits_1(ckpt, tmp_path, monkeypatch, capsys):
    spec = exporter.FORMATS["torchscript"]
    skewed = dataclasses.replace(spec, load=lambda path: (lambda x, run=spec.load(path): run(x) + 1e-3))
    monkeypatch.setitem(exporter.FORMATS, "torchscript", skewed)
    argv = ["--weights", str(ckpt), "--format", "torchscript", "--output", str(tmp_path / "m.pt")]
    with pytest.raises(SystemExit) as exit_info:
        run_tool(export_tool.main, argv)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "do not deploy it" in captured.err


class _FrozenBatch(nn.Module):
    """Fine in PyTorch, but tracing turns the Python int into a constant: the export only takes batches of 4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) + torch.zeros(int(x.shape[0]), 1)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_size_frozen_into_the_graph_is_caught(fmt, tmp_path):
    path = export_module(_FrozenBatch(), fmt, tmp_path / f"frozen{exporter.FORMATS[fmt].suffix}", (8, 4), batch=4)
    with pytest.raises(ExportError, match="fails on a batch of 7|returns shape"):
        verify_export(_FrozenBatch(), fmt, path, (8, 4), export_batch=4)


def test_user_errors_exit_1_with_a_message(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(export_tool.main, ["--weights", str(tmp_path / "nope.pt"), "--format", "onnx"])
    assert exit_info.value.code == 1 and "nope.pt" in capsys.readouterr().err
    with pytest.raises(ExportError, match="choose one of onnx, torchscript, openvino"):
        exporter.get_format("tflite")

    def unsupported(*args):
        raise RuntimeError("Exporting the operator 'aten::foo' is not supported\nlong trace")

    monkeypatch.setitem(exporter.FORMATS, "torchscript", dataclasses.replace(exporter.FORMATS["torchscript"],
                                                                              save=unsupported))
    with pytest.raises(ExportError, match="failed: RuntimeError: Exporting the operator 'aten::foo' is not "
                                          "supported. Try the other format"):
        export_module(_FrozenBatch(), "torchscript", tmp_path / "x.pt", (8, 4))

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(ExportError, match=r"needs the 'onnx' package: pip install -e '\.\[export\]'"):
        export_module(_FrozenBatch(), "onnx", tmp_path / "x.onnx", (8, 4))


@pytest.mark.skipif(not HAS_ONNX, reason="needs onnx and onnxruntime")
def test_half_onnx_is_verified_with_the_looser_tolerance(ckpt, tmp_path, capsys):
    out = tmp_path / "half.onnx"
    assert export_tool.main(["--weights", str(ckpt), "--format", "onnx", "--half", "--output", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(float16)" in lines[0] and lines[1].endswith("OK") and f"rtol {exporter.HALF_RTOL:g}" in lines[1]
    assert _metadata("onnx", out)["compute_dtype"] == "float16"
    import onnx

    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(out)).graph.initializer)
    with pytest.raises(ExportError, match="--half exports float16 ONNX"):
        export_checkpoint(ckpt, "torchscript", half=True)


def test_tolerance_is_relative_to_the_embedding_scale():
    """A converted SBS R50-ibn (embedding scale ~166) differs by 1.9e-4 in ONNX: 1.1e-6 of its scale, accepted;
    an absolute floor keeps tiny embeddings from demanding the impossible."""
    big = exporter.Verification("onnx", "onnxruntime", 4, (7, 1), 1.9e-4, exporter.ATOL, 166.0, exporter.RTOL)
    assert big.ok and "1.14e-06 of the embedding scale 166" in big.line()
    assert not dataclasses.replace(big, max_abs_diff=2e-3).ok
    tiny = exporter.Verification("onnx", "onnxruntime", 4, (7, 1), 5e-5, exporter.ATOL, 0.5, exporter.RTOL)
    assert tiny.ok and tiny.tolerance == exporter.ATOL
