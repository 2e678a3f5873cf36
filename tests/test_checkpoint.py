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
