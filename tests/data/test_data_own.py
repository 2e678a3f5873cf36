"""Your own data without code: ``folder:PATH`` and ``csv:FILE`` datasets, several sets merged, and the choice of the
evaluation protocol when cameras are unknown or single; bad input is a message naming the path and what was
expected."""
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from reid.config import load_cfg
from reid.data import build_dataset, build_test_set, build_train_loader
from reid.data.datasets import ImageRecord
from reid.data.datasets.base import (CROSS_CAMERA, SAME_IMAGE, camera_token, check_query_matches, choose_protocol,
                                     identity_ids)
from reid.data.datasets.csvfile import CsvDataset
from reid.utils.errors import ConfigError, DatasetError

from tests.data.test_data_datasets import cfg_for, write_jpeg


def make_folder(base: Path, splits, cameras_csv=None) -> Path:
    """``splits``: split -> identity -> file names; tiny JPEGs, a different colour per file."""
    for split, identities in splits.items():
        for identity, names in identities.items():
            (base / split / identity).mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                write_jpeg(base / split / identity / name, 30 * i)
    if cameras_csv is not None:
        (base / "cameras.csv").write_text(cameras_csv)
    return base


SPLITS = {
    "train": {"bob10": ["x_c1_1.jpg", "x_c2_2.jpg"], "bob2": ["a.jpg", "b.png"], "Zoë": ["0002_c3s1_000451_03.jpg"]},
    "query": {"alice": ["q_c1.jpg"], "carol": ["q_c2.jpg"]},
    "gallery": {"carol": ["g_c1.jpg"], "alice": ["g_c2.jpg", "g_c3.jpg"], "dave": ["g_c1.jpg"]},
}


def test_folder_set_names_cameras_and_relabelling(tmp_path):
    make_folder(tmp_path / "mine", SPLITS, cameras_csv="path,camera\ntrain/bob2/a.jpg,4\ntrain/bob2/b.png,c5\n")
    ds = build_dataset(cfg_for(tmp_path), "folder:mine")
    assert ds.name == "folder:mine" and ds.root == str(tmp_path / "mine")
    train = {(r.identity_name, Path(r.path).name): (r.pid, r.camid) for r in ds.train}
    # sorted order, digits as numbers: Zoë < bob2 < bob10; cameras from the c<n> token, else cameras.csv
    assert train == {("bob2", "a.jpg"): (1, 3), ("bob2", "b.png"): (1, 4), ("bob10", "x_c1_1.jpg"): (2, 0),
                     ("bob10", "x_c2_2.jpg"): (2, 1), ("Zoë", "0002_c3s1_000451_03.jpg"): (0, 2)}
    ids = {r.identity_name: r.pid for r in ds.query + ds.gallery}
    assert ids == {"alice": 0, "carol": 1, "dave": 2}  # one mapping shared by query and gallery
    assert [(r.identity_name, r.camid) for r in ds.query] == [("alice", 0), ("carol", 1)]
    assert ds.num_train_pids == 3
    assert "folder:mine" in ds.summary() and "gallery" in ds.summary()


def test_folder_set_without_cameras_and_absolute_path(tmp_path):
    base = make_folder(tmp_path / "abs", {"query": {"7": ["a.jpg"]}, "gallery": {"7": ["b.jpg"]}})
    (base / "gallery" / "7" / "notes.txt").write_text("not an image")
    ds = build_dataset(cfg_for(tmp_path / "elsewhere"), f"folder:{base}")
    assert [r.camid for r in ds.query + ds.gallery] == [-1, -1]  # notes.txt is not an image: ignored
    assert ds.train == [] and "unknown" in ds.summary()


def test_camera_tokens():
    assert [camera_token(n) for n in ("0002_c3s1_000451_03.jpg", "x_c12_1.png", "c4.jpg", "cam_c7", "abc3.jpg",
                                      "c3d.jpg", "x-c2-y.jpg", "Xc1_.jpg")] == [3, 12, 4, 7, None, None, 2, None]


def test_identity_ids_natural_order():
    assert identity_ids(["10", "2", "b", "a", "2", "id10", "id9", "007", "7"]) == \
        {"2": 0, "007": 1, "7": 2, "10": 3, "a": 4, "b": 5, "id9": 6, "id10": 7}


@pytest.mark.parametrize("entry, message", [
    ("folder", r"entry: 'folder' needs a PATH: write folder:PATH"),
    ("csv", r"needs a FILE: write csv:FILE"),
    ("folder:", r"the PATH after ':' is empty in 'folder:'"),
    ("Synthetic:x", r"the dataset 'Synthetic' takes no ':' argument; got 'Synthetic:x'"),
    ("foldr:x", r"must be one of .*got 'foldr:x'. Did you mean 'folder'"),
])
def test_dataset_entry_mistakes(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message):
        build_dataset(cfg_for(tmp_path), entry)


def _error(tmp_path, entry, **datasets):
    with pytest.raises(DatasetError) as e:
        build_dataset(cfg_for(tmp_path, **datasets), entry)
    return str(e.value)


def test_folder_path_that_does_not_exist(tmp_path):
    message = _error(tmp_path, "folder:nowhere")
    assert f"the folder '{tmp_path / 'nowhere'}' does not exist" in message and "train/<identity>/<image>" in message


def test_folder_empty_split(tmp_path):
    make_folder(tmp_path / "d", {"train": {"a": ["1.jpg"]}})
    (tmp_path / "d" / "query" / "a").mkdir(parents=True)
    message = _error(tmp_path, "folder:d")
    assert f"'{tmp_path / 'd' / 'query'}' holds no images; expected query/<identity>/<image>" in message


def test_folder_image_outside_an_identity_folder(tmp_path):
    make_folder(tmp_path / "d", {"train": {"a": ["1.jpg"]}})
    write_jpeg(tmp_path / "d" / "train" / "stray.jpg")
    assert "lies directly in train/; expected it inside an identity folder" in _error(tmp_path, "folder:d")


def test_folder_links_may_not_leave_the_folder(tmp_path):
    make_folder(tmp_path / "d", {"train": {"a": ["1.jpg"]}})
    write_jpeg(tmp_path / "outside.jpg")
    os.symlink(tmp_path / "outside.jpg", tmp_path / "d" / "train" / "a" / "2.jpg")
    assert "outside the dataset folder" in _error(tmp_path, "folder:d")
    os.remove(tmp_path / "d" / "train" / "a" / "2.jpg")
    (tmp_path / "other").mkdir()
    os.symlink(tmp_path / "other", tmp_path / "d" / "train" / "b")
    assert f"'{tmp_path / 'd' / 'train' / 'b'}' links to" in _error(tmp_path, "folder:d")


def test_folder_duplicate_image_across_splits(tmp_path):
    make_folder(tmp_path / "d", {"train": {"a": ["1.jpg"]}, "query": {"a": []}, "gallery": {"b": ["2.jpg"]}})
    os.symlink("../../train/a/1.jpg", tmp_path / "d" / "query" / "a" / "1.jpg")  # inside: allowed as a link
    message = _error(tmp_path, "folder:d")
    assert "are the same image" in message and "in both the train and the query split" in message


def test_folder_query_image_in_gallery_under_another_identity(tmp_path):
    make_folder(tmp_path / "d", {"query": {"a": ["1.jpg"]}, "gallery": {"b": []}})
    os.symlink("../../query/a/1.jpg", tmp_path / "d" / "gallery" / "b" / "1.jpg")
    assert "in query as identity 'a' and in gallery as identity 'b'" in _error(tmp_path, "folder:d")


@pytest.mark.parametrize("cameras, message", [
    ("path,camera\ntrain/a/x_c2.jpg,3\n", r"camera 3 disagrees with the token c2"),
    ("path,camera\ntrain/a/none.jpg,1\n", r"line 2: 'train/a/none.jpg' is not an image of the dataset"),
    ("path,camera\ntrain/a/y.jpg,zero\n", r"line 2: camera 'zero' is not a camera number from 1"),
    ("path,camera\n../x.jpg,1\n", r"line 2: '../x.jpg' points outside the dataset folder"),
    ("path\ntrain/a/y.jpg\n", r"line 1: missing column\(s\) camera"),
])
def test_folder_cameras_csv_mistakes(tmp_path, cameras, message):
    make_folder(tmp_path / "d", {"train": {"a": ["x_c2.jpg", "y.jpg"]}}, cameras_csv=cameras)
    with pytest.raises(DatasetError, match=message):
        build_dataset(cfg_for(tmp_path), "folder:d")


def test_folder_camera_zero_is_named(tmp_path):
    make_folder(tmp_path / "d", {"train": {"a": ["x_c0_1.jpg"]}})
    assert "has the camera token c0; cameras are numbered from 1" in _error(tmp_path, "folder:d")


def test_folder_unreadable_image_is_named_or_skipped_and_counted(tmp_path, data_log):
    make_folder(tmp_path / "d", {"query": {"a": ["1.jpg"]}, "gallery": {"a": ["2.jpg", "3.jpg"]}})
    (tmp_path / "d" / "gallery" / "a" / "3.jpg").write_bytes(b"not a jpeg")
    test_set = build_test_set(cfg_for(tmp_path, SKIP_UNREADABLE=True), "folder:d")
    assert len(test_set.records) == 2
    assert any(m.startswith("Skipped 1 of 2 folder:d gallery image(s) as unreadable") and "3.jpg" in m
               for m in data_log)
    test_set = build_test_set(cfg_for(tmp_path), "folder:d")
    with pytest.raises(DatasetError, match=r"3.jpg' cannot be decoded"):
        list(test_set.loader)


# --------------------------------------------------------------------------------------------------------------
# CSV datasets


def write_csv(folder: Path, lines, images=("a/1.jpg", "a/2.jpg", "b/1.jpg", "q/1.jpg", "q/2.jpg")) -> Path:
    for rel in images:
        write_jpeg(folder / rel)
    (folder / "list.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "list.csv"


GOOD_CSV = ["path,pid,camid,split", "a/1.jpg,alice,0,train", "a/2.jpg,alice,1,train", "b/1.jpg,10,,train",
            "q/1.jpg,bob,0,query", '"q/2.jpg",bob,1,gallery', "", "q/1.jpg,bob,0,gallery"]


def test_csv_set(tmp_path):
    write_csv(tmp_path / "c", GOOD_CSV)
    ds = build_dataset(cfg_for(tmp_path), "csv:c/list.csv")
    assert ds.name == "csv:c/list.csv"
    assert [(r.identity_name, r.pid, r.camid) for r in ds.train] == [("alice", 1, 0), ("alice", 1, 1), ("10", 0, -1)]
    assert [(r.identity_name, r.pid) for r in ds.query + ds.gallery] == [("bob", 0)] * 3
    # The query file is also in the gallery (allowed): it is never its own match.
    test_set = build_test_set(cfg_for(tmp_path), "csv:c/list.csv")
    assert test_set.protocol.cross_camera and test_set.protocol.reason == "2 cameras"


def test_csv_header_in_another_order_with_extra_columns(tmp_path):
    write_csv(tmp_path, ["split,camid,note,PID,path", "train,3,x,7,a/1.jpg"])
    ds = build_dataset(cfg_for(tmp_path), f"csv:{tmp_path / 'list.csv'}")
    assert [(Path(r.path).name, r.camid, r.identity_name) for r in ds.train] == [("1.jpg", 3, "7")]


@pytest.mark.parametrize("lines, message", [
    (["path,pid,split", "a/1.jpg,1,train"], r"list.csv line 1: missing column\(s\) camid; expected the header "
                                             r"path,pid,camid,split"),
    (["path,pid,camid,split,pid"], r"line 1: repeated column\(s\) pid"),
    (GOOD_CSV[:1] + ["a/1.jpg,1,0"], r"list.csv line 2: 3 field\(s\) where the header has 4; expected "
                                      r"path,pid,camid,split"),
    (GOOD_CSV[:2] + ["", "a/2.jpg,1,0,test"], r"line 4: split 'test' is not one of train, query, gallery"),
    (GOOD_CSV[:1] + ["a/1.jpg,,0,train"], r"line 2: the pid is empty"),
    (GOOD_CSV[:1] + ["a/1.jpg,1,-2,train"], r"line 2: camid '-2' is not a camera number"),
    (GOOD_CSV[:1] + ["../x.jpg,1,0,train"], r"line 2: '../x.jpg' points outside the CSV file's folder"),
    (GOOD_CSV[:1] + ["/etc/passwd,1,0,train"], r"line 2: '/etc/passwd' is an absolute path"),
    (GOOD_CSV[:1] + ["a/3.jpg,1,0,train"], r"line 2: image .*a/3.jpg' does not exist"),
    (GOOD_CSV[:1] + ["a/readme.txt,1,0,train"], r"line 2: 'a/readme.txt' is not an image file name"),
    (GOOD_CSV[:1] + ['"a/1.jpg,1,0,train'], r"line 2: malformed CSV"),
    (GOOD_CSV[:2] + ["a/1.jpg,alice,0,train"], r"list.csv line 2 and .*list.csv line 3 are the same image "
                                                r"\(.*\), twice in the train split"),
    (GOOD_CSV[:2] + ["a/1.jpg,alice,0,gallery"], r"in both the train and the gallery split"),
    (["path,pid,camid,split"], r"list.csv lists no images"),
    ([""], r"list.csv is empty; expected the header path,pid,camid,split"),
])
def test_csv_mistakes_name_file_and_line(tmp_path, lines, message):
    write_csv(tmp_path, lines)
    with pytest.raises(DatasetError, match=message):
        build_dataset(cfg_for(tmp_path), "csv:list.csv")


def test_csv_not_utf8_and_missing_file(tmp_path):
    write_csv(tmp_path, GOOD_CSV[:2])
    (tmp_path / "list.csv").write_bytes(b"path,pid,camid,split\n\xff\xfe,1,0,train\n")
    assert "list.csv line 2: not UTF-8 text" in _error(tmp_path, "csv:list.csv")
    assert f"the file '{tmp_path / 'nothing.csv'}' does not exist" in _error(tmp_path, "csv:nothing.csv")
    assert "is a folder, not a file" in _error(tmp_path, f"csv:{tmp_path}")


def test_csv_row_parser_on_a_bom_and_quoted_commas(tmp_path):
    write_jpeg(tmp_path / "x, y.jpg")
    (tmp_path / "list.csv").write_bytes('\ufeffpath,pid,camid,split\n"x, y.jpg",a,,query\n'.encode())
    rows = CsvDataset.read(tmp_path / "list.csv")
    assert [(line, r.split, Path(r.path).name, r.camid) for line, r in rows] == [(2, "query", "x, y.jpg", -1)]


# --------------------------------------------------------------------------------------------------------------
# The evaluation protocol


def _r(pid, cam, path=""):
    return ImageRecord(path or f"/d/{pid}_{cam}.jpg", pid, cam)


def test_protocol_choice():
    two = [_r(1, 0), _r(1, 1)]
    assert choose_protocol(two[:1], two[1:], True).name == CROSS_CAMERA
    assert choose_protocol(two[:1], two[1:], False) == choose_protocol(two[:1], two[1:], False)
    assert choose_protocol(two[:1], two[1:], False).reason == "TEST.CROSS_CAMERA is False"
    one = choose_protocol([_r(1, 2)], [_r(1, 2), _r(-1, 0)], True)  # junk does not count as a camera
    assert (one.name, one.reason) == (SAME_IMAGE, "every image comes from one camera (camera 3)")
    unknown = choose_protocol([_r(1, 0)], [_r(1, -1), _r(2, 1)], True)
    assert (unknown.name, unknown.reason) == (SAME_IMAGE, "1 of 3 images have no camera id")


def test_same_image_rule_for_query_matches():
    q = [_r(1, -1, "/d/a.jpg"), _r(2, -1, "/d/b.jpg")]
    g = [_r(1, -1, "/d/a.jpg"), _r(1, -1, "/d/c.jpg"), _r(2, -1, "/d/b.jpg")]
    ids = [0, 1, 0, 3, 1]  # query a and b are gallery items 0 and 2
    assert check_query_matches(q, g, "X", "/d", ids) == 1  # b has only its own file
    with pytest.raises(DatasetError, match=r"None of the 1 queries of X \(/d\) has a true match in its gallery: "
                                           r"another image of the same identity.*'b.jpg' \(pid 2, camera unknown\) "
                                           r"has only its own file"):
        check_query_matches(q[1:], g, "X", "/d", [1, 0, 3, 1])


def test_identity_with_one_query_image_and_none_in_gallery_is_counted(tmp_path, data_log):
    make_folder(tmp_path / "d", {"query": {"a": ["1.jpg"], "lonely": ["2.jpg"]}, "gallery": {"a": ["3.jpg"]}})
    test_set = build_test_set(cfg_for(tmp_path), "folder:d")
    assert test_set.protocol.name == SAME_IMAGE
    warning = next(m for m in data_log if "have no true match" in m)
    assert warning.startswith("1 of 2 queries of folder:d have no true match in the gallery (same-image removal)")
    assert str(tmp_path / "d" / "query" / "lonely" / "2.jpg") in warning and "identity 'lonely'" in warning
    assert any("folder:d: evaluated with same-image removal, not the cross-camera protocol (3 of 3 images have no "
               "camera id)" in m for m in data_log)
    shutil.rmtree(tmp_path / "d" / "query" / "a")
    with pytest.raises(DatasetError, match=r"None of the 1 queries of folder:d .*'2.jpg' \(identity 'lonely', "
                                           r"pid 1, camera unknown\) has no image of its identity"):
        build_test_set(cfg_for(tmp_path), "folder:d")


def test_single_camera_without_the_key_fails_with_the_cross_camera_rule_only_when_forced(tmp_path):
    # Two cameras, but every identity in one camera (crops from one tracking sequence each).
    make_folder(tmp_path / "d", {"query": {"a": ["1_c1.jpg"], "b": ["4_c2.jpg"]},
                                 "gallery": {"a": ["2_c1.jpg"], "b": ["3_c2.jpg"]}})
    with pytest.raises(DatasetError, match="set TEST.CROSS_CAMERA False"):
        build_test_set(cfg_for(tmp_path), "folder:d")
    cfg = cfg_for(tmp_path)
    cfg.TEST.CROSS_CAMERA = False
    assert build_test_set(cfg, "folder:d").protocol.reason == "TEST.CROSS_CAMERA is False"


# --------------------------------------------------------------------------------------------------------------
# Several training sets


def test_merged_sets_keep_identities_apart(tmp_path, synthetic_root):
    from tests.conftest import TINY_TRAINING

    make_folder(tmp_path / "d", {"train": {"x": ["1_c1.jpg", "2_c2.jpg"], "y": ["3.jpg", "4.jpg"]}})
    cfg = load_cfg(None, ["DATASETS.ROOT", synthetic_root, *TINY_TRAINING, "DATASETS.NAMES",
                          f"['Synthetic', 'folder:{tmp_path / 'd'}']"])
    _, merged = build_train_loader(cfg, check_tests=False)
    synthetic = build_dataset(cfg, "Synthetic")
    n = synthetic.num_train_pids
    assert merged.num_train_pids == n + 2  # the classifier size is the sum
    folder = [r for r in merged.train if r.identity_name.startswith("folder:")]
    assert sorted({(r.identity_name, r.pid) for r in folder}) == [(f"folder:{tmp_path / 'd'}/x", n),
                                                                   (f"folder:{tmp_path / 'd'}/y", n + 1)]
    num_cams = max(r.camid for r in synthetic.train) + 1
    assert sorted(r.camid for r in folder) == [-1, -1, num_cams, num_cams + 1]  # unknown stays unknown
    assert {r.identity_name for r in merged.train if not r.identity_name.startswith("folder:")} == \
        {f"Synthetic/{p}" for p in range(n)}
    summary = merged.summary()
    assert "train of Synthetic" in summary and f"train of folder:{tmp_path / 'd'}" in summary
    assert f"classifier size {n + 2} = {n} + 2" in summary


def test_a_training_set_without_train_images_is_named(tmp_path):
    make_folder(tmp_path / "d", {"query": {"a": ["1.jpg"]}, "gallery": {"a": ["2.jpg"]}})
    cfg = cfg_for(tmp_path, NAMES=["folder:d"], TESTS=["folder:d"])
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 4, 2
    with pytest.raises(DatasetError, match=r"No training images in folder:d .* list it in DATASETS.TESTS only"):
        build_train_loader(cfg)


# --------------------------------------------------------------------------------------------------------------
# Through the tools: one message naming the path, exit status 1, no traceback, before any training


def _empty_split(root: Path) -> str:
    make_folder(root / "d", {"train": {"a": ["1.jpg"]}})
    (root / "d" / "gallery").mkdir()
    return "folder:d"


def _duplicate(root: Path) -> str:
    make_folder(root / "d", {"train": {"a": ["1.jpg"]}, "query": {"a": []}, "gallery": {"a": ["2.jpg"]}})
    shutil.copy(root / "d" / "gallery" / "a" / "2.jpg", root / "d" / "query" / "a" / "2.jpg")
    os.symlink("../../train/a/1.jpg", root / "d" / "query" / "a" / "1.jpg")
    return "folder:d"


def _missing_column(root: Path) -> str:
    write_csv(root, ["path,pid,split", "a/1.jpg,1,train"])
    return "csv:list.csv"


@pytest.mark.parametrize("make, expected", [
    (_empty_split, "error: '{root}/d/gallery' holds no images; expected gallery/<identity>/<image>"),
    (_duplicate, "error: '{root}/d/train/a/1.jpg' and '{root}/d/query/a/1.jpg' are the same image"),
    (_missing_column, "error: {root}/list.csv line 1: missing column(s) camid; expected the header "
                      "path,pid,camid,split"),
    (lambda root: "folder:nothing", "error: Dataset 'folder:nothing': the folder '{root}/nothing' does not exist"),
])
@pytest.mark.parametrize("tool", ["train", "test"])
def test_bad_own_data_through_the_tools(tmp_path, capsys, monkeypatch, make, expected, tool):
    import importlib
    import logging

    from reid.cli.parser import run_tool

    monkeypatch.setattr(logging.getLogger("reid"), "handlers", [])  # no console handler of an earlier test's capture
    entry = make(tmp_path)
    argv = ["DATASETS.ROOT", str(tmp_path), "DATASETS.NAMES", f"['{entry}']", "DATASETS.TESTS", f"['{entry}']",
            "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu", "VIS.REPORT", "False"]
    with pytest.raises(SystemExit) as exit_:
        run_tool(importlib.import_module(f"reid.cli.{tool}").main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 1 and "Traceback" not in err
    assert err.startswith(expected.format(root=tmp_path)), err
