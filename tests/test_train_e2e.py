"""End to end on a tiny synthetic set: the untrained model scores near chance, training must beat it clearly."""
import json

import pytest

from reid.config import load_cfg
from reid.cli.test import run_test
from reid.engine.trainer import Trainer


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


def test_train_then_evaluate_learns(tiny_cfg):
    root, opts = tiny_cfg
    untrained = run_test(load_cfg(None, opts + ["OUTPUT_DIR", str(root / "untrained")]))["Synthetic"].result
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
    again = run_test(load_cfg(None, opts + ["OUTPUT_DIR", str(root / "retest"),
                                            "MODEL.WEIGHTS", str(out / "model_final.pt")]))["Synthetic"].result
    assert again.mAP == pytest.approx(on_disk["mAP"], abs=1e-6)
