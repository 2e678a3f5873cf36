"""Every standard dataset through ``tools/train.py`` with overrides only (``reid.cli.train.main`` in-process): a
tiny tree of its release layout (tests/support/dataset_trees.py), one epoch of a width-8 ResNet, then the evaluation
with the dataset's protocol: which splits are evaluated and averaged, the removal rule, the single-shot CMC, tracklets
(video) pooled over their frames, cross-domain and multi-source runs, and ``--all-splits``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reid.cli.train import main
from tests.conftest import TINY_TRAINING
from tests.support import dataset_trees as trees

WRITERS = [trees.write_duke, trees.write_market, trees.write_cuhk03, trees.write_viper, trees.write_cuhk01,
           trees.write_grid, trees.write_prid_single, trees.write_ilids, trees.write_cuhk02, trees.write_sensereid,
           trees.write_cuhksysu, trees.write_veri, trees.write_vehicleid, trees.write_veriwild, trees.write_mars,
           trees.write_dukevideo, trees.write_ilidsvid, trees.write_prid2011]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One tree of every release under one DATASETS.ROOT."""
    base = tmp_path_factory.mktemp("releases")
    for write in WRITERS:
        write(base)
    return base


def train(root: Path, out: Path, names, tests, *opts: str, flags=()) -> dict:
    """``tools/train.py`` with TINY_TRAINING's model and schedule, batches of 2 identities x 2, on ``names``,
    evaluated on ``tests``; returns metrics.json."""
    settings = dict(zip(TINY_TRAINING[::2], TINY_TRAINING[1::2]))
    settings.update({"DATASETS.ROOT": str(root), "OUTPUT_DIR": str(out), "DATASETS.NAMES": repr(list(names)),
                     "DATASETS.TESTS": repr(list(tests)), "SOLVER.IMS_PER_BATCH": "4",
                     "DATALOADER.NUM_INSTANCE": "2", "DATALOADER.SEQ_LEN": "2"})
    settings.update(zip(opts[::2], opts[1::2]))
    assert main([x for item in settings.items() for x in item] + list(flags)) == 0
    return json.loads((out / "metrics.json").read_text())


def scores_are_fractions(entry: dict) -> None:
    assert all(0.0 <= entry[k] <= 1.0 and not math.isnan(entry[k]) for k in ("rank1", "mAP", "mINP"))


# name, extra overrides, what its metrics.json entry must say: protocol, evaluated splits (None: one split)
CASES = [
    ("DukeMTMC", (), "cross-camera", None),
    ("Market1501", ("DATASETS.MARKET1501.DISTRACTORS_500K", "True"), "cross-camera", None),
    ("CUHK03", ("DATASETS.CUHK03.LABELED", "True"), "cross-camera", None),
    ("CUHK03", ("DATASETS.CUHK03.CLASSIC_SPLIT", "True", "DATASETS.SPLIT_ID", "3", "TEST.SINGLE_SHOT_CMC", "True"),
     "cross-camera", [3, 9, 15]),  # the tree's test sets repeat every 6 splits: the same training set
    ("VIPeR", (), "cross-camera", [0, 1]),  # one random half, both directions
    ("CUHK01", ("DATASETS.SPLIT_ID", "5"), "cross-camera", [4, 5]),
    ("GRID", (), "cross-camera", [0]),
    ("PRID", (), "cross-camera", [0]),
    ("iLIDS", (), "same-image removal", [0]),
    ("CUHK02", (), "cross-camera", None),
    ("VeRi", (), "cross-camera", None),
    ("VehicleID", ("DATASETS.VEHICLEID.REPEATS", "3"), "same-image removal", [0, 1, 2]),  # trained once
    ("VeRiWild", (), "cross-camera", None),
    ("DukeMTMCVideo", ("TEST.SEQ_LEN", "1"), "cross-camera", None),
    ("iLIDSVID", ("DATALOADER.SEQ_SAMPLE", "evenly"), "cross-camera", [0]),
    ("PRID2011", ("DATALOADER.SEQ_SAMPLE", "random"), "cross-camera", [0]),
]


@pytest.mark.parametrize("name, opts, protocol, splits", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_dataset_trains_and_evaluates_with_its_protocol(root, tmp_path, single_thread, name, opts, protocol,
                                                             splits):
    metrics = train(root, tmp_path / "out", [name], [name], *opts)
    entry = metrics["datasets"][name]
    scores_are_fractions(entry)
    assert entry["protocol"] == protocol
    if splits is None:
        assert "splits" not in entry and "split_id" not in entry
    elif len(splits) == 1:  # one split of several evaluated: no mean to take
        assert entry["split_id"] == splits[0] and "splits" not in entry
    else:
        assert entry["splits"]["ids"] == splits and set(entry["splits"]["per_split"]) == set(map(str, splits))
        assert metrics["rank1"] == pytest.approx(sum(e["rank1"] for e in entry["splits"]["per_split"].values())
                                                 / len(splits))
    if "TEST.SINGLE_SHOT_CMC" in opts:
        assert entry["single_shot_cmc"] and entry["num_query"] == entry["num_gallery"]  # query = gallery
    log = (tmp_path / "out" / "log.txt").read_text()
    if splits is not None and name != "VehicleID":
        assert f"split {splits[-1] if name == 'CUHK01' else splits[0]} of 0.." in log  # the split trained on


def test_video_attention_rerank_and_report_draw_tracklets_as_frames(root, tmp_path, single_thread):
    out = tmp_path / "out"
    metrics = train(root, out, ["MARS"], ["MARS", "DukeMTMCVideo", "Market1501"], "MODEL.TEMPORAL_POOL", "attention",
                    "VIS.REPORT", "True", "VIS.REPORT_SHEETS", "1", "TEST.RERANK.ENABLED", "True",
                    "TEST.RERANK.K1", "3", "TEST.RERANK.K2", "2")
    mars = metrics["datasets"]["MARS"]
    assert mars["num_query"] == 2 and mars["num_gallery"] == 4  # junk dropped, query_IDX's tracklets not in it
    scores_are_fractions(mars["rerank"])
    scores_are_fractions(metrics["datasets"]["Market1501"])  # a video model embeds images too
    assert (out / "report.html").is_file() and list((out / "plots" / "worst_queries").glob("worst_MARS_*.png"))
    # The checkpoint (with its frame-scoring weights) through reid-test and reid-visualize: the same numbers.
    from reid.cli.test import main as test_main
    from reid.cli.visualize import main as visualize_main

    weights = ["MODEL.WEIGHTS", str(out / "model_final.pt"), "DATASETS.ROOT", str(root)]
    assert test_main(["--name", "again", *weights]) == 0
    again = json.loads((out / "eval" / "again" / "metrics.json").read_text())
    assert again["datasets"]["MARS"]["mAP"] == pytest.approx(mars["mAP"], abs=1e-6)
    lists = tmp_path / "lists"
    assert visualize_main(["--dataset", "MARS", "--worst", "2", "--output", str(lists), *weights]) == 0
    assert list(lists.glob("*.png"))


def test_a_tracklet_tile_shows_its_frames_in_a_grid(tmp_path):
    from PIL import Image
    from reid.visualization.ranked_list import TileCache

    frames = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (200, 200, 0)]):
        frames.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (8, 16), colour).save(frames[-1])
    tile = TileCache(strips={frames[0]: frames}).get(frames[0])
    h, w = tile.shape[:2]
    corners = [tuple(tile[y, x]) for y, x in ((h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4),
                                              (3 * h // 4, 3 * w // 4))]
    assert corners == [(255, 0, 0), (0, 255, 0), (9, 9, 9), (200, 200, 0)]  # first, two between, last
    assert tuple(TileCache().get(frames[0])[h // 2, w // 2]) == (255, 0, 0)  # an image: itself


def test_multi_source_training_then_cross_domain_tests_average_every_split(root, tmp_path, single_thread):
    """The README's example: three source sets merged, the small benchmarks tested on all their splits."""
    tests = ["Market1501", "VIPeR", "PRID", "GRID", "iLIDS"]
    metrics = train(root, tmp_path / "out", ["DukeMTMC", "CUHK02", "CUHKSYSU"], tests)
    assert list(metrics["datasets"]) == tests
    counts = {name: metrics["datasets"][name].get("splits", {}).get("count") for name in tests}
    assert counts == {"Market1501": None, "VIPeR": 20, "PRID": 10, "GRID": 10, "iLIDS": 10}
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "train of CUHK02" in log and "VIPeR: not a training set: evaluated on all 20 splits" in log


def test_all_splits_trains_each_training_set_once_and_averages_every_split(root, tmp_path, single_thread):
    out = tmp_path / "out"
    metrics = train(root, out, ["VIPeR"], ["VIPeR", "DukeMTMC"], flags=["--all-splits"])
    runs = sorted(int(k) for k in metrics["runs"])
    assert runs == sorted(int(p.name.split("_")[1]) for p in out.glob("split_*"))
    assert all(k % 2 == 0 for k in runs)  # split 2m + 1 is split 2m's other direction: trained once
    assert metrics["datasets"]["VIPeR"]["splits"]["ids"] == list(range(20))
    assert metrics["datasets"]["DukeMTMC"]["splits"]["ids"] == runs  # one entry per run
    assert (out / "report.html").is_file() is False  # TINY_TRAINING: VIS.REPORT False
    again = train(root, out, ["VIPeR"], ["VIPeR", "DukeMTMC"], flags=["--all-splits", "--resume"])
    assert again["datasets"] == metrics["datasets"]  # finished runs kept, averaged again


@pytest.mark.parametrize("names, opts, message", [
    (["DukeMTMC"], ("MODEL.TEMPORAL_POOL", "attention"), "weighs the frames of tracklets.*image sets"),
    (["MARS"], ("DATALOADER.PIPELINE", "gpu"), "MARS is a video set.*PIPELINE workers")])
def test_video_only_settings_say_what_to_change(root, tmp_path, names, opts, message):
    from reid.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        train(root, tmp_path / "out", names, names, *opts)
