"""Bad input is a clear error naming the file or key, raised before any long work; unreadable images are skipped
only on request and counted; untrusted checkpoints and YAML never run code. (The basic cases live in
test_data_datasets.py, test_config.py and test_checkpoint.py; these are the ones they do not cover.)"""
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from reid.config import cfg_to_dict, load_cfg
from reid.data import build_dataset, build_test_set, build_train_loader
from reid.data.datasets import ImageRecord, MSMT17
from reid.data.datasets.base import check_query_matches
from reid.checkpoint import load_checkpoint, load_model_state, load_model_weights, save_checkpoint
from reid.cli.parser import config_parser, run_tool
from reid.utils.errors import CheckpointError, ConfigError, DatasetError

from tests.data.test_data_datasets import MARKET, cfg_for, make_market, make_msmt


# --------------------------------------------------------------------------------------------------------------
# Wrong layout


def test_root_that_is_the_dataset_folder_itself_is_named(tmp_path):
    folder = make_market(tmp_path)
    with pytest.raises(DatasetError, match="looks like the dataset folder itself: DATASETS.ROOT must be the folder "
                                           "that contains it"):
        build_dataset(cfg_for(folder), "Market1501")


def test_dataset_folder_with_a_near_miss_name_is_suggested(tmp_path):
    make_market(tmp_path, folder="market1501")
    with pytest.raises(DatasetError, match="Found 'market1501' there: rename it to 'Market-1501-v15.09.15'"):
        build_dataset(cfg_for(tmp_path), "Market1501")


def test_missing_root_says_so(tmp_path):
    with pytest.raises(DatasetError, match=r"DATASETS.ROOT '.*nowhere' itself does not exist"):
        build_dataset(cfg_for(tmp_path / "nowhere"), "MSMT17")


def test_msmt17_list_that_is_not_text_names_file_and_line(tmp_path):
    folder = make_msmt(tmp_path)
    good = "0002/0002_001_11_0302afternoon_0020_0.jpg 2\n".encode()
    (folder / "list_gallery.txt").write_bytes(good + b"\xff\xfe\x00garbage\n")
    with pytest.raises(DatasetError, match=r"list_gallery.txt line 2: not UTF-8 text"):
        MSMT17(str(tmp_path), cfg_for(tmp_path))


def test_msmt17_empty_query_list(tmp_path):
    folder = make_msmt(tmp_path)
    (folder / "list_query.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"No query images found in .*list_query.txt"):
        MSMT17(str(tmp_path), cfg_for(tmp_path))


# --------------------------------------------------------------------------------------------------------------
# Queries without a true match, found before anything is embedded or trained


def _record(pid, cam):
    return ImageRecord(f"/d/{pid}_c{cam + 1}.jpg", pid, cam)


def test_true_match_rule():
    gallery = [_record(3, 0), _record(4, 1), _record(-1, 1), _record(5, 2)]
    # 3 (other camera: match), 4 (same camera only), 5 (no such id... only camera 2 = same), 6 (absent), -1 (junk)
    query = [_record(3, 1), _record(4, 1), _record(5, 2), _record(6, 0), _record(-1, 0)]
    assert check_query_matches(query, gallery, "X", "/d") == 3
    with pytest.raises(DatasetError, match=r"None of the 2 queries of X \(/d\) has a true match.*'4_c2.jpg' "
                                           r"\(pid 4, camera 2\) has only same-camera images"):
        check_query_matches([_record(4, 1), _record(6, 0)], gallery, "X", "/d")


def _market_without_matches(root: Path) -> None:
    # The query ids (3, 4) appear in the gallery only from the queries' own cameras.
    make_market(root, splits={**MARKET, "bounding_box_test": ["0003_c1s1_000151_01.jpg", "0004_c2s1_000151_01.jpg",
                                                              "0000_c1s1_000001_01.jpg"]})


def test_query_set_without_true_matches_fails_before_extraction(tmp_path):
    _market_without_matches(tmp_path)
    with pytest.raises(DatasetError, match=r"None of the 2 queries of Market1501 .* has a true match"):
        build_test_set(cfg_for(tmp_path), "Market1501")


def test_test_set_without_true_matches_fails_before_training(tmp_path):
    _market_without_matches(tmp_path)
    cfg = cfg_for(tmp_path)
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 4, 2
    with pytest.raises(DatasetError, match="has a true match"):
        build_train_loader(cfg)  # the trainer builds its loader first: nothing has been trained yet
    cfg.DATASETS.TESTS = ["MSMT17"]
    with pytest.raises(DatasetError, match="MSMT17"):  # a test set that is not there at all
        build_train_loader(cfg)


def test_some_queries_without_match_are_counted(tmp_path, data_log):
    make_market(tmp_path, splits={**MARKET, "query": MARKET["query"] + ["0009_c1s1_000051_00.jpg"]})
    num_query = build_test_set(cfg_for(tmp_path), "Market1501").num_query
    assert num_query == 3
    assert any("1 of 3 queries of Market1501 have no true match" in m for m in data_log)


# --------------------------------------------------------------------------------------------------------------
# Unreadable images: named, or skipped on request and counted


def _break(folder: Path) -> None:
    (folder / "bounding_box_train" / "0002_c1s1_000451_03.jpg").write_bytes(b"")  # zero bytes
    truncated = folder / "bounding_box_train" / "0007_c3s2_000101_01.jpg"
    Image.new("RGB", (64, 128), (10, 200, 30)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    (folder / "bounding_box_test" / "0000_c1s1_000001_01.jpg").write_bytes(b"GIF89a not really")


def test_skip_unreadable_reports_how_many_and_which(tmp_path, data_log):
    _break(make_market(tmp_path))
    cfg = cfg_for(tmp_path, SKIP_UNREADABLE=True)
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 4, 2
    _, train_set = build_train_loader(cfg)
    assert len(train_set.train) == 3
    ts = build_test_set(cfg, "Market1501")
    num_query, records = ts.num_query, ts.records
    assert (num_query, len(records)) == (2, 4)
    train_msg = next(m for m in data_log if "training image(s)" in m)
    assert train_msg.startswith("Skipped 2 of 5 training image(s) as unreadable (DATASETS.SKIP_UNREADABLE)")
    assert "0002_c1s1_000451_03.jpg" in train_msg and "0007_c3s2_000101_01.jpg" in train_msg
    test_msg = next(m for m in data_log if "gallery image(s)" in m)
    assert test_msg.startswith("Skipped 1 of 3 Market1501 gallery image(s)") and "0000_c1s1_000001_01.jpg" in test_msg
    assert any(m == "Checked 2 Market1501 query image(s): all readable" for m in data_log)


def test_skipping_every_query_image_is_an_error(tmp_path):
    folder = make_market(tmp_path)
    for name in MARKET["query"]:
        (folder / "query" / name).write_bytes(b"")
    with pytest.raises(DatasetError, match=r"All 2 query images of Market1501 .* are unreadable and were skipped"):
        build_test_set(cfg_for(tmp_path, SKIP_UNREADABLE=True), "Market1501")


def test_skipping_every_training_image_is_an_error(tmp_path):
    folder = make_market(tmp_path)
    for name in MARKET["bounding_box_train"]:
        (folder / "bounding_box_train" / name).write_bytes(b"")
    with pytest.raises(DatasetError, match=r"All 5 training images of Market1501 .* are unreadable and were skipped"):
        build_train_loader(cfg_for(tmp_path, SKIP_UNREADABLE=True), check_tests=False)


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_image_met_in_a_loader_worker_is_one_clear_paragraph(tmp_path, workers):
    folder = make_market(tmp_path)
    (folder / "bounding_box_test" / "0004_c1s1_000151_01.jpg").write_bytes(b"\xff\xd8\xff truncated")
    cfg = cfg_for(tmp_path)
    cfg.DATALOADER.NUM_WORKERS = workers
    loader = build_test_set(cfg, "Market1501").loader
    with pytest.raises(DatasetError) as err:
        list(loader)
    message = str(err.value)
    assert message.startswith("Image ") and "0004_c1s1_000151_01.jpg" in message
    assert "SKIP_UNREADABLE" in message and "Traceback" not in message and "File \"" not in message
    if workers:
        assert message.endswith("(in DataLoader worker process 0)")


# --------------------------------------------------------------------------------------------------------------
# Checkpoints of another model


def _tiny(**model):
    cfg = load_cfg(None, ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 1, 1]",
                          "MODEL.BACKBONE.WIDTH", "8", *[w for k, v in model.items() for w in (k, v)]])
    return cfg


def _checkpoint(tmp_path, cfg, num_classes, name="model.pt"):
    from reid.modeling import build_model

    model = build_model(cfg, num_classes)
    path = tmp_path / name
    save_checkpoint(path, {"model": model.state_dict(), "cfg": cfg_to_dict(cfg), "num_classes": num_classes})
    return path, model


def test_weights_of_another_architecture_list_keys_and_settings(tmp_path):
    from reid.modeling import build_model

    path, _ = _checkpoint(tmp_path, _tiny(**{"MODEL.BACKBONE.WIDTH": "16"}), 5)
    cfg = _tiny()
    with pytest.raises(CheckpointError) as err:
        load_model_weights(build_model(cfg), path, cfg=cfg)
    message = str(err.value)
    assert "with other shapes: backbone.bn1.bias: checkpoint (16,) vs model (8,)" in message
    assert "MODEL.BACKBONE.WIDTH: checkpoint 16 vs config 8" in message
    path, _ = _checkpoint(tmp_path, _tiny(**{"MODEL.BACKBONE.LAYERS": "[1, 1, 2, 1]"}), 5, "deeper.pt")
    with pytest.raises(CheckpointError, match=r"\d+ unexpected: backbone.layer3.1"):
        load_model_weights(build_model(cfg), path)


def test_evaluation_weights_ignore_the_classifier_but_resume_does_not(tmp_path):
    from reid.modeling import build_model

    cfg = _tiny()
    path, source = _checkpoint(tmp_path, cfg, num_classes=5)
    target = build_model(cfg, num_classes=9)  # trained on other identities: fine for MODEL.WEIGHTS
    load_model_weights(target, path)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items()
               if "classifier" not in k)
    with pytest.raises(CheckpointError, match=r"classifier.* checkpoint \(5, .* vs model \(9, .*classifier has 5 "
                                              r"classes, this model 9"):
        load_model_state(build_model(cfg, num_classes=9), load_checkpoint(path), path)  # as a resume would


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_object_in_a_real_torch_file_is_refused(tmp_path):
    marker = tmp_path / "payload_ran"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": _Payload(marker)}, tmp_path / "evil.pt")  # zip format
    with pytest.raises(CheckpointError, match=r"it asks to import the Python object posix.system, which a "
                                              r"checkpoint never needs \(refused; nothing was run\).*"
                                              r"weights_only=True.*refuses anything else for safety"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_model_weights(torch.nn.Linear(2, 2), tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


# --------------------------------------------------------------------------------------------------------------
# YAML and the command line


@pytest.mark.parametrize("tag", ["!!python/object:os.system", "!!python/object/new:os.system",
                                 "!!python/name:os.system", "!!python/object/apply:os.system"])
def test_python_tags_in_a_base_config_are_refused(tmp_path, tag):
    marker = tmp_path / "pwned"
    (tmp_path / "base.yml").write_text(f"OUTPUT_DIR: {tag} ['touch {marker}']\n")
    (tmp_path / "child.yml").write_text("_BASE_: base.yml\nSOLVER:\n  MAX_EPOCHS: 3\n")
    with pytest.raises(ConfigError, match=r"base.yml' is not valid \(safe\) YAML"):
        load_cfg(tmp_path / "child.yml")
    assert not marker.exists()


def test_tool_options_may_follow_the_overrides():
    parser = config_parser("test")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(["OUTPUT_DIR", "out", "--resume"])  # as README's example writes it
    assert args.resume and args.opts == ["OUTPUT_DIR", "out"]
    args = parser.parse_args(["OUTPUT_DIR", "--resume"])  # a VALUE that looks like an option stays a value
    assert not args.resume and args.opts == ["OUTPUT_DIR", "--resume"]


@pytest.mark.parametrize("error, expected", [
    (ConfigError("SOLVER.BASE_LR must be positive, got -1.0."), "error: SOLVER.BASE_LR must be positive, got -1.0."),
    (PermissionError(13, "Permission denied", "/out/log.txt"), "error: Permission denied: '/out/log.txt'"),
    (OSError(28, "No space left on device"), "error: No space left on device:"),
])
def test_user_errors_exit_1_with_one_message(capsys, error, expected):
    def main(argv):
        raise error

    with pytest.raises(SystemExit) as exit_:
        run_tool(main, [])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip() == expected.strip()


def test_bugs_keep_their_traceback():
    def main(argv):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_tool(main, [])
