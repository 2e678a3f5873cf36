"""The deep metric learning benchmarks (CUB200, Cars196, SOP, InShop) on generated trees in the published layouts:
splits by class, leave-one-out test sets, errors naming the file; pytorch-metric-learning's own dataset classes give
the same images and class grouping."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List

import numpy as np
import pytest
from PIL import Image

from reid.config import get_cfg
from reid.data import build_dataset
from reid.data.datasets import ImageRecord
from reid.data.datasets.base import UNKNOWN_CAMERA
from reid.utils.errors import DatasetError


def write_image(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (len(path.name) * 7 % 256, 90, 30)).save(path)
    return str(path)


def load(root: Path, entry: str):
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(root)
    return build_dataset(cfg, entry)


def groups(records: Iterable[ImageRecord]) -> set:
    """The class grouping of records as a set of frozensets of paths (independent of class numbering)."""
    by_class: Dict[int, set] = {}
    for r in records:
        by_class.setdefault(r.pid, set()).add(r.path)
    return {frozenset(paths) for paths in by_class.values()}


def pairs(paths: Iterable[str], labels: Iterable[int]) -> set:
    return {(str(Path(p)), int(label)) for p, label in zip(paths, labels)}


# -- generated trees in the published layouts ----------------------------------------------------------------------

CUB_CLASSES = [1, 2, 100, 101, 150, 200]


def make_cub(root: Path, folder: str = "CUB_200_2011") -> Path:
    base = root / folder
    images, labels, image_id = [], [], 1
    for c in CUB_CLASSES:
        for k in range(c % 3 + 2):
            rel = f"{c:03d}.Bird_{c}/Bird_{c}_{k:04d}_{image_id}.jpg"
            write_image(base / "images" / rel)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            image_id += 1
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    return base


CAR_NAMES = [f"Make {i} Model {2000 + i % 13}" for i in range(1, 197)]
CAR_NAMES[98] = "Ram C/V Cargo Van Minivan 2012"  # class 99: '/' becomes '-' in its folder name
CAR_IMAGES = {1: 2, 5: 3, 98: 2, 99: 3, 150: 2, 196: 4}  # class -> images


def make_cars_folders(root: Path) -> Path:
    """pytorch-metric-learning's class-folder copy: each class split over the train and test folders."""
    base = root / "Cars196"
    base.mkdir(parents=True)
    (base / "names.csv").write_text("\n".join(CAR_NAMES) + "\n")
    rows: Dict[str, List[str]] = {"train": [], "test": []}
    n = 1
    for c, count in CAR_IMAGES.items():
        for k in range(count):
            split = "train" if k % 2 == 0 else "test"
            name = f"{len(rows[split]) + 1:05d}.jpg"
            write_image(base / "car_data" / "car_data" / split / CAR_NAMES[c - 1].replace("/", "-") / name)
            rows[split].append(f"{name},{n},{n + 1},{n + 40},{n + 30},{c}")
            n += 1
    for split, lines in rows.items():
        (base / f"anno_{split}.csv").write_text("\n".join(lines) + "\n")
    return base


def make_cars_release(root: Path) -> Path:
    """The original release: cars_annos.mat (a MATLAB struct array) and car_ims/."""
    from scipy.io import savemat

    base = root / "Cars196"
    entries = [(c, k) for c, count in CAR_IMAGES.items() for k in range(count)]
    annotations = np.zeros((1, len(entries)), dtype=[("relative_im_path", "O"), ("bbox_x1", "O"), ("class", "O"),
                                                     ("test", "O")])
    for i, (c, k) in enumerate(entries):
        rel = f"car_ims/{i + 1:06d}.jpg"
        write_image(base / rel)
        annotations[0, i] = (rel, np.array([[10]]), np.array([[c]], dtype=np.uint8), np.array([[k % 2]]))
    names = np.empty((1, len(CAR_NAMES)), dtype=object)
    names[0, :] = CAR_NAMES
    savemat(str(base / "cars_annos.mat"), {"annotations": annotations, "class_names": names})
    return base


SOP_SPLITS = {"train": [(1, 1, "bicycle_final"), (2, 1, "bicycle_final"), (11318, 4, "chair_final")],
              "test": [(11319, 1, "bicycle_final"), (11320, 12, "toaster_final"), (22634, 12, "toaster_final")]}


def make_sop(root: Path) -> Path:
    base = root / "Stanford_Online_Products"
    image_id = 1
    for split, classes in SOP_SPLITS.items():
        lines = ["image_id class_id super_class_id path"]
        for class_id, super_id, folder in classes:
            for k in range(class_id % 3 + 2):
                rel = f"{folder}/{class_id}{k:03d}_{k}.JPG"
                write_image(base / rel)
                lines.append(f"{image_id} {class_id} {super_id} {rel}")
                image_id += 1
        (base / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return base


INSHOP = [("train", "id_00000001", 3), ("train", "id_00000010", 2), ("query", "id_00000002", 2),
          ("gallery", "id_00000002", 3), ("query", "id_00000007", 1), ("gallery", "id_00000007", 2),
          ("gallery", "id_00000009", 2)]


def make_inshop(root: Path, folder: str = "InShop") -> Path:
    base = root / folder
    lines = []
    for split, item, count in INSHOP:
        for k in range(count):
            rel = f"img/WOMEN/Dresses/{item}/{k + (10 if split == 'gallery' else 0):02d}_1_front.jpg"
            write_image(base / rel)
            lines.append(f"{rel} {item} {split}")
    (base / "list_eval_partition.txt").write_text(f"{len(lines)}\nimage_name item_id evaluation_status\n"
                                                  + "\n".join(lines) + "\n")
    return base


# -- parsing ---------------------------------------------------------------------------------------------------


def check_leave_one_out(ds, train_classes: int, test_classes: List[int]) -> None:
    assert ds.query is ds.gallery, "CUB / Cars / SOP test each image against all the others"
    assert type(ds).LEAVE_ONE_OUT
    assert sorted({r.pid for r in ds.train}) == list(range(train_classes))
    assert sorted({r.pid for r in ds.query}) == test_classes
    assert {r.camid for r in ds.train + ds.query} == {UNKNOWN_CAMERA}
    assert not {r.path for r in ds.train} & {r.path for r in ds.query}


def test_cub200_splits_classes_1_100_and_101_200(tmp_path):
    make_cub(tmp_path)
    ds = load(tmp_path, "CUB200")
    check_leave_one_out(ds, 3, [101, 150, 200])
    assert len(ds.train) == sum(c % 3 + 2 for c in CUB_CLASSES[:3])
    assert {r.identity_name for r in ds.query} == {"101.Bird_101", "150.Bird_150", "200.Bird_200"}
    assert load(tmp_path, f"CUB200:{tmp_path / 'CUB_200_2011'}").num_train_pids == 3


@pytest.mark.parametrize("make", [make_cars_folders, make_cars_release])
def test_cars196_both_layouts_split_classes_1_98_and_99_196(tmp_path, make):
    if make is make_cars_release:
        pytest.importorskip("scipy")
    make(tmp_path)
    ds = load(tmp_path, "Cars196")
    check_leave_one_out(ds, 3, [99, 150, 196])
    assert len(ds.query) == CAR_IMAGES[99] + CAR_IMAGES[150] + CAR_IMAGES[196]
    assert {r.identity_name for r in ds.query if r.pid == 99} == {"Ram C/V Cargo Van Minivan 2012"}


def test_cars196_layouts_agree(tmp_path):
    pytest.importorskip("scipy")
    a, b = make_cars_folders(tmp_path / "a"), make_cars_release(tmp_path / "b")
    sizes = [sorted((r.pid, r.identity_name) for r in load(base.parent, "Cars196").query) for base in (a, b)]
    assert sizes[0] == sizes[1]


def test_sop_lists_fix_the_split(tmp_path):
    make_sop(tmp_path)
    ds = load(tmp_path, "SOP")
    check_leave_one_out(ds, 3, [11319, 11320, 22634])
    assert all(Path(r.path).suffix == ".JPG" for r in ds.query)


def test_inshop_query_and_gallery_share_item_numbers(tmp_path):
    make_inshop(tmp_path)
    ds = load(tmp_path, "InShop")
    assert not type(ds).LEAVE_ONE_OUT and ds.query is not ds.gallery
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (5, 3, 7)
    assert {r.pid: r.identity_name for r in ds.query + ds.gallery} == {0: "id_00000002", 1: "id_00000007",
                                                                      2: "id_00000009"}
    assert {r.pid for r in ds.train} == {0, 1}
    release = make_inshop(tmp_path / "release", "In-shop Clothes Retrieval Benchmark")
    (release / "Eval").mkdir()
    (release / "list_eval_partition.txt").rename(release / "Eval" / "list_eval_partition.txt")
    (release / "Img").mkdir()
    (release / "img").rename(release / "Img" / "img")
    assert len(load(tmp_path / "release", "InShop").gallery) == 7


# -- bad layouts: one message naming the file ---------------------------------------------------------------------


def _replace(file: Path, old: str, new: str) -> None:
    file.write_text(file.read_text().replace(old, new, 1))


@pytest.mark.parametrize("edit, message", [
    (lambda b: (b / "images.txt").unlink(), "images.txt"),
    (lambda b: _replace(b / "image_class_labels.txt", "1 1\n", "1 one\n"), "image_class_labels.txt line 1"),
    (lambda b: _replace(b / "image_class_labels.txt", "1 1\n", "1 201\n"), "not a class number 1..200"),
    (lambda b: _replace(b / "image_class_labels.txt", "1 1\n", ""), "no class for image id 1"),
    (lambda b: _replace(b / "images.txt", "1 001", "1 ../001"), "images.txt line 1"),
    (lambda b: _replace(b / "images.txt", "2 001", "1 001"), "image id 1 repeats"),
    (lambda b: next((b / "images").rglob("*.jpg")).unlink(), "does not exist"),
])
def test_cub200_bad_layout_names_the_file(tmp_path, edit, message):
    edit(make_cub(tmp_path))
    with pytest.raises(DatasetError, match=message):
        load(tmp_path, "CUB200")


def _garbage_mat(base: Path) -> None:
    (base / "cars_annos.mat").write_bytes(b"not a MATLAB file")


def _mat(base: Path, **variables) -> None:
    from scipy.io import savemat

    savemat(str(base / "cars_annos.mat"), variables)


def _no_class_field(base: Path) -> None:
    annotations = np.zeros((1, 1), dtype=[("relative_im_path", "O")])
    annotations[0, 0] = ("car_ims/000001.jpg",)
    _mat(base, annotations=annotations, class_names=np.array([["Acura"]], dtype=object))


@pytest.mark.parametrize("entry, make, edit, message", [
    ("Cars196", make_cars_folders, lambda b: _replace(b / "anno_test.csv", ",99\n", ",197\n"),
     "anno_test.csv line 4: class 197"),
    ("Cars196", make_cars_folders, _garbage_mat, "cars_annos.mat: not a readable MATLAB file"),
    ("Cars196", make_cars_folders, lambda b: _mat(b, class_names=np.zeros(2)), "cars_annos.mat: no variable annotations"),
    ("Cars196", make_cars_folders, _no_class_field, "cars_annos.mat: not the release's annotation file .*no field of name class"),
    ("SOP", make_sop, lambda b: _replace(b / "Ebay_test.txt", "11320 12", "11320"), "Ebay_test.txt line 4: 3 field"),
    ("SOP", make_sop, lambda b: (b / "Ebay_train.txt").unlink(), "Missing file .*Ebay_train.txt"),
    ("InShop", make_inshop, lambda b: _replace(b / "list_eval_partition.txt", " query", " probe"),
     "list_eval_partition.txt line 8"),
])
def test_bad_layouts_of_cars_sop_inshop_name_the_file(tmp_path, entry, make, edit, message):
    with pytest.raises(DatasetError, match="Dataset folder not found: looked for "):
        load(tmp_path, entry)
    edit(make(tmp_path))
    with pytest.raises(DatasetError, match=message):
        load(tmp_path, entry)


# -- pytorch-metric-learning's datasets on the same trees -------------------------------------------------------


@pytest.fixture(scope="module")
def pml_datasets():
    from tests.support.peer_models import require

    require("pytorch_metric_learning")
    from pytorch_metric_learning import datasets

    return datasets


@pytest.mark.parametrize("entry, make, peer, folder", [
    ("CUB200", make_cub, "CUB", ""),
    ("Cars196", make_cars_folders, "Cars196", "Cars196"),
    ("SOP", make_sop, "StanfordOnlineProducts", ""),
])
def test_same_images_and_classes_as_pml(tmp_path, pml_datasets, entry, make, peer, folder):
    """Test split: the same (path, class number) pairs; train split: the same grouping of paths into classes."""
    make(tmp_path)
    ds = load(tmp_path, entry)
    train, test = (getattr(pml_datasets, peer)(str(tmp_path / folder), split=split, download=False)
                   for split in ("train", "test"))
    assert pairs([r.path for r in ds.query], [r.pid for r in ds.query]) == pairs(test.paths, test.labels)
    assert groups(ds.train) == groups(ImageRecord(p, label, -1) for p, label in zip(train.paths, train.labels))
    assert len(ds.train) == len(train.paths) and len(ds.query) == len(test.paths)


# -- the synthetic retrieval variant ------------------------------------------------------------------------------


def test_synthetic_retrieval_is_generated_deterministically_and_tested_leave_one_out(tmp_path):
    import torch

    from reid.config import load_cfg
    from reid.data import read_image
    from reid.evaluation.retrieval import evaluate_retrieval

    opts = ["DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "4", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "12",
            "DATASETS.SYNTHETIC.IMAGES_PER_ID", "5", "DATASETS.SYNTHETIC.IMAGE_SIZE", "[32, 16]"]
    sets = [build_dataset(load_cfg(None, ["DATASETS.ROOT", str(tmp_path / name), *opts]), "SyntheticRetrieval")
            for name in ("a", "b")]
    ds = sets[0]
    check_leave_one_out(ds, 4, list(range(5, 17)))
    assert [Path(r.path).read_bytes() for r in ds.query] == [Path(r.path).read_bytes() for r in sets[1].query]
    assert (tmp_path / "a" / "synthetic_retrieval" / "generation.json").is_file()
    # Raw pixels already beat chance (a random ranking finds a same-class image first 4 times in 59).
    feats = torch.stack([torch.from_numpy(np.array(read_image(r.path), dtype=np.float32)).flatten()
                         for r in ds.query])
    assert evaluate_retrieval(feats, [r.pid for r in ds.query], (1,))["recall@1"] > 2 * 4 / 59
    changed = build_dataset(load_cfg(None, ["DATASETS.ROOT", str(tmp_path / "a"), *opts[:-2],
                                            "DATASETS.SYNTHETIC.IMAGE_SIZE", "[24, 16]"]), "SyntheticRetrieval")
    assert Image.open(changed.query[0].path).size == (16, 24)  # other parameters: drawn again
