"""End to end on a tiny synthetic set: tools/test.py's report and tools/visualize.py's sheets + index.html."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.utils.errors import CheckpointError, ConfigError, ReIDError

from tests.visualization.test_visualization import assert_links_resolve

TINY = [
    "DATASETS.NAMES", "['Synthetic']", "DATASETS.TESTS", "['Synthetic']",
    "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "8", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "8",
    "DATASETS.SYNTHETIC.IMAGES_PER_ID", "6", "DATASETS.SYNTHETIC.NUM_DISTRACTORS", "4",
    "DATASETS.SYNTHETIC.NUM_JUNK", "2", "MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1,1,1,1]",
    "MODEL.BACKBONE.WIDTH", "8", "MODEL.BACKBONE.PRETRAIN", "False", "INPUT.SIZE_TRAIN", "[64, 32]",
    "INPUT.SIZE_TEST", "[64, 32]", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("vis_data")


def _opts(root: Path, out: Path, *extra: str) -> list:
    return TINY + ["DATASETS.ROOT", str(root), "OUTPUT_DIR", str(out), *extra]


def test_test_tool_writes_report(root, tmp_path):
    from reid.config import load_cfg
    from reid.cli.test import run_test

    out = tmp_path / "test_run"
    run_test(load_cfg(None, _opts(root, out, "VIS.QUERIES_PER_SHEET", "3")))
    page = out / "report.html"
    links = assert_links_resolve(page)
    assert "metrics.json" in links and "plots/cmc.png" in links
    assert not (out / "plots" / "training_curves.png").exists()  # no training log: no training curves
    sheets = sorted((out / "plots" / "worst_queries").glob("*.png"))
    assert [p.name for p in sheets] == ["worst_Synthetic_001.png", "worst_Synthetic_002.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"{100 * metrics['mAP']:.2f}" in page.read_text()
    assert f"{100 * metrics['chance']['mAP']:.2f}" in page.read_text()

    # The lists are not drawn yet: the report names where tools/visualize.py writes them but links no missing page.
    # Drawn into the same OUTPUT_DIR, they link back to the report (which is not rewritten).
    from reid.cli.visualize import main

    before = page.read_text()
    assert "ranked_lists/index.html" not in links and "<code>ranked_lists/index.html</code>" in before
    assert main(["--config", "", *_opts(root, out), "--worst", "2"]) == 0
    assert page.read_text() == before
    assert "../report.html" in assert_links_resolve(out / "ranked_lists" / "index.html")


def _lists(folder: Path) -> list:
    manifest = json.loads((folder / "ranked_lists.json").read_text())
    return [q for s in manifest["sheets"] for q in s["queries"]]


@pytest.mark.parametrize("rerank", [False, True])
def test_visualize_and_test_give_the_same_numbers(root, tmp_path, rerank):
    """One gallery: visualize (junk loaded to be drawn greyed) and test (junk not loaded) rank the same images,
    so the same model gives the same metrics, gallery size and chance level; junk takes no part in ranking."""
    from reid.config import load_cfg
    from reid.cli.test import run_test
    from reid.cli.visualize import main

    extra = ("TEST.RERANK.ENABLED", str(rerank), "TEST.RERANK.K1", "4", "TEST.RERANK.K2", "2", "VIS.REPORT", "False")
    run_test(load_cfg(None, _opts(root, tmp_path / "test", *extra)))
    tested = json.loads((tmp_path / "test" / "metrics.json").read_text())
    out = tmp_path / "vis"
    assert main(["--config", "", *_opts(root, out, *extra, "DATASETS.KEEP_JUNK", "True", "VIS.SHOW_JUNK", "True"),
                 "--worst", "3", "--topk", "60"]) == 0
    folder = out / "ranked_lists"
    drawn = json.loads((folder / "ranked_lists.json").read_text())["metrics"]
    assert drawn["datasets"] == tested["datasets"]
    entry = tested["datasets"]["Synthetic"]
    assert ("rerank" in entry) == rerank and entry["num_gallery"] == drawn["num_gallery"]
    index = (folder / "index.html").read_text()
    for res in [entry] + ([entry["rerank"]] if rerank else []):
        assert f"<td data-v=\"{res['num_gallery']}\">{res['num_gallery']}</td>" in index
        assert f"{100 * res['mAP']:.2f}" in index and f"{100 * res['rank1']:.2f}" in index
    tiles = [t for q in _lists(folder) for t in q["top"]]
    junk = [t for t in tiles if t["kind"] == "junk"]
    assert all(t["pid"] != -1 and t["rank"] is not None for t in tiles if t["kind"] != "junk")
    if rerank:  # junk has no re-ranked distance: not shown
        assert not junk
    else:  # every list holds the whole gallery (top-60): both junk images, greyed, without a rank
        assert len(junk) == 3 * 2 and all(t["pid"] == -1 and t["rank"] is None for t in junk)
        assert max(t["rank"] for t in tiles if t["rank"]) <= entry["num_gallery"]


def test_visualize_tool_end_to_end(root, tmp_path):
    from reid.cli.visualize import main

    out = tmp_path / "run"
    code = main(["--config", "", *_opts(root, out, "TEST.RERANK.ENABLED", "True"), "--worst", "3", "--query",
                 "1", "--random", "2", "--per-sheet", "4", "--topk", "5", "--missed", "2"])
    assert code == 0
    folder = out / "ranked_lists"
    links = assert_links_resolve(folder / "index.html")
    sheets = sorted(p.name for p in folder.glob("*.png"))
    assert sheets == ["Synthetic_rerank_001.png", "Synthetic_rerank_002.png"]  # 6 queries, 4 per sheet
    assert set(sheets) <= set(links)
    queries = _lists(folder)
    assert len(queries) == 6 and queries[0]["query_index"] == 1
    assert all(len(q["top"]) == 5 for q in queries)
    assert "re-ranked" in (folder / "index.html").read_text()
    img = np.asarray(Image.open(folder / sheets[0]).convert("RGB"))
    assert img.shape[1] > 600 and img.shape[0] > 400

    # A second run into the same folder replaces the old sheets.
    assert main(["--config", "", *_opts(root, out), "--query", "0", "--topk", "3"]) == 0
    assert sorted(p.name for p in folder.glob("*.png")) == ["Synthetic_001.png"]
    assert_links_resolve(folder / "index.html")


def test_visualize_tool_errors(root, tmp_path):
    from reid.cli.visualize import main

    opts = _opts(root, tmp_path / "err")
    with pytest.raises(ReIDError, match=r"Query index 999 is out of range: Synthetic has \d+ queries"):
        main(["--config", "", *opts, "--query", "999"])
    with pytest.raises(ReIDError, match=r"No query file named 'nobody.jpg'"):
        main(["--config", "", *opts, "--query", "nobody.jpg"])
    with pytest.raises(CheckpointError, match=r"MODEL.WEIGHTS file .*missing.pt' does not exist"):
        main(["--config", "", *opts, "MODEL.WEIGHTS", str(tmp_path / "missing.pt")])
    with pytest.raises(ConfigError, match=r"--dataset 'Market1501' is not a test set"):
        main(["--config", "", *opts, "--dataset", "Market1501"])


def test_visualize_tool_wrong_checkpoint(root, tmp_path):
    from reid.config import cfg_to_dict, load_cfg
    from reid.checkpoint import save_checkpoint
    from reid.modeling import build_model
    from reid.cli.visualize import main

    cfg = load_cfg(None, _opts(root, tmp_path, "MODEL.BACKBONE.WIDTH", "16"))
    ckpt = tmp_path / "wide.pt"
    save_checkpoint(ckpt, {"model": build_model(cfg).state_dict(), "cfg": cfg_to_dict(cfg)})
    with pytest.raises(CheckpointError, match=r"MODEL\.BACKBONE\.WIDTH: checkpoint 16 vs config 8"):
        main(["--config", "", *_opts(root, tmp_path), "MODEL.WEIGHTS", str(ckpt)])


def test_train_writes_report_with_training_curves(root, tmp_path):
    from reid.config import load_cfg
    from reid.engine.trainer import Trainer

    out = tmp_path / "train_run"
    cfg = load_cfg(None, _opts(root, out, "SOLVER.MAX_EPOCHS", "1", "SOLVER.IMS_PER_BATCH", "16",
                               "SOLVER.WARMUP_EPOCHS", "0", "TEST.EVAL_PERIOD", "1", "VIS.REPORT_SHEETS", "1"))
    Trainer(cfg).train()
    links = assert_links_resolve(out / "report.html")  # eval/index.html is written; lists not drawn are not linked
    assert "eval/index.html" in links and "eval/model_final/ranked_lists/index.html" not in links
    assert "plots/training_curves.png" in links and "train_log.jsonl" in links and "model_final.pt" in links
    with Image.open(out / "plots" / "training_curves.png") as im:
        assert im.format == "PNG"
    assert [p.name for p in (out / "plots" / "worst_queries").glob("*.png")] == ["worst_Synthetic_001.png"]
