"""The standard benchmarks' parsers on their own (tiny trees from tests/support/dataset_trees.py): folder discovery, the
protocol keys, seeded splits, tracklet records, and one clear error naming the file for each bad layout. The
comparisons with the peers' parsers are in tests/data/test_data_peers.py."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from reid.config.validation import validate
from reid.data import DATASET_REGISTRY, build_dataset, build_test_set, build_train_loader
from reid.data.datasets import ReIDDataset, TrackletRecord
from reid.utils.errors import ConfigError, DatasetError
from tests.data.test_data_datasets import cfg_for as tiny_cfg
from tests.support import dataset_trees as trees

STANDARD = ["DukeMTMC", "CUHK03", "VIPeR", "GRID", "PRID", "iLIDS", "CUHK01", "CUHK02", "SenseReID", "CUHKSYSU", "VeRi",
            "VehicleID", "VeRiWild", "MARS", "iLIDSVID", "PRID2011", "DukeMTMCVideo"]


def cfg_for(root: Path, **keys):
    """test_data_datasets' tiny config; ``NODE__KEY=value`` sets ``DATASETS.NODE.KEY``."""
    cfg = tiny_cfg(root)
    for key, value in keys.items():
        node, _, leaf = key.rpartition("__")
        (cfg.DATASETS[node] if node else cfg.DATASETS)[leaf] = value
    return cfg


def parse(root: Path, name: str, **keys) -> ReIDDataset:
    return build_dataset(cfg_for(root, **keys), name)


def identities(records) -> set:
    return {r.pid for r in records}


# --------------------------------------------------------------------------------------------------------------
# Entries, folders, errors


@pytest.mark.parametrize("name", STANDARD)
def test_every_standard_dataset_is_an_entry_and_a_missing_folder_names_the_layout(tmp_path, name):
    assert name in DATASET_REGISTRY
    cls = DATASET_REGISTRY.get(name)
    DATASET_REGISTRY.check(f"{name}:some/folder")  # NAME:PATH is accepted by validation
    with pytest.raises(DatasetError) as err:
        parse(tmp_path, name)
    message = str(err.value)
    assert str(tmp_path / cls.FOLDERS[0]) in message and cls.LAYOUT.splitlines()[0].strip() in message


def test_name_path_reads_a_release_folder_anywhere(tmp_path):
    trees.write_duke(tmp_path / "elsewhere")
    ds = parse(tmp_path, "DukeMTMC:elsewhere/dukemtmc-reid/DukeMTMC-reID")
    assert ds.name == "DukeMTMC:elsewhere/dukemtmc-reid/DukeMTMC-reID" and len(ds.query) == 2
    assert {r.camid for r in ds.train} == {0, 1, 2, 7, 4}  # c1, c2, c3, c8, c5 -> 0-based


def test_misnamed_image_is_one_error_naming_it(tmp_path):
    folder = trees.write_duke(tmp_path)
    trees.image(folder / "query" / "0003_c1_0001.jpg")
    with pytest.raises(DatasetError, match=r"DukeMTMC-reID naming .*'0003_c1_0001\.jpg'"):
        parse(tmp_path, "DukeMTMC")


@pytest.mark.parametrize("line, message", [("0000020", "expected '<image> <vehicle id>'"),
                                           ("0099999 3", "0099999.jpg' does not exist")])
def test_vehicleid_bad_list_line_names_file_and_line(tmp_path, line, message):
    folder = trees.write_vehicleid(tmp_path)
    with open(folder / "train_test_split" / "train_list.txt", "a") as f:
        f.write(line + "\n")
    with pytest.raises(DatasetError, match=rf"train_list\.txt line 10: .*{message}"):
        parse(tmp_path, "VehicleID")


def test_vehicleid_missing_test_size_names_the_file_and_key(tmp_path):
    trees.write_vehicleid(tmp_path)
    with pytest.raises(DatasetError, match=r"test_list_1600\.txt.*DATASETS\.VEHICLEID\.TEST_SIZE 1600"):
        parse(tmp_path, "VehicleID", VEHICLEID__TEST_SIZE=1600)


def test_veriwild_image_without_camera_names_the_list_line(tmp_path):
    folder = trees.write_veriwild(tmp_path)
    with open(folder / "train_test_split" / "train_list.txt", "a") as f:
        f.write("00001/999999\n")
    with pytest.raises(DatasetError, match=r"train_list\.txt line 10: image '999999' is not in vehicle_info\.txt"):
        parse(tmp_path, "VeRiWild")


def test_veriwild_cameras_are_numbered_from_zero_in_increasing_order(tmp_path):
    trees.write_veriwild(tmp_path)
    ds = parse(tmp_path, "VeRiWild")
    assert {r.camid for r in ds.train + ds.query + ds.gallery} == {0, 1, 2, 3}


def test_mars_row_disagreeing_with_its_frames_names_the_row(tmp_path):
    from scipy.io import savemat

    folder = trees.write_mars(tmp_path)
    savemat(folder / "info" / "tracks_train_info.mat",
            {"track_train_info": np.array([[1, 3, 1, 1], [4, 5, 3, 2]], dtype=np.int32)})
    with pytest.raises(DatasetError, match=r"tracks_train_info\.mat row 2: identity 3, camera 2"):
        parse(tmp_path, "MARS")


def test_mat_file_without_the_variable_names_it(tmp_path):
    from scipy.io import savemat

    folder = trees.write_grid(tmp_path)
    savemat(folder / "features_and_partitions.mat", {"somethingElse": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"features_and_partitions\.mat: no variable trainIdxAll"):
        parse(tmp_path, "GRID")


def test_split_file_for_another_copy_names_the_entry(tmp_path):
    trees.write_cuhk01(tmp_path)
    (tmp_path / "cuhk01" / "splits.json").write_text(json.dumps(
        [{"train": [["/old/campus/0099001.png", 0, 0]], "query": [], "gallery": []}]))
    with pytest.raises(DatasetError, match=r"splits\.json names the image \('0099001\.png',\).*another copy"):
        parse(tmp_path, "CUHK01")
    (tmp_path / "cuhk01" / "splits.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"splits\.json: not a readable JSON split file"):
        parse(tmp_path, "CUHK01")


def test_split_id_out_of_range_names_the_key(tmp_path):
    trees.write_viper(tmp_path)
    with pytest.raises(DatasetError, match=r"DATASETS\.SPLIT_ID 20 is out of range: VIPeR .* 20 split\(s\), 0\.\.19"):
        parse(tmp_path, "VIPeR", SPLIT_ID=20)
    ds = parse(tmp_path, "VIPeR", SPLIT_ID=3)
    assert ds.train is ds.splits[3].train and ds.split_id == 3 and "split 3 of 0..19" in ds.summary()


@pytest.mark.parametrize("key, value", [("SPLIT_ID", -1), ("VEHICLEID__REPEATS", 0), ("VERIWILD__TEST_SIZE", 0)])
def test_protocol_keys_are_validated(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key.replace("__", r"\.")):
        validate(cfg_for(tmp_path, **{key: value}))


# --------------------------------------------------------------------------------------------------------------
# Protocols


def test_market_500k_distractors_join_the_gallery_and_need_their_folder(tmp_path):
    folder = trees.write_market(tmp_path)
    plain = parse(tmp_path, "Market1501")
    with_500k = parse(tmp_path, "Market1501", MARKET1501__DISTRACTORS_500K=True)
    assert [r.path for r in with_500k.gallery[:len(plain.gallery)]] == [r.path for r in plain.gallery]
    assert {r.pid for r in with_500k.gallery[len(plain.gallery):]} == {0} and with_500k.query == plain.query
    shutil.rmtree(folder / "images")
    with pytest.raises(DatasetError, match=r"DISTRACTORS_500K is set but .*images' is missing"):
        parse(tmp_path, "Market1501", MARKET1501__DISTRACTORS_500K=True)


def test_viper_draws_twenty_seeded_splits_without_a_split_file(tmp_path):
    trees.write_viper(tmp_path, identities=10)
    ds = parse(tmp_path, "VIPeR", SPLIT_SEED=1)
    assert len(ds.splits) == 20
    for a, b in zip(ds.splits[::2], ds.splits[1::2]):  # each random half used in both directions
        assert a.train == b.train and a.query == b.gallery and a.gallery == b.query
        assert {r.camid for r in a.query} == {0} and {r.camid for r in a.gallery} == {1}
        test = identities(a.query)
        assert len(test) == 5 and identities(a.gallery) == test and len(identities(a.train)) == 5
        assert not test & {int(Path(r.path).stem.split("_")[0]) for r in a.train}
    again, other = parse(tmp_path, "VIPeR", SPLIT_SEED=1), parse(tmp_path, "VIPeR", SPLIT_SEED=2)
    assert [s.query for s in again.splits] == [s.query for s in ds.splits]
    assert [s.query for s in other.splits] != [s.query for s in ds.splits]


def test_ilids_draws_one_query_and_one_gallery_image_per_test_identity(tmp_path):
    trees.write_ilids(tmp_path, identities=9, per_id=3)
    ds = parse(tmp_path, "iLIDS")
    for split in ds.splits:
        assert len(split.query) == len(split.gallery) == 5 and len(identities(split.train)) == 4
        assert [r.pid for r in split.query] == [r.pid for r in split.gallery]
        assert not {r.path for r in split.query} & {r.path for r in split.gallery}
        assert {r.camid for r in split.train + split.query + split.gallery} == {-1}


def test_prid_uses_persons_seen_by_both_cameras_and_camera_b_distractors(tmp_path):
    trees.write_prid_single(tmp_path, cam_a=210, cam_b=230)
    ds = parse(tmp_path, "PRID")
    assert len(identities(ds.train)) == 100 and len(ds.query) == 100
    assert len(ds.gallery) == 100 + 30 and {r.camid for r in ds.gallery} == {1}  # persons 201-230 of camera B
    assert max(identities(ds.query)) <= 200


def test_prid2011_draws_among_long_enough_tracklets_without_the_split_file(tmp_path):
    frames = {p: (21 + p % 3, 22) for p in range(1, 9)}
    frames[3] = (20, 30)  # too short in camera A
    trees.write_prid2011(tmp_path, frames=frames)
    (tmp_path / "prid2011" / "splits_prid2011.json").unlink()
    ds = parse(tmp_path, "PRID2011")
    assert len(ds.splits) == 10
    for split in ds.splits:
        assert 3 not in identities(split.query) and len(split.query) == len(split.gallery) == 4
        assert all(isinstance(r, TrackletRecord) and len(r.paths) >= 21 for r in split.query)


def test_vehicleid_draws_one_gallery_image_per_vehicle_repeatably(tmp_path):
    trees.write_vehicleid(tmp_path)
    ds = parse(tmp_path, "VehicleID", VEHICLEID__REPEATS=4)
    assert len(ds.splits) == 4
    for split in ds.splits:
        assert sorted(r.pid for r in split.gallery) == sorted(identities(split.gallery)) == [100, 101, 102, 103]
        assert len(split.query) + len(split.gallery) == 16 and split.train is ds.train
    assert [s.gallery for s in parse(tmp_path, "VehicleID", VEHICLEID__REPEATS=4).splits] == [s.gallery for s in
                                                                                              ds.splits]


def test_cuhk03_extracts_once_and_classic_splits_hold_the_test_identities(tmp_path):
    trees.write_cuhk03(tmp_path)
    ds = parse(tmp_path, "CUHK03")
    assert len(identities(ds.train)) == 3 and identities(ds.query) == identities(ds.gallery) == {4, 5, 6}
    first = tmp_path / "cuhk03" / "images_detected" / "1_001_1_01.png"
    stamp = first.stat().st_mtime_ns
    os.remove(tmp_path / "cuhk03" / "images_detected" / "2_003_2_10.png")
    parse(tmp_path, "CUHK03")  # fills in the missing image, leaves the others
    assert first.stat().st_mtime_ns == stamp and (tmp_path / "cuhk03" / "images_detected" / "2_003_2_10.png").is_file()
    assert not [p for p in (tmp_path / "cuhk03" / "images_detected").iterdir() if p.name.endswith(".tmp")]
    classic = parse(tmp_path, "CUHK03", CUHK03__CLASSIC_SPLIT=True, CUHK03__LABELED=True)
    assert len(classic.splits) == 20 and "images_labeled" in classic.query[0].path
    for split, test in zip(classic.splits, trees.CUHK03_TESTSETS):
        assert split.query == split.gallery and len(identities(split.query)) == len(test)
        assert len(identities(split.train)) == 6 - len(test)


def test_video_tracklets_keep_frame_order_and_camera(tmp_path):
    trees.write_dukevideo(tmp_path)
    ds = parse(tmp_path, "DukeMTMCVideo")
    assert ds.is_video and all(isinstance(r, TrackletRecord) for r in ds.train + ds.query + ds.gallery)
    first = ds.train[0]
    assert first.path == first.paths[0] and [Path(p).name[8:13] for p in first.paths] == ["F0001", "F0002", "F0003"]
    assert first.camid == 5  # C6
    summary = ds.summary()
    assert "# tracklets" in summary and "# frames" in summary


def test_mars_junk_is_dropped_unless_kept_and_queries_come_from_query_idx(tmp_path):
    trees.write_mars(tmp_path)
    ds = parse(tmp_path, "MARS")
    assert [len(r.paths) for r in ds.query] == [2, 2] and -1 not in identities(ds.gallery)
    assert 0 in identities(ds.gallery) and not {r.paths for r in ds.query} & {r.paths for r in ds.gallery}
    kept = parse(tmp_path, "MARS", KEEP_JUNK=True)
    assert len(kept.gallery) == len(ds.gallery) + 1


# --------------------------------------------------------------------------------------------------------------
# Training and testing entry points


def test_video_sets_train_on_clips_and_test_on_every_frame(tmp_path):
    trees.write_mars(tmp_path)
    cfg = cfg_for(tmp_path, NAMES=["MARS"], TESTS=["MARS"])
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE, cfg.DATALOADER.SEQ_LEN = 4, 2, 3
    loader, dataset = build_train_loader(cfg)
    batch = next(iter(loader))
    assert dataset.is_video and batch["images"].shape == (4, 3, 3, 16, 8) and batch["pids"].shape == (4,)
    test = build_test_set(cfg, "MARS")
    frames = sum(len(r.paths) for r in test.records)
    assert len(test.loader.dataset) == frames and test.loader.dataset.num_tracklets == len(test.records)
    trees.write_market(tmp_path)
    with pytest.raises(DatasetError, match="mixes video sets \\(MARS: tracklets\\) with image sets"):
        build_train_loader(cfg_for(tmp_path, NAMES=["MARS", "Market1501"], TESTS=["MARS"]))


def test_train_only_and_test_only_sets_say_where_they_belong(tmp_path):
    trees.write_cuhksysu(tmp_path)
    trees.write_sensereid(tmp_path)
    with pytest.raises(DatasetError, match="CUHKSYSU .* training set only; list it in DATASETS.NAMES"):
        build_test_set(cfg_for(tmp_path), "CUHKSYSU")
    with pytest.raises(DatasetError, match="No training images in SenseReID"):
        build_train_loader(cfg_for(tmp_path, NAMES=["SenseReID"], TESTS=["SenseReID"]))


def test_multi_source_training_merges_standard_sets(tmp_path):
    trees.write_duke(tmp_path)
    trees.write_cuhk02(tmp_path)
    trees.write_sensereid(tmp_path)
    cfg = cfg_for(tmp_path, NAMES=["DukeMTMC", "CUHK02"], TESTS=["SenseReID"])
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_INSTANCE = 2
    loader, merged = build_train_loader(cfg)
    assert merged.num_train_pids == 3 + 9 and "train of CUHK02" in merged.summary()
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, 16, 8)
    test = build_test_set(cfg, "SenseReID")
    assert test.num_query == 2 and test.protocol.cross_camera
