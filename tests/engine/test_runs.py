"""Runs you can trust: one run per output folder, honest resumes, evaluations that never touch a training run, and
the files and lines a run leaves (log header, ETA, slim model_final.pt, Ctrl-C advice). Tiny CPU runs through the
tools' own ``main``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from reid.checkpoint import load_checkpoint, save_checkpoint
from reid.cli import test as test_tool, train as train_tool, visualize as visualize_tool
from reid.cli.parser import run_tool
from reid.config import cfg_to_dict, get_cfg, load_cfg
from reid.config.changes import RESUME_RULES, changes_result, flat_items

from tests.conftest import TINY_TRAINING, one_thread
from tests.visualization.test_visualization import assert_links_resolve

RECORDS = ("config.yaml", "metrics.json", "train_log.jsonl", "report.html", "model_final.pt", "model_last.pt",
           "log.txt")

pytestmark = pytest.mark.usefixtures("single_thread")


def _opts(root: str, out: Path, *extra: str) -> List[str]:
    return ["DATASETS.ROOT", root, *TINY_TRAINING, "OUTPUT_DIR", str(out), *extra]


def _run(main, argv, capsys):
    """(exit status, stdout, stderr) of a tool run as its console script runs it."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_tool(main, argv)
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def _files(folder: Path) -> Dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in RECORDS if (folder / name).is_file()}


def _history(folder: Path) -> List[tuple]:
    """(epoch, kind) of every train_log.jsonl record, in order."""
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return [(r["epoch"], "eval" if "eval" in r else "epoch") for r in map(json.loads, lines)]


# --------------------------------------------------------------------------------------------------------------
# One run per folder


def test_a_new_run_in_a_run_folder_stops_and_overwrite_moves_the_old_run_aside(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(train_tool.main, _opts(synthetic_root, out, "SOLVER.MAX_EPOCHS", "2"), capsys)[0] == 0
    before = _files(out)
    assert set(before) >= {"config.yaml", "metrics.json", "train_log.jsonl", "model_final.pt", "log.txt"}

    code, stdout, err = _run(train_tool.main, _opts(synthetic_root, out), capsys)
    assert code == 1 and "epoch 1" not in stdout
    assert err.startswith(f"error: OUTPUT_DIR {str(out)!r} already holds a run (model_last.pt, model_final.pt, "
                          f"train_log.jsonl, metrics.json);")
    assert "--resume" in err and "another OUTPUT_DIR" in err and "--overwrite" in err and "previous-" in err
    assert _files(out) == before  # not a byte written, log.txt included

    assert _run(train_tool.main, [*_opts(synthetic_root, out), "--overwrite"], capsys)[0] == 0
    (previous,) = out.glob("previous-*")
    assert _files(previous) == before  # the old run, moved as it was
    assert _history(out) == [(1, "epoch"), (1, "eval")]  # the new run's history alone
    assert load_checkpoint(out / "model_final.pt")["cfg"]["SOLVER"]["MAX_EPOCHS"] == 1


# --------------------------------------------------------------------------------------------------------------
# Resume


class _Crash(Exception):
    pass


def _crash_at(trainer, step: int) -> None:
    original, calls = trainer.train_step, []

    def train_step(batch):
        calls.append(1)
        if len(calls) == step:
            raise _Crash
        return original(batch)

    trainer.train_step = train_step


def test_resume_accumulates_time_keeps_each_epoch_once_and_leaves_a_finished_run_alone(tiny_train_cfg, synthetic_root,
                                                                                        tmp_path, capsys):
    from reid.engine.trainer import Trainer

    out = tmp_path / "out"
    opts = ("SOLVER.MAX_EPOCHS", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "2")
    crashing = Trainer(tiny_train_cfg(*opts))
    _crash_at(crashing, 3 * crashing.iters_per_epoch + 2)  # in epoch 4, after epoch 3 was logged
    with pytest.raises(_Crash):
        crashing.train()
    assert _history(out) == [(1, "epoch"), (2, "epoch"), (2, "eval"), (3, "epoch")]
    state = load_checkpoint(out / "model_last.pt")
    assert state["epoch"] == 2 and state["clock"]["train_time_s"] > 0
    state["clock"]["train_time_s"] = 1e6  # as if epochs 1-2 had taken 11.6 days
    save_checkpoint(out / "model_last.pt", state)

    # A change that does not change the result (logging) is logged; epochs 3-4 are trained again, once each.
    resumed = Trainer(tiny_train_cfg(*opts, "SOLVER.LOG_PERIOD", "1"), resume=True)
    results = resumed.train()
    assert _history(out) == [(1, "epoch"), (2, "epoch"), (2, "eval"), (3, "epoch"), (4, "epoch"), (4, "eval")]
    assert 1e6 < results["train_time_s"] < 1e6 + 600
    assert json.loads((out / "metrics.json").read_text())["train_time_s"] == results["train_time_s"]
    log = (out / "log.txt").read_text()
    assert "Resumed with a changed config (does not change the trained weights): SOLVER.LOG_PERIOD: 20 in the " \
           "checkpoint, 1 now" in log
    assert "Resumed from" in log and "at epoch 2 of 4 (training time so far 277h 46m)" in log

    # --resume of the finished run: exit 0, nothing trained, evaluated or written.
    before = _files(out)
    argv = [*_opts(synthetic_root, out, *opts), "--resume"]
    code, stdout, _ = _run(train_tool.main, argv, capsys)
    assert code == 0 and f"The run in {out} is finished: model_last.pt is at epoch 4 of SOLVER.MAX_EPOCHS 4" in stdout
    assert "epoch 5" not in stdout and "Evaluation" not in stdout
    assert _files(out) == before

    # A run stopped while writing its final files (after model_last.pt of the last epoch): --resume writes them
    # without training or adding to the history.
    (out / "metrics.json").unlink()
    (out / "model_final.pt").unlink()
    history = (out / "train_log.jsonl").read_bytes()
    assert _run(train_tool.main, argv, capsys)[0] == 0
    assert (out / "train_log.jsonl").read_bytes() == history
    assert json.loads((out / "metrics.json").read_text())["mAP"] == pytest.approx(results["mAP"], abs=1e-6)
    assert (out / "model_final.pt").is_file()


def test_resume_with_a_config_that_changes_the_result_is_refused_naming_each_key(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    started = load_cfg(None, _opts(synthetic_root, out, "SOLVER.MAX_EPOCHS", "12", "TEST.EVAL_PERIOD", "4"))
    save_checkpoint(out / "model_last.pt", {"epoch": 3, "cfg": cfg_to_dict(started)})
    (out / "config.yaml").write_text(started.dump())
    before = _files(out)

    # Resumed without the run's overrides (the trial) and with another learning rate.
    code, stdout, err = _run(train_tool.main, [*_opts(synthetic_root, out, "SOLVER.BASE_LR", "1e-3"), "--resume"],
                             capsys)
    assert code == 1 and "epoch 1" not in stdout
    assert "  SOLVER.BASE_LR: 0.00035 in the checkpoint, 0.001 now\n" in err
    assert "  SOLVER.MAX_EPOCHS: 12 in the checkpoint, 1 now\n" in err
    assert "TEST.EVAL_PERIOD" not in err  # evaluation settings may change (they are logged)
    assert "--allow-config-change" in err and f"--config {out / 'config.yaml'}" in err
    assert _files(out) == before

    code, _, err = _run(train_tool.main, [*_opts(synthetic_root, out, "SOLVER.MAX_EPOCHS", "2"), "--resume",
                                          "--allow-config-change"], capsys)
    assert code == 1 and "is at epoch 3, beyond SOLVER.MAX_EPOCHS 2" in err
    code, _, err = _run(train_tool.main, [*_opts(synthetic_root, out), "--resume", "--overwrite"], capsys)
    assert code == 1 and "give one of them" in err


def test_every_config_key_has_a_resume_rule():
    keys = [key for key, _ in flat_items(get_cfg())]
    assert all(isinstance(changes_result(key), bool) for key in keys)  # raises for a key of an unlisted section
    sections = {".".join(k.split(".")[:n]) for k in keys for n in range(1, k.count(".") + 1)}
    assert set(RESUME_RULES) <= set(keys) | sections  # no rule for a key that does not exist
    result = {k for k in keys if changes_result(k)}
    assert {"SOLVER.MAX_EPOCHS", "SOLVER.BASE_LR", "SEED", "MODEL.BACKBONE.DEPTH", "INPUT.SIZE_TRAIN",
            "DATASETS.NAMES", "DATALOADER.NUM_INSTANCE", "SOLVER.AMP", "MODEL.WEIGHTS"} <= result
    assert not {"MODEL.DEVICE", "DATALOADER.NUM_WORKERS", "SOLVER.LOG_PERIOD", "SOLVER.CHECKPOINT_PERIOD",
                "TEST.EVAL_PERIOD", "TEST.RERANK.ENABLED", "VIS.REPORT", "OUTPUT_DIR", "DATASETS.ROOT"} & result


# --------------------------------------------------------------------------------------------------------------
# Evaluations of a run: OUTPUT_DIR/eval/<name>/


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny 2-epoch run with its report (module scope: several tests read it, none changes its records)."""
    from reid.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("finished")
    out = root / "run"
    with one_thread():
        Trainer(load_cfg(None, _opts(str(root / "data"), out, "SOLVER.MAX_EPOCHS", "2", "TEST.EVAL_PERIOD", "1",
                                     "VIS.REPORT", "True", "VIS.REPORT_SHEETS", "1"))).train()
    return out


def test_no_page_a_run_writes_links_a_missing_file(finished_run):
    """Before any evaluation of the run (this test comes first): eval/index.html is written at the end of training,
    the report links it and no ranked list that is not drawn yet, and lists model_best.pt among its files."""
    pages = sorted(finished_run.rglob("*.html"))
    assert finished_run / "eval" / "index.html" in pages and finished_run / "report.html" in pages
    for page in pages:
        assert_links_resolve(page)
    report = assert_links_resolve(finished_run / "report.html")
    assert "eval/index.html" in report and "model_best.pt" in report
    assert not any("ranked_lists" in link for link in report)
    assert "../report.html" in assert_links_resolve(finished_run / "eval" / "index.html")


def test_model_best_keeps_the_threshold_of_its_evaluation(finished_run):
    from reid.inference import ReIDModel

    best = load_checkpoint(finished_run / "model_best.pt")
    chosen = best["metrics"]["verification"]
    assert best["threshold"] == chosen["threshold"] and best["threshold_far"] == float(chosen["far"])
    assert ReIDModel.from_checkpoint(finished_run / "model_best.pt", device="cpu").threshold == chosen["threshold"]


def test_evaluations_of_a_run_go_into_its_eval_folder_and_never_touch_its_records(finished_run, capsys, monkeypatch):
    out = finished_run
    before = _files(out)
    final = str(out / "model_final.pt")
    trained = json.loads((out / "metrics.json").read_text())

    # The README's command: the run's config (OUTPUT_DIR is the run's folder) and its final weights.
    argv = ["--config", str(out / "config.yaml"), "MODEL.WEIGHTS", final]
    assert _run(test_tool.main, argv, capsys)[0] == 0
    assert _files(out) == before  # config.yaml, metrics.json, train_log.jsonl, report.html untouched
    evaluated = json.loads((out / "eval" / "model_final" / "metrics.json").read_text())
    assert evaluated["datasets"] == trained["datasets"]  # the same weights give the same numbers
    assert "train_time_s" not in evaluated
    assert load_cfg(out / "eval" / "model_final" / "config.yaml").OUTPUT_DIR == str(out / "eval" / "model_final")
    assert "<h1>reid report: model_final</h1>" in (out / "eval" / "model_final" / "report.html").read_text()
    assert "training run, written" in (out / "report.html").read_text()

    # Without --config (the checkpoint's config), with an override: a folder named after it, beside the first.
    # The checkpoint is read once, for its config and its weights.
    reads, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(str(f)) or load(f, *a, **k))
    assert _run(test_tool.main, ["MODEL.WEIGHTS", final, "TEST.RERANK.ENABLED", "True", "TEST.RERANK.K1", "4",
                                 "TEST.RERANK.K2", "2"], capsys)[0] == 0
    monkeypatch.undo()
    assert reads.count(final) == 1, reads
    reranked = out / "eval" / "model_final_TEST.RERANK.ENABLED=True_TEST.RERANK.K1=4_TEST.RERANK.K2=2"
    assert "rerank" in json.loads((reranked / "metrics.json").read_text())
    # --name, and the same name for another config: kept apart.
    assert _run(test_tool.main, [*argv, "--name", "mine"], capsys)[0] == 0
    assert _run(test_tool.main, [*argv, "--name", "mine", "TEST.FLIP", "True"], capsys)[0] == 0
    assert load_cfg(out / "eval" / "mine-2" / "config.yaml").TEST.FLIP and not \
        load_cfg(out / "eval" / "mine" / "config.yaml").TEST.FLIP

    # tools/visualize.py: the lists of the final checkpoint, where the training report links them.
    assert _run(visualize_tool.main, [*argv, "--worst", "2"], capsys)[0] == 0
    assert _files(out) == before
    lists = out / "eval" / "model_final" / "ranked_lists" / "index.html"
    assert "../report.html" in assert_links_resolve(lists)
    # The training report was written before the lists were drawn: it names them but links only what existed.
    assert "eval/model_final/ranked_lists/index.html" not in assert_links_resolve(out / "report.html")
    index = out / "eval" / "index.html"
    links = assert_links_resolve(index)
    assert {"model_final/report.html", "model_final/ranked_lists/index.html", "mine-2/metrics.json",
            f"{reranked.name}/report.html", "../report.html"} <= set(links)
    assert f"{100 * trained['mAP']:.2f}" in index.read_text()


def test_a_new_report_lists_the_evaluations_of_its_run(tmp_path):
    from reid.visualization.evaluations import evaluations_section

    run = tmp_path / "run"
    (run / "eval" / "model_best").mkdir(parents=True)
    (run / "model_last.pt").write_bytes(b"")
    (run / "eval" / "model_best" / "metrics.json").write_text(json.dumps({"dataset": "Synthetic", "rank1": 0.5,
                                                                           "mAP": 0.25}))
    html = evaluations_section(run)
    assert '<a href="eval/model_best/metrics.json">metrics</a>' in html and "50.00" in html and "25.00" in html
    assert "<code>eval/index.html</code>" in html  # named, not linked: it is not written yet
    (run / "eval" / "index.html").write_text("")
    assert '<a href="eval/index.html">' in evaluations_section(run)


# --------------------------------------------------------------------------------------------------------------
# What a run leaves: log header, ETA, model_final.pt, Ctrl-C advice


def test_standalone_checkpoints_get_their_own_evaluation_folders(finished_run, tmp_path, capsys, monkeypatch):
    """reid-test MODEL.WEIGHTS osnet.pt, as the README shows for a converted checkpoint: its stored OUTPUT_DIR is the
    default output/; two checkpoints evaluated there no longer replace each other's files."""
    state = load_checkpoint(finished_run / "model_final.pt")
    state["cfg"]["OUTPUT_DIR"] = "output"  # what reid-convert stores
    save_checkpoint(tmp_path / "osnet.pt", state)
    state["model"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(tmp_path / "sbs.pt", state)
    monkeypatch.chdir(tmp_path)
    for name in ("osnet", "sbs"):
        assert _run(test_tool.main, ["MODEL.WEIGHTS", f"{name}.pt", "VIS.REPORT", "False"], capsys)[0] == 0
    out = tmp_path / "output"
    assert not (out / "metrics.json").exists() and not (out / "config.yaml").exists()
    configs = {name: load_cfg(out / "eval" / name / "config.yaml") for name in ("osnet", "sbs")}
    assert {name: c.MODEL.WEIGHTS for name, c in configs.items()} == {"osnet": "osnet.pt", "sbs": "sbs.pt"}
    assert all((out / "eval" / name / "metrics.json").is_file() for name in configs)
    assert {"osnet/metrics.json", "sbs/metrics.json"} <= set(assert_links_resolve(out / "eval" / "index.html"))
    # An OUTPUT_DIR given on the command line is used as it is, but not over another evaluation.
    assert _run(test_tool.main, ["MODEL.WEIGHTS", "osnet.pt", "VIS.REPORT", "False", "OUTPUT_DIR", "mine"],
                capsys)[0] == 0
    first = (tmp_path / "mine" / "metrics.json").read_bytes()
    assert _run(test_tool.main, ["MODEL.WEIGHTS", "sbs.pt", "VIS.REPORT", "False", "OUTPUT_DIR", "mine"],
                capsys)[0] == 0
    assert (tmp_path / "mine" / "metrics.json").read_bytes() == first
    assert load_cfg(tmp_path / "mine" / "eval" / "sbs" / "config.yaml").MODEL.WEIGHTS == "sbs.pt"


def test_a_report_says_the_ema_weights_were_evaluated(tmp_path):
    from reid.visualization.report import _header

    cfg = load_cfg(None, ["SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", "0.999"])
    assert "the EMA of the weights (SOLVER.EMA.DECAY 0.999)" in _header(cfg, {}, tmp_path, {"train_time_s": 1.0})
    assert "EMA" not in _header(get_cfg(), {}, tmp_path, {"train_time_s": 1.0})


def test_the_evaluations_index_shows_a_visualize_evaluation(tmp_path):
    from reid.visualization.evaluations import evaluations_table

    lists = tmp_path / "run" / "eval" / "model_final" / "ranked_lists"  # what reid-visualize leaves: no metrics.json
    lists.mkdir(parents=True)
    (lists / "ranked_lists.json").write_text(json.dumps({"metrics": {"dataset": "Synthetic", "rank1": 0.5,
                                                                     "mAP": 0.25}, "sheets": []}))
    (lists / "index.html").write_text("<html></html>")
    table = evaluations_table(tmp_path / "run", "")
    assert "Synthetic" in table and "50.00" in table and "25.00" in table


def test_log_header_eta_and_slim_final_checkpoint(finished_run):
    log = (finished_run / "log.txt").read_text().splitlines()
    header = [line.split("] ", 1)[1] for line in log[:5]]
    assert header[0].startswith("command: ") and header[1] == f"resolved config: {finished_run / 'config.yaml'}"
    assert header[2].startswith(f"versions: python ") and f"torch {torch.__version__}" in header[2]
    assert header[3] == "device: cpu (1 thread)" and header[4].startswith("git commit: ")
    epoch_lines = [line for line in log if " done in " in line]
    assert "epoch 1/2 done in" in epoch_lines[0] and "  ETA " in epoch_lines[0]
    assert "epoch 2/2 done in" in epoch_lines[1] and "ETA" not in epoch_lines[1]  # nothing left after the last

    final, last = (load_checkpoint(finished_run / name) for name in ("model_final.pt", "model_last.pt"))
    assert set(final) == {"model", "epoch", "cfg", "num_classes", "meta_architecture", "metrics", "threshold",
                          "threshold_far", "threshold_dataset"}  # the verification threshold travels with it
    assert final["metrics"] == json.loads((finished_run / "metrics.json").read_text())
    assert {"optimizer", "scheduler", "rng", "hooks", "clock"} <= set(last)
    assert (finished_run / "model_final.pt").stat().st_size < (finished_run / "model_last.pt").stat().st_size / 2
    best = load_checkpoint(finished_run / "model_best.pt")
    assert set(best) == {"model", "epoch", "cfg", "num_classes", "meta_architecture", "metrics", "best", "threshold",
                         "threshold_far", "threshold_dataset"}
    assert best["best"]["metric"] == "mAP" and best["metrics"]["mAP"] == best["best"]["value"]


def test_ctrl_c_says_how_to_continue(synthetic_root, tmp_path, capsys, monkeypatch):
    from reid.engine.trainer import Trainer

    out = tmp_path / "run"
    original, calls = Trainer.train_step, []

    def train_step(self, batch):
        calls.append(1)
        if len(calls) == 6:  # in epoch 2, after model_last.pt of epoch 1
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    code, _, err = _run(train_tool.main, _opts(synthetic_root, out, "SOLVER.MAX_EPOCHS", "3"), capsys)
    message = err[err.index("interrupted"):].rstrip()  # after the progress bar's last refresh
    assert code == 130 and "\n" not in message
    assert message.startswith(f"interrupted; {out / 'model_last.pt'} holds the last checkpoint")
    assert message.endswith(f"OUTPUT_DIR {out} SOLVER.MAX_EPOCHS 3 --resume")
    assert (out / "log.txt").read_text().rstrip().endswith(message)  # the log says how the run ended
