"""torchreid checkpoints -> reid: every supported architecture against torchreid 0.2.5's own model on the same
pixels (float32, CPU, 1e-5 of the embedding scale), its file formats, and one error per kind of bad file.

Run with -s to see each architecture's parameter counts (ours vs torchreid's) and the largest difference.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.checkpoint.convert import convert_checkpoint, torchreid
from reid.utils.errors import CheckpointError
from tests.support.peer_models import assert_matches_peer, torchreid_model

pytestmark = pytest.mark.usefixtures("single_thread")
SIZE = ["INPUT.SIZE_TEST", "[64, 32]"]


def _save(model, path, fmt="torchreid"):
    """torchreid's save_checkpoint layout: the state dict of a DataParallel model with its rank-1 as a NumPy float;
    or the bare state dict, with or without 'module.' prefixes."""
    state = model.state_dict()
    if fmt == "torchreid":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 60,
                    "rank1": np.float64(0.912), "optimizer": {"state": {}, "param_groups": []}}, path)
    elif fmt == "bare":
        torch.save(state, path)
    else:
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    return path


@pytest.mark.parametrize("arch", sorted(torchreid.ARCHS))
def test_every_architecture_matches_torchreid(arch, tmp_path):
    peer = torchreid_model(arch)
    assert torchreid.guess_arch(peer.state_dict()) == arch
    weights = _save(peer, tmp_path / "model.pth.tar-60")
    # Both sides embed at 64 x 32 (KEY VALUE overrides of the converted config; torchreid's models take any size):
    # torchreid's 256 x 128 gives the same comparison, four times slower on two shared cores.
    report = convert_checkpoint("torchreid", weights, tmp_path / "out.pt", arch=arch, opts=SIZE)
    assert_matches_peer(report, peer)
    assert report.converted.dropped == ["classifier.weight", "classifier.bias"]


@pytest.mark.parametrize("fmt", ["bare", "module"])
def test_bare_state_dicts_with_or_without_prefixes(fmt, tmp_path):
    peer = torchreid_model("osnet_x0_25")
    report = convert_checkpoint("torchreid", _save(peer, tmp_path / "w.pth", fmt), tmp_path / "out.pt",
                                arch="osnet_x0_25", opts=SIZE)
    assert_matches_peer(report, peer)


def test_converted_config_reproduces_torchreid_preprocessing(tmp_path):
    peer = torchreid_model("osnet_x0_25")
    report = convert_checkpoint("torchreid", _save(peer, tmp_path / "w.pth"), tmp_path / "out.pt",
                                arch="osnet_x0_25", verify=False)
    cfg = report.converted.plan.cfg
    assert report.verification is None and report.skipped == "not requested"
    assert cfg.INPUT.SIZE_TEST == [256, 128] and cfg.INPUT.INTERPOLATION == "bilinear"
    assert cfg.INPUT.PIXEL_MEAN == [0.485, 0.456, 0.406] and cfg.INPUT.PIXEL_STD == [0.229, 0.224, 0.225]
    assert cfg.MODEL.HEADS.NECK == "none" and cfg.TEST.METRIC == "euclidean"
    stored = torch.load(tmp_path / "out.pt", weights_only=True)
    assert stored["num_classes"] == 11 and stored["converted_from"]["arch"] == "osnet_x0_25"
    assert not any("classifier" in k for k in stored["model"])


def test_mutated_checkpoints_fail_naming_the_keys(tmp_path):
    state = torchreid_model("osnet_x0_25").state_dict()

    def convert(mutated, arch="osnet_x0_25"):
        torch.save({"state_dict": mutated}, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError) as info:
            convert_checkpoint("torchreid", tmp_path / "bad.pth", tmp_path / "out.pt", arch=arch, verify=False)
        assert not (tmp_path / "out.pt").exists()
        return str(info.value)

    missing = dict(state)
    del missing["conv3.0.gate.fc1.weight"]
    assert "1 tensors of ours not in the file: backbone.conv3.0.gate.fc1.weight" in convert(missing)
    extra = {**state, "conv5.extra.weight": torch.zeros(3)}
    assert "conv5.extra.weight -> backbone.conv5.extra.weight" in convert(extra)
    wrong = {**state, "fc.0.weight": torch.zeros(512, 64)}
    assert "fc.0.weight: file (512, 64) vs ours head.reduction.1.weight (512, 128)" in convert(wrong)
    # Another torchreid architecture: shapes differ, and the message names the architecture the file has.
    assert "looks like torchreid's osnet_x0_25: try --arch osnet_x0_25" in convert(state, arch="osnet_x0_5")
    # A fast-reid file given as torchreid.
    assert "use --source fastreid" in convert({f"backbone.{k}": v for k, v in state.items()})
    assert "not a torchreid architecture" in convert(state, arch="osnet_x2_0")


class _Mark:
    """An object whose unpickling runs code (it writes a file): what a malicious checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return _leave_mark, (self.path,)


def _leave_mark(path):
    with open(path, "w") as f:
        f.write("code from the checkpoint ran")
    return path


def test_a_pickle_that_needs_code_is_refused_unless_trusted(tmp_path):
    marker = tmp_path / "marker"
    state = torchreid_model("osnet_x0_25").state_dict()
    torch.save({"state_dict": state, "extra": _Mark(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"needs full unpickling.*_leave_mark.*--trust-pickle"):
        convert_checkpoint("torchreid", tmp_path / "evil.pth", tmp_path / "out.pt", arch="osnet_x0_25")
    assert not marker.exists()  # refused before anything ran
    report = convert_checkpoint("torchreid", tmp_path / "evil.pth", tmp_path / "out.pt", arch="osnet_x0_25",
                                trust_pickle=True, verify=False)
    assert marker.exists() and report.path.is_file()  # the user's explicit opt-in loads it (and runs its code)
