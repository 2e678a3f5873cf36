"""Dataset parsers, image reading, transforms and loaders on tiny Market-1501 / MSMT17 trees written to tmp_path."""
from pathlib import Path
from typing import Dict, Iterable, List

import pytest
import torch
from PIL import Image

from reid.config import get_cfg
from reid.data import DATASET_REGISTRY, build_dataset, build_test_set, build_train_loader, read_image
from reid.data.datasets import MSMT17, ImageRecord, Market1501
from reid.data.transforms import build_test_transform
from reid.utils.errors import ConfigError, DatasetError

MARKET = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s2_000101_01.jpg",
                           "0007_c1s1_000201_01.jpg", "0005_c6s1_000301_02.jpg", "-1_c1s1_000011_01.jpg"],
    "query": ["0003_c1s1_001051_00.jpg", "0004_c2s1_000051_00.jpg", "-1_c2s1_000061_00.jpg"],
    "bounding_box_test": ["0003_c2s1_000151_01.jpg", "0004_c1s1_000151_01.jpg", "0000_c1s1_000001_01.jpg",
                          "-1_c3s1_000401_03.jpg"],
}


def write_jpeg(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), (value, 255 - value, 40)).save(path)


def make_market(root: Path, folder: str = "Market-1501-v15.09.15", splits: Dict[str, List[str]] = MARKET) -> Path:
    for split, names in splits.items():
        (root / folder / split).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            write_jpeg(root / folder / split / name, 20 * i)
    return root / folder


def make_msmt(root: Path, folder: str = "MSMT17_V1", train_dir: str = "train", test_dir: str = "test",
              lists: Dict[str, Iterable[str]] | None = None) -> Path:
    lists = lists or {
        "list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0000/0000_001_03_0303morning_0036_1.jpg 0"],
        "list_val.txt": ["0005/0005_000_15_0113noon_0100_0.jpg 5"],
        "list_query.txt": ["0002/0002_000_02_0302afternoon_0008_0.jpg 2"],
        "list_gallery.txt": ["0002/0002_001_11_0302afternoon_0020_0.jpg 2",
                             "0009/0009_004_07_0114morning_0050_1.jpg 9"],
    }
    base = root / folder
    for list_name, lines in lists.items():
        image_dir = base / (train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir)
        for line in lines:
            rel = line.split()[0]
            if ".." not in rel and not rel.startswith("/"):
                write_jpeg(image_dir / rel)
        base.mkdir(parents=True, exist_ok=True)
        (base / list_name).write_text("\n".join(lines) + "\n")
    return base


def cfg_for(root: Path, **datasets):
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(root)
    cfg.INPUT.SIZE_TRAIN = [16, 8]
    cfg.INPUT.SIZE_TEST = [16, 8]
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.MODEL.DEVICE = "cpu"
    for key, value in datasets.items():
        cfg.DATASETS[key] = value
    return cfg


def names(records: List[ImageRecord]) -> List[str]:
    return [Path(r.path).name for r in records]


# --------------------------------------------------------------------------------------------------------------
# Market-1501


def test_market_train_drops_junk_and_relabels_in_sorted_order(tmp_path):
    make_market(tmp_path)
    ds = Market1501(str(tmp_path), cfg_for(tmp_path))
    by_name = {Path(r.path).name: r for r in ds.train}
    assert "-1_c1s1_000011_01.jpg" not in by_name
    assert by_name["0002_c1s1_000451_03.jpg"] == ImageRecord(by_name["0002_c1s1_000451_03.jpg"].path, 0, 0)
    assert (by_name["0005_c6s1_000301_02.jpg"].pid, by_name["0005_c6s1_000301_02.jpg"].camid) == (1, 5)
    assert (by_name["0007_c3s2_000101_01.jpg"].pid, by_name["0007_c3s2_000101_01.jpg"].camid) == (2, 2)
    assert ds.num_train_pids == 3 and ds.num_train_cams == 4


def test_market_test_keeps_ids_and_distractors_and_drops_junk_by_default(tmp_path):
    make_market(tmp_path)
    ds = Market1501(str(tmp_path), cfg_for(tmp_path))
    assert [(r.pid, r.camid) for r in ds.query] == [(3, 0), (4, 1)]
    assert sorted(r.pid for r in ds.gallery) == [0, 3, 4]


def test_market_keep_junk(tmp_path):
    make_market(tmp_path)
    ds = Market1501(str(tmp_path), cfg_for(tmp_path, KEEP_JUNK=True))
    assert sorted(r.pid for r in ds.query) == [-1, 3, 4]
    assert sorted(r.pid for r in ds.gallery) == [-1, 0, 3, 4]
    assert all(r.pid >= 0 for r in ds.train)


def test_market_alternative_folder_and_non_images_ignored(tmp_path):
    folder = make_market(tmp_path, folder="Market-1501")
    (folder / "query" / "Thumbs.db").write_bytes(b"\0\1")
    (folder / "bounding_box_test" / ".DS_Store").write_bytes(b"x")
    ds = build_dataset(cfg_for(tmp_path), "Market1501")
    assert ds.root == str(folder) and len(ds.query) == 2
    assert "3" in ds.summary() and "query" in ds.summary()


@pytest.mark.parametrize("bad", ["0002_c1_000451_03.jpg", "abc_c1s1_000451_03.jpg", "0002_c0s1_000451_03.jpg"])
def test_market_misnamed_image_is_an_error_naming_file_and_pattern(tmp_path, bad):
    folder = make_market(tmp_path)
    write_jpeg(folder / "bounding_box_test" / bad)
    with pytest.raises(DatasetError, match="naming") as err:
        Market1501(str(tmp_path), cfg_for(tmp_path))
    assert bad in str(err.value) and "bounding_box_test" in str(err.value) and "0002_c1s1_000451_03.jpg" in str(err.value)


def test_market_missing_root_names_folder_and_layout(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_dataset(cfg_for(tmp_path / "nowhere"), "Market1501")
    msg = str(err.value)
    assert "Market-1501-v15.09.15" in msg and "bounding_box_train" in msg and "DATASETS.ROOT" in msg


def test_market_missing_split_folder(tmp_path):
    make_market(tmp_path, splits={k: v for k, v in MARKET.items() if k != "query"})
    with pytest.raises(DatasetError, match="query") as err:
        Market1501(str(tmp_path), cfg_for(tmp_path))
    assert "bounding_box_test" in str(err.value)  # the layout is shown


@pytest.mark.parametrize("split", ["query", "bounding_box_test"])
def test_market_empty_query_or_gallery(tmp_path, split):
    make_market(tmp_path, splits={**MARKET, split: ["-1_c1s1_000001_01.jpg"]})  # only junk: empty once dropped
    with pytest.raises(DatasetError, match="No (query|gallery) images"):
        Market1501(str(tmp_path), cfg_for(tmp_path))


# --------------------------------------------------------------------------------------------------------------
# MSMT17


def test_msmt17_v1_train_is_train_plus_val_and_camera_is_third_field(tmp_path):
    make_msmt(tmp_path)
    ds = MSMT17(str(tmp_path), cfg_for(tmp_path))
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 0), (0, 2), (1, 14)]
    assert [(r.pid, r.camid) for r in ds.query] == [(2, 1)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(2, 10), (9, 6)]
    assert all(Path(r.path).is_file() for r in ds.train + ds.query + ds.gallery)


def test_msmt17_v2_naming_and_preference(tmp_path):
    make_msmt(tmp_path, folder="MSMT17_V1")
    v2 = make_msmt(tmp_path, folder="MSMT17_V2", train_dir="mask_train_v2", test_dir="mask_test_v2")
    ds = build_dataset(cfg_for(tmp_path), "MSMT17")
    assert ds.root == str(v2)
    assert all("mask_t" in r.path for r in ds.train + ds.query + ds.gallery)


def test_msmt17_plain_folder_name(tmp_path):
    make_msmt(tmp_path, folder="MSMT17")
    assert len(MSMT17(str(tmp_path), cfg_for(tmp_path)).train) == 3


@pytest.mark.parametrize("line, message", [
    ("../../outside/0002_000_02_0302afternoon_0008_0.jpg 2", "outside"),
    ("/etc/0002_000_02_0302afternoon_0008_0.jpg 2", "outside"),
    ("0002/0002_077_02_0302afternoon_0008_0.jpg 2", "does not exist"),
    ("0002/0002_000_02_0302afternoon_0008_0.jpg", "expected"),
    ("0002/0002_000_02_0302afternoon_0008_0.jpg two", "expected"),
    ("0002/0002-000-02.jpg 2", "naming"),
])
def test_msmt17_bad_list_line_names_list_and_line(tmp_path, line, message):
    folder = make_msmt(tmp_path)
    outside = tmp_path / "outside" / "0002_000_02_0302afternoon_0008_0.jpg"
    write_jpeg(outside)  # exists, but outside the dataset: still refused
    good = "0002/0002_001_11_0302afternoon_0020_0.jpg 2"
    (folder / "list_gallery.txt").write_text(f"{good}\n\n{line}\n")
    with pytest.raises(DatasetError, match=message) as err:
        MSMT17(str(tmp_path), cfg_for(tmp_path))
    assert "list_gallery.txt line 3" in str(err.value)


def test_msmt17_missing_list_or_image_folder(tmp_path):
    folder = make_msmt(tmp_path)
    (folder / "list_val.txt").unlink()
    with pytest.raises(DatasetError, match="list_val.txt"):
        MSMT17(str(tmp_path), cfg_for(tmp_path))
    make_msmt(tmp_path / "b", test_dir="elsewhere")
    with pytest.raises(DatasetError, match="test"):
        MSMT17(str(tmp_path / "b"), cfg_for(tmp_path / "b"))


# --------------------------------------------------------------------------------------------------------------
# Images, registry, transforms, loaders


def test_read_image_errors_name_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    write_jpeg(good)
    img = read_image(str(good))
    assert img.mode == "RGB" and img.size == (8, 16)
    empty, garbage, truncated = tmp_path / "empty.jpg", tmp_path / "garbage.jpg", tmp_path / "truncated.jpg"
    empty.write_bytes(b"")
    garbage.write_bytes(b"not an image at all")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path in (tmp_path / "missing.jpg", empty, garbage, truncated):
        with pytest.raises(DatasetError) as err:
            read_image(str(path))
        assert path.name in str(err.value)


def test_registry_lists_datasets_and_rejects_unknown_names():
    assert {"Market1501", "MSMT17", "Synthetic"} <= set(DATASET_REGISTRY)
    with pytest.raises(ConfigError, match="Market1501"):
        DATASET_REGISTRY.get("Market1502")


def test_transforms_shapes_and_test_normalisation(tmp_path):
    cfg = cfg_for(tmp_path)
    img = Image.new("RGB", (8, 16), (255, 0, 128))
    test = build_test_transform(cfg)(img)
    assert test.shape == (3, 16, 8)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(cfg.INPUT.PIXEL_MEAN)) / torch.tensor(cfg.INPUT.PIXEL_STD)
    assert torch.allclose(test[:, 5, 4], expected, atol=1e-4)
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(ConfigError, match="INPUT.INTERPOLATION"):
        build_test_transform(cfg)


def test_train_loader_merges_datasets_with_offsets(tmp_path):
    make_market(tmp_path)
    make_msmt(tmp_path)
    cfg = cfg_for(tmp_path, NAMES=["Market1501", "MSMT17"])
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_INSTANCE = 2
    loader, ds = build_train_loader(cfg)
    assert ds.num_train_pids == 5 and ds.name == "Market1501+MSMT17"
    msmt = {(r.pid, r.camid) for r in ds.train if "MSMT17" in r.path}
    assert msmt == {(3, 6), (3, 8), (4, 20)}  # pids after Market's 3, cameras after Market's 6
    batch = next(iter(loader))
    assert set(batch) == {"images", "pids", "camids", "paths"}
    assert batch["images"].shape == (4, 3, 16, 8) and batch["images"].dtype == torch.float32
    assert batch["pids"].dtype == batch["camids"].dtype == torch.int64 and len(batch["paths"]) == 4
    assert len(batch["pids"].unique()) == 2


def test_train_loader_per_rank_batch_size(tmp_path):
    make_market(tmp_path)
    cfg = cfg_for(tmp_path)
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 8, 2
    loader, _ = build_train_loader(cfg, rank=1, world_size=2)
    assert loader.batch_size == 4 and all(len(b["paths"]) == 4 for b in loader)
    with pytest.raises(ConfigError, match="divisible"):
        build_train_loader(cfg, rank=0, world_size=3)


def test_test_loader_is_query_then_gallery(tmp_path):
    make_market(tmp_path)
    ts = build_test_set(cfg_for(tmp_path), "Market1501")
    loader, num_query, records = ts.loader, ts.num_query, ts.records
    assert num_query == 2 and len(records) == 5
    paths = [p for batch in loader for p in batch["paths"]]
    assert paths == [r.path for r in records]
    assert names(records[:2]) == ["0003_c1s1_001051_00.jpg", "0004_c2s1_000051_00.jpg"]


def test_unreadable_image_fails_clearly_or_is_skipped(tmp_path):
    folder = make_market(tmp_path)
    (folder / "bounding_box_test" / "0003_c2s1_000151_01.jpg").write_bytes(b"broken")
    loader = build_test_set(cfg_for(tmp_path), "Market1501").loader
    with pytest.raises(DatasetError, match="0003_c2s1_000151_01.jpg"):
        list(loader)
    ts = build_test_set(cfg_for(tmp_path, SKIP_UNREADABLE=True), "Market1501")
    loader, num_query, records = ts.loader, ts.num_query, ts.records
    assert num_query == 2 and len(records) == 4 and len(list(loader)) == 1
