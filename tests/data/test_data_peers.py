"""reid's dataset parsers against the peers' own dataset classes (torchreid 0.2.5, fast-reid 1.4.0) on tiny trees in
the published layouts (tests/support/dataset_trees.py): the same images (tracklets), the same identity grouping, the
same 0-based cameras and the same query / gallery split, split by split where a protocol has several.

Where a peer differs on purpose or by a bug, the test asserts the difference (see datasets/README.md):
fast-reid's VIPeR and SenseReID are train-only sets (SenseReID's probe folder misspelt ``test_prob``), fast-reid's
VeRi-Wild cameras are the release's numbers (reid numbers them 0..), VehicleID has no cameras (fast-reid gives
each image its own), i-LIDS's last digits number images, not cameras (torchreid reads them as cameras), and
torchreid's iLIDS-VID / PRID-2011 frames are in directory order (reid sorts them).
"""
from __future__ import annotations

import collections
import collections.abc
import contextlib
import io
import os
import random
import sys
import types
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Sequence

import numpy as np
import pytest
from PIL import Image

from reid.data import build_dataset
from tests.data.test_data_standard import cfg_for
from tests.support import dataset_trees as trees
from tests.support.peer_models import require


# --------------------------------------------------------------------------------------------------------------
# The peers


@pytest.fixture(scope="module")
def torchreid_sets():
    """torchreid's dataset classes by name (image and video)."""
    require("torchreid")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its missing Cython evaluator
        from torchreid.reid.data.datasets import image, video
    return {**{k: getattr(image, k) for k in dir(image)}, **{k: getattr(video, k) for k in dir(video)}}


@pytest.fixture(scope="module")
def fastreid_sets():
    """fast-reid's DATASET_REGISTRY. ``fastreid.data`` imports ``torch._six`` and ``collections.Mapping``, both gone
    from torch 2 / Python 3.10; both are stood in for while it is imported, then removed again."""
    require("fastreid")
    six = types.ModuleType("torch._six")
    six.string_classes = (str, bytes)
    sys.modules["torch._six"], collections.Mapping = six, collections.abc.Mapping
    try:
        from fastreid.data.datasets import DATASET_REGISTRY
    finally:
        del sys.modules["torch._six"], collections.Mapping
    return DATASET_REGISTRY


def build(cls: Callable, *args, **kwargs):
    """A peer's dataset, its progress printing swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(*args, **kwargs)


def torchreid_video(cls: Callable, root: Path, **kwargs):
    return build(cls, root=str(root), transform=lambda x: x, **kwargs)


def fastreid_root(tmp_path: Path, links: Dict[str, Path]) -> Path:
    """A root where fast-reid finds the trees under its own folder names (symbolic links)."""
    root = tmp_path / "fastreid_root"
    for name, target in links.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target, target_is_directory=True)
    return root


# --------------------------------------------------------------------------------------------------------------
# Comparison


def reid_set(root: Path, name: str, **datasets):
    return build_dataset(cfg_for(root, **datasets), name)


def _key(paths, ordered: bool):
    """An image's real path, or a tracklet's real frame paths (as a tuple in order, or as a set)."""
    if isinstance(paths, (tuple, list)):
        real = tuple(os.path.realpath(p) for p in paths)
        return real if ordered else frozenset(real)
    return os.path.realpath(paths)


def ours(records, ordered: bool = True) -> Dict:
    return {_key(getattr(r, "paths", r.path), ordered): (r.pid, r.camid) for r in records}


def theirs(items: Iterable[Sequence], camera: Callable = lambda c: c, ordered: bool = True) -> Dict:
    return {_key(item[0], ordered): (item[1], camera(item[2])) for item in items}


def groups(table: Dict) -> set:
    """The identity grouping: the sets of items sharing a pid, whatever the pids' values."""
    by_pid: Dict[object, set] = {}
    for key, (pid, _) in table.items():
        by_pid.setdefault(pid, set()).add(key)
    return {frozenset(keys) for keys in by_pid.values()}


def assert_same(reid_records, peer_items, camera: Callable = lambda c: c, ordered: bool = True,
                same_cameras: bool = True) -> None:
    """The same images (or tracklets), identity grouping and cameras; ``camera`` maps the peer's camera ids."""
    a, b = ours(reid_records, ordered), theirs(peer_items, camera, ordered)
    assert len(a) == len(reid_records) and len(b) == len(list(peer_items)), "an item listed twice"
    assert set(a) == set(b)
    assert groups(a) == groups(b)
    if same_cameras:
        assert {k: c for k, (_, c) in a.items()} == {k: c for k, (_, c) in b.items()}


def assert_same_split(ds, peer, **kwargs) -> None:
    for subset in ("train", "query", "gallery"):
        assert_same(getattr(ds, subset), getattr(peer, subset), **kwargs)


def dataset_camera(prefix: str) -> Callable:
    """fast-reid's train cameras are strings ``<dataset>_<camid>``."""
    return lambda c: int(str(c)[len(prefix) + 1:]) if str(c).startswith(prefix + "_") else c


# --------------------------------------------------------------------------------------------------------------
# Person images


def test_dukemtmc_matches_torchreid_and_fastreid(tmp_path, torchreid_sets, fastreid_sets):
    folder = trees.write_duke(tmp_path)
    ds = reid_set(tmp_path, "DukeMTMC")
    assert_same_split(ds, build(torchreid_sets["DukeMTMCreID"], root=str(tmp_path)))
    peer = build(fastreid_sets.get("DukeMTMC"), root=str(fastreid_root(tmp_path, {"DukeMTMC-reID": folder})))
    assert_same_split(ds, peer, camera=dataset_camera("dukemtmc"))


def test_market1501_500k_distractors_match_torchreid_and_fastreid(tmp_path, torchreid_sets, fastreid_sets):
    folder = trees.write_market(tmp_path)
    ds = reid_set(tmp_path, "Market1501", MARKET1501__DISTRACTORS_500K=True)
    assert len(ds.gallery) == len(reid_set(tmp_path, "Market1501").gallery) + 3
    assert_same_split(ds, build(torchreid_sets["Market1501"], root=str(tmp_path), market1501_500k=True))
    peer = build(fastreid_sets.get("Market1501"), root=str(fastreid_root(tmp_path, {"Market-1501-v15.09.15": folder})),
                 market1501_500k=True)
    assert_same_split(ds, peer, camera=dataset_camera("market1501"))


@pytest.mark.parametrize("labeled", [False, True])
def test_cuhk03_new_protocol_matches_torchreid_and_fastreid(tmp_path, torchreid_sets, fastreid_sets, labeled):
    trees.write_cuhk03(tmp_path)
    ds = reid_set(tmp_path, "CUHK03", CUHK03__LABELED=labeled)  # reid extracts the images first
    kind = "labeled" if labeled else "detected"
    for identity, name in trees.cuhk03_names(kind)[:3]:
        pair, person, _, cell = (int(x) for x in name[:-4].split("_"))
        written = np.asarray(Image.open(tmp_path / "cuhk03" / f"images_{kind}" / name))
        assert np.array_equal(written, trees.cuhk03_pixels(kind, pair, person, cell - 1))
    assert_same_split(ds, build(torchreid_sets["CUHK03"], root=str(tmp_path), cuhk03_labeled=labeled))
    peer = build(fastreid_sets.get("CUHK03"), root=str(tmp_path), cuhk03_labeled=labeled)
    assert_same_split(ds, peer, camera=dataset_camera("cuhk03"))


def test_cuhk03_classic_splits_match_torchreid(tmp_path, torchreid_sets):
    trees.write_cuhk03(tmp_path)
    ds = reid_set(tmp_path, "CUHK03", CUHK03__CLASSIC_SPLIT=True)
    assert len(ds.splits) == 20
    for split_id in (0, 1, 19):
        peer = build(torchreid_sets["CUHK03"], root=str(tmp_path), cuhk03_classic_split=True, split_id=split_id)
        assert_same_split(ds.splits[split_id], peer)


def test_viper_reads_torchreids_splits_and_images_match_fastreid(tmp_path, torchreid_sets, fastreid_sets):
    folder = trees.write_viper(tmp_path)
    peers = [build(torchreid_sets["VIPeR"], root=str(tmp_path), split_id=i) for i in (0, 1, 2)]  # writes splits.json
    ds = reid_set(tmp_path, "VIPeR")
    assert len(ds.splits) == 20
    for split, peer in zip(ds.splits, peers):
        assert_same_split(split, peer)
    fast = build(fastreid_sets.get("VIPeR"), root=str(fastreid_root(tmp_path, {"VIPeR": folder})))
    split = ds.splits[0]
    for part in (split.train, split.query + split.gallery):  # train ids are relabelled: compare each side alone
        paths = {os.path.realpath(r.path) for r in part}
        assert_same(part, [item for item in fast.train if os.path.realpath(item[0]) in paths],
                    camera={"viper_cam_a": 0, "viper_cam_b": 1}.get)
    assert len(fast.train) == len(split.train) + len(split.query) + len(split.gallery)
    assert fast.query == [] and fast.gallery == []  # fast-reid reads VIPeR as a training set only


def test_cuhk01_reads_torchreids_splits(tmp_path, torchreid_sets):
    trees.write_cuhk01(tmp_path)
    peers = [build(torchreid_sets["CUHK01"], root=str(tmp_path), split_id=i) for i in (0, 1, 5)]
    ds = reid_set(tmp_path, "CUHK01")
    for split_id, peer in zip((0, 1, 5), peers):
        assert_same_split(ds.splits[split_id], peer)


def test_grid_splits_from_the_release_match_torchreid(tmp_path, torchreid_sets):
    trees.write_grid(tmp_path)
    ds = reid_set(tmp_path, "GRID")
    assert len(ds.splits) == 10
    for split_id in (0, 9):
        assert_same_split(ds.splits[split_id], build(torchreid_sets["GRID"], root=str(tmp_path), split_id=split_id))


def test_prid_reads_torchreids_splits(tmp_path, torchreid_sets):
    trees.write_prid_single(tmp_path)
    peers = [build(torchreid_sets["PRID"], root=str(tmp_path), split_id=i) for i in (0, 7)]
    ds = reid_set(tmp_path, "PRID")
    for split_id, peer in zip((0, 7), peers):
        assert_same_split(ds.splits[split_id], peer)
    assert len(ds.gallery) == 100 + 549 and len(ds.query) == 100 and len(ds.train) == 200


def test_ilids_reads_torchreids_splits_with_unknown_cameras(tmp_path, torchreid_sets):
    trees.write_ilids(tmp_path)
    peers = [build(torchreid_sets["iLIDS"], root=str(tmp_path), split_id=i) for i in (0, 3)]
    ds = reid_set(tmp_path, "iLIDS")
    for split_id, peer in zip((0, 3), peers):
        assert_same_split(ds.splits[split_id], peer, same_cameras=False)
        # torchreid's "camera" is the image's number within its identity; reid leaves cameras unknown
        assert {r.camid for r in ds.splits[split_id].query} == {-1}
        assert all(c == int(Path(p).stem[4:]) - 1 for p, _, c, *_ in peer.query)


def test_cuhk02_matches_torchreid(tmp_path, torchreid_sets):
    trees.write_cuhk02(tmp_path)
    ds = reid_set(tmp_path, "CUHK02")
    assert_same_split(ds, build(torchreid_sets["CUHK02"], root=str(tmp_path)))
    assert {r.camid for r in ds.train} == set(range(8)) and {r.camid for r in ds.query} == {8}


def test_sensereid_matches_torchreid_and_fastreids_gallery(tmp_path, torchreid_sets, fastreid_sets):
    folder = trees.write_sensereid(tmp_path)
    ds = reid_set(tmp_path, "SenseReID")
    peer = build(torchreid_sets["SenseReID"], root=str(tmp_path))
    assert_same(ds.query, peer.query)
    assert_same(ds.gallery, peer.gallery)
    assert ds.train == []  # torchreid's train is a dummy copy of query + gallery
    fast = build(fastreid_sets.get("SenseReID"), root=str(fastreid_root(tmp_path, {"SenseReID": folder})))
    # fast-reid reads SenseReID as training data from test_gallery/ and test_prob/ (sic): the release's
    # test_probe/ is not read, so its training set is the gallery alone.
    assert_same(ds.gallery, fast.train, camera=dataset_camera("senseid"))


def test_cuhksysu_matches_torchreid_and_fastreid(tmp_path, torchreid_sets, fastreid_sets):
    folder = trees.write_cuhksysu(tmp_path)
    ds = reid_set(tmp_path, "CUHKSYSU")
    assert_same(ds.train, build(torchreid_sets["CUHKSYSU"], root=str(tmp_path)).train)
    fast = build(fastreid_sets.get("cuhkSYSU"), root=str(fastreid_root(tmp_path, {"cuhk_sysu": folder.parent})))
    assert_same(ds.train, fast.train, camera=dataset_camera("cuhksysu"))
    assert ds.query == [] and ds.gallery == []


# --------------------------------------------------------------------------------------------------------------
# Vehicles (fast-reid only: torchreid reads none)


def test_veri_matches_fastreid(tmp_path, fastreid_sets):
    trees.write_veri(tmp_path)
    assert_same_split(reid_set(tmp_path, "VeRi"), build(fastreid_sets.get("VeRi"), root=str(tmp_path)),
                      camera=dataset_camera("veri"))


def test_vehicleid_gallery_draws_match_fastreid_seeded_alike(tmp_path, fastreid_sets):
    folder = trees.write_vehicleid(tmp_path)
    ds = reid_set(tmp_path, "VehicleID", SPLIT_SEED=4)
    assert len(ds.splits) == 10
    for r in (0, 1, 9):
        random.seed(f"VehicleID:4:{r}")
        peer = build(fastreid_sets.get("VehicleID"), root=str(tmp_path),
                     test_list=str(folder / "train_test_split" / "test_list_800.txt"))
        # fast-reid's camera id is the image id: every other gallery image counts, as reid's unknown camera does
        assert len({c for _, _, c in peer.query + peer.gallery}) == len(peer.query) + len(peer.gallery)
        assert_same_split(ds.splits[r], peer, same_cameras=False)
        assert {r.camid for r in ds.splits[r].query + ds.splits[r].gallery} == {-1}
    assert len({tuple(r.path for r in s.gallery) for s in ds.splits}) > 1  # the draws differ


def test_veriwild_matches_fastreid_up_to_camera_numbering(tmp_path, fastreid_sets):
    trees.write_veriwild(tmp_path)
    ds = reid_set(tmp_path, "VeRiWild")
    peer = build(fastreid_sets.get("SmallVeRiWild"), root=str(tmp_path))
    # fast-reid keeps the release's camera numbers; reid numbers them 0.. in increasing order
    number = {str(c): i for i, c in enumerate(sorted(trees.VERIWILD_CAMERAS))}
    assert_same_split(ds, peer, camera=lambda c: number[str(c).rpartition("_")[2]])


# --------------------------------------------------------------------------------------------------------------
# Video (torchreid only: fast-reid reads none)


def test_mars_matches_torchreid(tmp_path, torchreid_sets):
    trees.write_mars(tmp_path)
    ds = reid_set(tmp_path, "MARS")
    assert_same_split(ds, torchreid_video(torchreid_sets["Mars"], tmp_path))
    assert [r.pid for r in ds.query] == [2, 3]  # query_IDX rows 1 and 3


def test_ilidsvid_splits_from_the_release_match_torchreid(tmp_path, torchreid_sets):
    trees.write_ilidsvid(tmp_path)
    ds = reid_set(tmp_path, "iLIDSVID")
    for split_id in (0, 9):
        peer = torchreid_video(torchreid_sets["iLIDSVID"], tmp_path, split_id=split_id)
        assert_same_split(ds.splits[split_id], peer, ordered=False)  # torchreid keeps directory order
    assert all(list(r.paths) == sorted(r.paths) for r in ds.train)


def test_prid2011_reads_torchreids_split_file(tmp_path, torchreid_sets):
    trees.write_prid2011(tmp_path)
    ds = reid_set(tmp_path, "PRID2011")
    assert len(ds.splits) == 2
    for split_id in (0, 1):
        peer = torchreid_video(torchreid_sets["PRID2011"], tmp_path, split_id=split_id)
        assert_same_split(ds.splits[split_id], peer, ordered=False)


def test_dukemtmc_video_matches_torchreid(tmp_path, torchreid_sets):
    trees.write_dukevideo(tmp_path)
    ds = reid_set(tmp_path, "DukeMTMCVideo")
    assert_same_split(ds, torchreid_video(torchreid_sets["DukeMTMCVidReID"], tmp_path))
