"""The tools on bad input: exit status 1 and one ``error: ...`` message on stderr, never a traceback, before any
training or evaluation starts. Run as a user runs them (subprocesses)."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reid.config import cfg_to_dict, load_cfg
from reid.checkpoint import save_checkpoint
from reid.cli.parser import run_tool

from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _tool(name, *args):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / name), *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert err.startswith("error: ") and err.count("error: ") == 1, err
    assert "epoch 1" not in proc.stdout  # stopped before training
    return err


def test_unknown_key():
    assert _tool("train.py", "SOLVER.MAX_EPOCH", "3") == (
        "error: Unknown config key 'SOLVER.MAX_EPOCH' (on the command line). Did you mean: SOLVER.MAX_EPOCHS, "
        "SOLVER.DELAY_EPOCHS, SOLVER.WARMUP_EPOCHS? Every key is listed in reid/config/defaults.py.")


def _main_of(tool):
    return importlib.import_module(f"reid.cli.{tool}").main


@pytest.mark.parametrize("opts, expected", [
    (["SOLVER.BASE_LR", "fast"], "error: Config key 'SOLVER.BASE_LR' (on the command line) expects a float like "
                                 "0.00035, got str 'fast'."),
    (["SOLVER.IMS_PER_BATCH", "-4"], "error: SOLVER.IMS_PER_BATCH must be positive, got -4."),
    (["SOLVER.IMS_PER_BATCH", "30"], "error: SOLVER.IMS_PER_BATCH (30) must be a multiple of DATALOADER.NUM_INSTANCE "
                                     "(4) for P x K identity batches."),
    (["SOLVER.MAX_EPOCHS"], "error: Overrides come in KEY VALUE pairs; got an odd number of words: "
                            "'SOLVER.MAX_EPOCHS'."),
])
@pytest.mark.parametrize("tool", ["train", "test"])
def test_config_mistakes_in_process(capsys, tool, opts, expected):
    with pytest.raises(SystemExit) as exit_:
        run_tool(_main_of(tool), opts)
    assert exit_.value.code == 1 and capsys.readouterr().err.strip() == expected


def test_missing_dataset_root(tmp_path):
    err = _tool("train.py", "DATASETS.ROOT", str(tmp_path / "nowhere"), "OUTPUT_DIR", str(tmp_path / "out"),
                "MODEL.DEVICE", "cpu")
    assert "Dataset folder not found" in err and "nowhere' itself does not exist" in err
    assert "bounding_box_train/" in err  # the expected layout is shown
    log = (tmp_path / "out" / "log.txt").read_text()
    assert log.rstrip().endswith(err.splitlines()[-1]) and "] " + err.splitlines()[0] in log  # why the run stopped


def test_the_error_ends_the_log_of_its_own_command_only(tmp_path, capsys):
    """In one process (a notebook, tests), a command that stops before opening its log leaves the previous
    command's log.txt alone."""
    out = tmp_path / "out"
    for opts in (["DATASETS.ROOT", str(tmp_path / "nowhere"), "OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu"],
                 ["SOLVER.BASE_LR", "fast"]):
        with pytest.raises(SystemExit) as exit_:
            run_tool(_main_of("train"), opts)
        assert exit_.value.code == 1
        if opts[0] == "DATASETS.ROOT":
            first = (out / "log.txt").read_text()
            assert "error: Dataset folder not found" in first
    assert (out / "log.txt").read_text() == first and "BASE_LR" in capsys.readouterr().err


def test_resume_without_a_checkpoint(tmp_path, synthetic_root):
    err = _tool("train.py", "DATASETS.ROOT", synthetic_root, *TINY_TRAINING, "OUTPUT_DIR", str(tmp_path / "new"),
                "--resume")
    assert err == (f"error: --resume: no checkpoint '{tmp_path / 'new' / 'model_last.pt'}' to resume from. Start "
                   f"without --resume, or set OUTPUT_DIR to the folder of the run to continue.")


def _tiny_checkpoint(path, *opts, payload=None):
    from reid.modeling import build_model

    cfg = load_cfg(None, [*TINY_TRAINING, *opts])
    state = {"model": build_model(cfg, 8).state_dict(), "cfg": cfg_to_dict(cfg), "num_classes": 8}
    if payload is None:
        save_checkpoint(path, state)
    else:
        torch.save({**state, "epoch": payload}, path)
    return path


def test_checkpoint_of_another_model(tmp_path, synthetic_root):
    ckpt = _tiny_checkpoint(tmp_path / "wide.pt", "MODEL.BACKBONE.WIDTH", "16")
    err = _tool("test.py", "DATASETS.ROOT", synthetic_root, *TINY_TRAINING, "OUTPUT_DIR", str(tmp_path / "out"),
                "MODEL.WEIGHTS", str(ckpt))
    assert err.startswith(f"error: Checkpoint '{ckpt}' does not fit this model (")
    assert "with other shapes: backbone.bn1.bias: checkpoint (16,) vs model (8,)" in err
    assert "MODEL.BACKBONE.WIDTH: checkpoint 16 vs config 8" in err


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_its_payload_does_not_run(tmp_path, synthetic_root):
    marker = tmp_path / "payload_ran"
    ckpt = _tiny_checkpoint(tmp_path / "evil.pt", payload=_Payload(marker))
    err = _tool("test.py", "DATASETS.ROOT", synthetic_root, *TINY_TRAINING, "OUTPUT_DIR", str(tmp_path / "out"),
                "MODEL.WEIGHTS", str(ckpt))
    assert "it asks to import the Python object posix.system" in err and "weights_only=True" in err
    assert "weights_only=False" not in err  # torch's own advice to load unsafely is not passed on
    assert not marker.exists()


@pytest.mark.parametrize("tool", ["test.py", "visualize.py"])
@pytest.mark.parametrize("with_weights", [False, True], ids=["untrained", "weights"])
def test_missing_dataset_is_reported_before_any_weights_or_download(tmp_path, tool, with_weights):
    """The test sets' folders are checked before the model is built: a missing Market-1501 is a dataset error,
    not a failed ImageNet download (MODEL.BACKBONE.PRETRAIN) nor a weights problem."""
    opts = ["DATASETS.ROOT", str(tmp_path / "nowhere"), "DATASETS.TESTS", "['Market1501']", "MODEL.DEVICE", "cpu",
            "MODEL.BACKBONE.PRETRAIN", "True", "OUTPUT_DIR", str(tmp_path / "out")]
    if with_weights:
        opts += ["MODEL.WEIGHTS", str(_tiny_checkpoint(tmp_path / "model_final.pt"))]
    proc = subprocess.run([sys.executable, str(REPO / "tools" / tool), "--config", "", *opts], cwd=REPO,
                          env={**ENV, "TORCH_HOME": str(tmp_path / "torch_home")}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Downloading" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: Dataset folder not found"), proc.stderr
