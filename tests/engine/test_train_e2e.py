"""End to end on a tiny synthetic set: the untrained model scores near chance, training must beat it clearly."""
import json

import pytest

from reid.api import ReIDModel
from reid.checkpoint import load_checkpoint
from reid.config import load_cfg
from reid.cli.test import run_test
from reid.engine.trainer import Trainer
from reid.evaluation import compute_distance
from reid.evaluation.verification import FARS
from tests.evaluation.test_eval_verification import brute_metrics, brute_pairs


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    opts = [
        "DATASETS.NAMES", "['Synthetic']", "DATASETS.TESTS", "['Synthetic']", "DATASETS.ROOT", str(root / "data"),
        "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "16", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "16",
        "DATASETS.SYNTHETIC.IMAGES_PER_ID", "12", "DATASETS.SYNTHETIC.NUM_DISTRACTORS", "8",
        "DATASETS.SYNTHETIC.NUM_JUNK", "4", "DATASETS.SYNTHETIC.IMAGE_SIZE", "[64, 32]",
        "DATASETS.SYNTHETIC.DIFFICULTY", "0.2", "DATASETS.SYNTHETIC.LOOKALIKE", "0.0",
        "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.DEPTH", "18",
        "MODEL.BACKBONE.LAYERS", "[1, 1, 1, 1]", "MODEL.BACKBONE.WIDTH", "16",
        "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]", "INPUT.PADDING", "4", "INPUT.REA.ENABLED", "False",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "32", "SOLVER.MAX_EPOCHS", "20",
        "SOLVER.BASE_LR", "0.001", "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.STEPS", "[16]", "SOLVER.CHECKPOINT_PERIOD", "5",
        "TEST.EVAL_PERIOD", "20", "TEST.IMS_PER_BATCH", "64", "VIS.REPORT", "False",
    ]
    return root, opts


@pytest.mark.slow
def test_train_then_evaluate_learns(tiny_cfg):
    root, opts = tiny_cfg
    before = run_test(load_cfg(None, opts + ["OUTPUT_DIR", str(root / "untrained")]))["Synthetic"]
    untrained, untrained_ver = before.result, before.verification
    cfg = load_cfg(None, opts + ["OUTPUT_DIR", str(root / "trained")])
    metrics = Trainer(cfg).train()

    out = root / "trained"
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "num_query", "num_gallery", "num_valid_query"):
        assert key in on_disk
    assert 0.0 <= on_disk["mAP"] <= 1.0 and on_disk["mAP"] == pytest.approx(metrics["mAP"])
    assert (out / "model_final.pt").is_file() and (out / "model_last.pt").is_file()
    assert load_cfg(out / "config.yaml") == cfg
    assert on_disk["mAP"] > untrained.mAP + 0.2, (untrained.mAP, on_disk["mAP"])
    assert on_disk["rank1"] > untrained.cmc[0] + 0.2, (untrained.cmc[0], on_disk["rank1"])

    # The trained weights evaluate to the same numbers through tools/test.py's path.
    retest = run_test(load_cfg(None, opts + ["OUTPUT_DIR", str(root / "retest"),
                                             "MODEL.WEIGHTS", str(out / "model_final.pt")]))["Synthetic"]
    again = retest.result
    assert again.mAP == pytest.approx(on_disk["mAP"], abs=1e-6)

    # Verification: metrics.json's numbers are the brute-force ones over every valid pair of the features ...
    ver = on_disk["verification"]
    q, g = retest.query, retest.gallery
    trues, falses = brute_pairs(compute_distance(q.feats, g.feats).numpy(), q.pids.numpy(), g.pids.numpy(),
                                q.camids.numpy(), g.camids.numpy())
    auc, at, eer = brute_metrics(trues, falses, FARS)
    assert ver["auc"] == pytest.approx(auc, abs=1e-6) and ver["eer"] == pytest.approx(eer, abs=1e-6)
    assert (ver["num_true_pairs"], ver["num_false_pairs"]) == (len(trues), len(falses))
    for key, (thr, tar) in at.items():
        assert ver["threshold_at_far"][key] == pytest.approx(thr, abs=1e-6)
        assert ver["tar_at_far"][key] == pytest.approx(tar, abs=2 / len(trues))
    assert ver["auc"] > untrained_ver.auc + 0.1, (untrained_ver.auc, ver["auc"])
    # ... and the threshold at TEST.VERIFY_FAR travels with model_final.pt.
    final = load_checkpoint(out / "model_final.pt")
    assert final["threshold"] == ver["threshold"] == ver["threshold_at_far"]["1e-3"]
    assert final["threshold_far"] == 1e-3 and final["threshold_dataset"] == "Synthetic"
    assert ReIDModel.from_checkpoint(out / "model_final.pt", device="cpu").threshold == ver["threshold"]
