"""Checkpoints: atomic writes, safe loading (a malicious pickle is refused), weight loading with clear errors."""
import os
import pickle

import pytest
import torch
from torch import nn

from reid.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from reid.utils.errors import CheckpointError


def test_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "cfg": {"A": [1, 2]}}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["epoch"] == 3 and torch.equal(back["model"]["w"], state["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "payload_ran"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": payload}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    assert not marker.exists()


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="previous checkpoint is intact"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")


def _net(classes=5, hidden=4):
    m = nn.Sequential(nn.Linear(3, hidden), nn.ReLU())
    m.classifier = nn.Linear(hidden, classes)
    return m


def test_weights_ignore_classifier_but_report_other_mismatches(tmp_path):
    src = _net(classes=5)
    save_checkpoint(tmp_path / "m.pt", {"model": src.state_dict()})
    dst = _net(classes=9)  # another number of classes: fine, classifier is skipped
    load_model_weights(dst, tmp_path / "m.pt")
    assert torch.equal(dst[0].weight, src[0].weight)
    with pytest.raises(CheckpointError, match=r"2 with other shapes: .*0\.weight: checkpoint \(4, 3\) vs model \(6, 3\)"):
        load_model_weights(_net(hidden=6), tmp_path / "m.pt")


def test_missing_checkpoint_lists_the_ones_beside_it(tmp_path):
    save_checkpoint(tmp_path / "model_final.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match=r"model_fnal\.pt' does not exist\. Checkpoints in that folder: .*model_final\.pt"):
        load_checkpoint(tmp_path / "model_fnal.pt")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_checkpoints_are_created_with_the_umask_like_other_files(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "model_last.pt", {"epoch": 1})
        (tmp_path / "metrics.json").write_text("{}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "model_last.pt").st_mode & 0o777 == mode
    assert os.stat(tmp_path / "metrics.json").st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def _torchscript(path):
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    return path


def test_exports_are_not_offered_as_checkpoints(tmp_path):
    save_checkpoint(tmp_path / "model_final.pt", {"epoch": 1})
    _torchscript(tmp_path / "model_final.torchscript.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "model_fnal.pt")
    assert f"Checkpoints in that folder: {tmp_path / 'model_final.pt'}. " in str(err.value)


def test_an_export_given_as_weights_is_named_with_what_to_use_instead(tmp_path):
    ts = _torchscript(tmp_path / "model_final.torchscript.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ts, "MODEL.WEIGHTS file")
    message = str(err.value)
    assert message.startswith(f"{str(ts)!r} is a TorchScript export (written by tools/export.py for deployment)")
    assert "torch.jit.load" in message and "ReIDModel.from_checkpoint" in message
    assert str(tmp_path / "model_final.pt") in message and "corrupt" not in message
    # An ONNX file is recognised by its content (the protobuf's IR version and producer), whatever its name.
    onnx = tmp_path / "exported.bin"
    onnx.write_bytes(b"\x08\x09\x12\x07pytorch\x1a\x062.14.1:\x00")
    with pytest.raises(CheckpointError, match=r"is an ONNX export .* onnxruntime\.InferenceSession"):
        load_checkpoint(onnx)
    # An OpenVINO IR (what tools/export.py --format openvino writes: an XML <net> beside its .bin).
    ir = tmp_path / "model_final.xml"
    ir.write_bytes(b'<?xml version="1.0"?>\n<net name="Model0" version="11">\n\t<layers>\n')
    with pytest.raises(CheckpointError, match=r"is an OpenVINO export .* openvino\.Core\(\)\.compile_model"):
        load_checkpoint(ir)
