"""A metric learning run end to end: configs/Synthetic/resnet18_ms_retrieval.yml trained through tools/train.py's
``main`` with overrides only (a smaller set and model, to stay fast) on the synthetic retrieval set; it must beat
the untrained model's Recall@1 and MAP@R clearly. And MODEL.FREEZE_BN keeps every BatchNorm layer's statistics."""
import json
from pathlib import Path

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from reid.checkpoint import load_checkpoint
from reid.cli.test import run_test
from reid.cli.train import main as train_main
from reid.config import load_cfg
from reid.engine.trainer import Trainer

from tests.conftest import one_thread

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "Synthetic" / "resnet18_ms_retrieval.yml")
SMALL = ["MODEL.DEVICE", "cpu", "VIS.REPORT", "False", "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "16",
         "DATASETS.SYNTHETIC.NUM_TEST_IDS", "16", "DATASETS.SYNTHETIC.IMAGES_PER_ID", "8",
         "DATASETS.SYNTHETIC.IMAGE_SIZE", "[48, 24]", "DATASETS.SYNTHETIC.DIFFICULTY", "0.2",
         "DATASETS.SYNTHETIC.LOOKALIKE", "0.0", "MODEL.BACKBONE.WIDTH", "8", "INPUT.SIZE_TRAIN", "[48, 24]",
         "INPUT.SIZE_TEST", "[48, 24]", "INPUT.CROP.RESIZE", "[54, 27]", "SOLVER.IMS_PER_BATCH", "32",
         "SOLVER.MAX_EPOCHS", "24", "SOLVER.STEPS", "[100]", "SOLVER.BASE_LR", "0.01", "SOLVER.CHECKPOINT_PERIOD", "24",
         "TEST.EVAL_PERIOD", "12", "TEST.IMS_PER_BATCH", "64"]


def test_a_retrieval_run_through_tools_train_beats_its_untrained_score(tmp_path):
    opts = ["DATASETS.ROOT", str(tmp_path / "data"), *SMALL]
    with one_thread():
        untrained = run_test(load_cfg(CONFIG, [*opts, "OUTPUT_DIR", str(tmp_path / "untrained")]))
        assert train_main(["--config", CONFIG, *opts, "OUTPUT_DIR", str(tmp_path / "run")]) == 0
    before = untrained["SyntheticRetrieval"].retrieval
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    print(f"\n[retrieval e2e] untrained {before}\n[retrieval e2e] trained {metrics}")
    assert metrics["dataset"] == "SyntheticRetrieval" and metrics["num_query"] == metrics["num_gallery"] == 16 * 8
    assert metrics["protocol_reason"].startswith("leave-one-out")
    assert metrics["recall@1"] == metrics["rank1"] and metrics["recall@8"] >= metrics["recall@4"]
    assert metrics["recall@1"] > before["recall@1"] + 0.3, (before, metrics)
    assert metrics["map@r"] > before["map@r"] + 0.1, (before, metrics)
    best = load_checkpoint(tmp_path / "run" / "model_best.pt")["best"]
    assert best["metric"] == "recall@1" and best["value"] >= metrics["recall@1"]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "R@1" in log and "MAP@R" in log


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_batchnorm_keeps_its_statistics_and_trains_its_weights(tiny_train_cfg, tmp_path, freeze):
    trainer = Trainer(tiny_train_cfg("MODEL.FREEZE_BN", str(freeze), "OUTPUT_DIR", str(tmp_path / "out")))
    layers = {n: m for n, m in trainer.model.named_modules() if isinstance(m, _BatchNorm)}
    stats = {n: (m.running_mean.clone(), m.running_var.clone(), m.weight.detach().clone()) for n, m in layers.items()}
    with one_thread():
        trainer.train()
    assert layers
    for name, (mean, var, weight) in stats.items():
        kept = torch.equal(layers[name].running_mean, mean) and torch.equal(layers[name].running_var, var)
        assert kept == freeze, name
        assert freeze or int(layers[name].num_batches_tracked) > 0
    assert any(not torch.equal(layers[n].weight, w) for n, (_, _, w) in stats.items())  # the affine weights learn
