"""Your own data end to end with config overrides only: a folder set and a CSV set made from the synthetic images
train and evaluate through the train tool, Synthetic and a folder set train together, and a single-camera test
set is scored with same-image removal to the brute-force numbers."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.checkpoint import load_checkpoint
from reid.cli.test import run_test
from reid.cli.train import main as train_main
from reid.config import load_cfg
from reid.data import build_dataset, build_test_set
from reid.evaluation import compute_distance, topk_valid

from benchmarks.references import brute_force_rank
from tests.conftest import TINY_TRAINING
from tests.evaluation.test_eval_rank import assert_same

REPO = Path(__file__).resolve().parents[2]


def _identity(split: str, pid: int) -> str:
    return f"person{pid}" if split == "train" else ("stranger" if pid == 0 else f"visitor{pid}")


@pytest.fixture(scope="module")
def own(synthetic_root, tmp_path_factory):
    """DATASETS.ROOT holding the tiny synthetic set and three copies of it: ``own/`` (folder layout, cameras in
    the file names), ``single/`` (its test split, every image from camera 1, one query also in the gallery) and
    ``table/`` (a CSV without cameras)."""
    synthetic = build_dataset(load_cfg(None, ["DATASETS.ROOT", synthetic_root, *TINY_TRAINING]), "Synthetic")
    root = tmp_path_factory.mktemp("own")
    os.symlink(Path(synthetic_root) / "synthetic", root / "synthetic")  # Synthetic as a test set beside them
    rows = ["path,pid,camid,split"]
    for split in ("train", "query", "gallery"):
        for k, r in enumerate(getattr(synthetic, split)):
            name = _identity(split, r.pid)
            target = root / "own" / split / name / Path(r.path).name  # 0002_c3s1_...: camera token kept
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(r.path, target)
            (root / "table" / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(r.path, root / "table" / split / f"{k}.jpg")
            rows.append(f"{split}/{k}.jpg,{name},,{split}")
            if split != "train":
                single = root / "single" / split / name / f"{k}_c1.jpg"
                single.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(r.path, single)
    (root / "table" / "list.csv").write_text("\n".join(rows) + "\n")
    first = next((root / "single" / "query").iterdir())
    image = next(first.iterdir())
    os.symlink(f"../../query/{first.name}/{image.name}", root / "single" / "gallery" / first.name / image.name)
    return root


def _overrides(root: Path, out: Path, *opts: str):
    return ["DATASETS.ROOT", str(root), "OUTPUT_DIR", str(out), *TINY_TRAINING, *opts]


def test_folder_set_trains_and_scores_what_the_synthetic_set_scores(own, tmp_path, single_thread):
    out = tmp_path / "folder"
    assert train_main(_overrides(own, out, "DATASETS.NAMES", "['folder:own']",
                                 "DATASETS.TESTS", "['folder:own', 'Synthetic']")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    folder, synthetic = metrics["datasets"]["folder:own"], metrics["datasets"]["Synthetic"]
    assert metrics["dataset"] == "folder:own" and folder["protocol"] == "cross-camera"
    # The same images with the same cameras: the same numbers, whatever the identity names and the file order.
    for key in ("rank1", "rank5", "mAP", "mINP", "num_query", "num_gallery", "num_valid_query"):
        assert folder[key] == pytest.approx(synthetic[key], abs=1e-6), key
    assert load_checkpoint(out / "model_final.pt")["num_classes"] == 8


def test_csv_set_without_cameras_trains_through_tools_train(own, tmp_path):
    out = tmp_path / "csv"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train.py"),
                           *_overrides(own, out, "DATASETS.NAMES", "['csv:table/list.csv']",
                                       "DATASETS.TESTS", "['csv:table/list.csv']")],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = json.loads((out / "metrics.json").read_text())["datasets"]["csv:table/list.csv"]
    assert entry["protocol"] == "same-image removal"
    assert entry["protocol_reason"].endswith("images have no camera id")
    assert 0.0 < entry["mAP"] <= 1.0 and entry["num_valid_query"] == entry["num_query"]
    log = (out / "log.txt").read_text()
    assert "csv:table/list.csv: evaluated with same-image removal, not the cross-camera protocol" in log
    assert "csv:table/list.csv: same-image removal (" in log  # the results table says so too


def test_synthetic_and_folder_train_together_and_single_camera_set_matches_brute_force(own, tmp_path,
                                                                                      single_thread):
    out = tmp_path / "mixed"
    assert train_main(_overrides(own, out, "DATASETS.NAMES", "['Synthetic', 'folder:own']",
                                 "DATASETS.TESTS", "['folder:single']")) == 0
    assert load_checkpoint(out / "model_final.pt")["num_classes"] == 16  # 8 + 8 identities, kept apart
    log = (out / "log.txt").read_text()
    assert "train of Synthetic" in log and "train of folder:own" in log and "classifier size 16 = 8 + 8" in log
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["protocol"] == "same-image removal"
    assert trained["protocol_reason"] == "every image comes from one camera (camera 1)"

    cfg = load_cfg(None, _overrides(own, tmp_path / "retest", "DATASETS.TESTS", "['folder:single']",
                                    "MODEL.WEIGHTS", str(out / "model_final.pt")))
    ev = run_test(cfg)["folder:single"]
    test_set = build_test_set(cfg, "folder:single")
    ids = np.asarray(test_set.image_ids)
    num_query = test_set.num_query
    assert len(set(ids[:num_query]) & set(ids[num_query:])) == 1  # the query that is also in the gallery
    dist = compute_distance(ev.query.feats, ev.gallery.feats, "cosine").numpy()
    reference = brute_force_rank(dist, ev.query.pids.numpy(), ev.gallery.pids.numpy(), ev.query.camids.numpy(),
                                 ev.gallery.camids.numpy(), cross_camera=False, q_image_ids=ids[:num_query],
                                 g_image_ids=ids[num_query:])
    assert_same(ev.result, reference)
    assert ev.result.mAP == pytest.approx(trained["mAP"], abs=1e-6)
    assert torch.equal(ev.query.camids, torch.zeros(num_query, dtype=torch.int64))
    # Ranked lists drawn from the result use the same rule: the query's own file is never shown as a match.
    (i,), (j,) = (np.flatnonzero(np.isin(ids[:num_query], ids[num_query:])),
                  np.flatnonzero(np.isin(ids[num_query:], ids[:num_query])))
    top = topk_valid(dist, ev.protocol, k=5)
    assert dist[i, j] == dist[i].min() and j not in top.indices[i]
    assert ev.identity_names == [r.identity_name for r in test_set.records]
    assert ev.identity_names[0].startswith("visitor")
