"""Tiny copies of the standard re-ID releases, written in their published layouts (tiny images; .mat files written
with SciPy or h5py as the releases have them), at torchreid's places under a root: ``<root>/viper/VIPeR/...``.
Shared by the parser tests (tests/data/test_data_standard.py) and the comparisons with the peers' parsers
(tests/data/test_data_peers.py). Each writer returns the release folder it wrote."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image


def image(path: Path, seed: int = 0, size: Tuple[int, int] = (4, 8)) -> None:
    """A tiny image (width x height) whose colour depends on ``seed``; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)).save(path)


def images(folder: Path, names: Sequence[str]) -> None:
    for i, name in enumerate(names):
        image(folder / name, i)


def write_duke(root: Path) -> Path:
    base = root / "dukemtmc-reid" / "DukeMTMC-reID"
    images(base / "bounding_box_train", ["0001_c1_f0000101.jpg", "0001_c2_f0000201.jpg", "0002_c3_f0000301.jpg",
                                         "0002_c8_f0000401.jpg", "0005_c5_f0000501.jpg"])
    images(base / "query", ["0003_c1_f0001001.jpg", "0004_c7_f0001101.jpg"])
    images(base / "bounding_box_test", ["0003_c2_f0001201.jpg", "0003_c4_f0001301.jpg", "0004_c6_f0001401.jpg",
                                        "0009_c1_f0001501.jpg"])
    return base


def write_market(root: Path) -> Path:
    base = root / "market1501" / "Market-1501-v15.09.15"
    images(base / "bounding_box_train", ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg",
                                         "0007_c3s2_000101_01.jpg", "-1_c1s1_000011_01.jpg"])
    images(base / "query", ["0003_c1s1_001051_00.jpg", "0004_c2s1_000051_00.jpg"])
    images(base / "bounding_box_test", ["0003_c2s1_000151_01.jpg", "0004_c6s1_000151_01.jpg",
                                        "0000_c1s1_000001_01.jpg", "-1_c3s1_000401_03.jpg"])
    images(base / "images", ["0000_c1s1_100001_00.jpg", "0000_c4s2_100002_00.jpg", "0000_c6s3_100003_00.jpg"])
    return base


def write_veri(root: Path) -> Path:
    base = root / "veri"
    images(base / "image_train", ["0001_c001_00016450_0.jpg", "0001_c012_00016460_0.jpg", "0003_c020_00000010_1.jpg"])
    images(base / "image_query", ["0002_c002_00030600_0.jpg", "0004_c011_00030610_0.jpg"])
    images(base / "image_test", ["0002_c003_00030605_1.jpg", "0004_c002_00030615_0.jpg", "0004_c011_00030620_0.jpg"])
    return base


# --------------------------------------------------------------------------------------------------------------
# CUHK03: cuhk-03.mat (MATLAB v7.3, HDF5 with object references) and the new protocol's config files (v5)

CUHK03_PEOPLE = {1: 3, 2: 3}  # camera pair -> persons
CUHK03_EMPTY = {"detected": {(1, 2, 4), (2, 1, 9)}, "labeled": {(1, 3, 0), (2, 2, 7)}}  # (pair, person, cell)
CUHK03_TESTSETS = [[(1 + k % 2, 1 + k % 3), (2 - k % 2, 1 + (k + 1) % 3)] for k in range(20)]


def cuhk03_pixels(kind: str, pair: int, person: int, cell: int) -> np.ndarray:
    """The (H, W, 3) uint8 image stored in cell ``cell`` of a person; None for an empty cell."""
    if (pair, person, cell) in CUHK03_EMPTY[kind]:
        return None
    value = (pair * 50 + person * 20 + cell * 3 + (kind == "labeled") * 7) % 256
    pixels = np.full((6 + cell % 3, 4, 3), value, dtype=np.uint8)
    pixels[0, 0] = (cell, person, pair)
    return pixels


def cuhk03_names(kind: str) -> List[Tuple[int, str]]:
    """(identity 1.., file name) of every image of ``kind``, in the file's order, named as the peers name them."""
    names, identity = [], 0
    for pair, persons in CUHK03_PEOPLE.items():
        for person in range(1, persons + 1):
            identity += 1
            for cell in range(10):
                if cuhk03_pixels(kind, pair, person, cell) is not None:
                    names.append((identity, f"{pair}_{person:03d}_{1 if cell < 5 else 2}_{cell + 1:02d}.png"))
    return names


def write_cuhk03(root: Path) -> Path:
    import h5py
    from scipy.io import savemat

    base = root / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True)
    with h5py.File(base / "cuhk03_release" / "cuhk-03.mat", "w") as f:
        count = iter(range(10**6))

        def store(data: np.ndarray):
            name = f"#refs#/{next(count)}"
            f.create_dataset(name, data=data)
            return f[name].ref

        for kind in ("detected", "labeled"):
            pairs = []
            for pair, persons in CUHK03_PEOPLE.items():
                cells = np.empty((10, persons), dtype=h5py.ref_dtype)  # MATLAB's persons x 10, stored transposed
                for person in range(1, persons + 1):
                    for cell in range(10):
                        pixels = cuhk03_pixels(kind, pair, person, cell)
                        cells[cell, person - 1] = store(np.zeros(2, np.uint64) if pixels is None else pixels.T)
                pairs.append(store(cells))
            f.create_dataset(kind, data=np.array([pairs], dtype=h5py.ref_dtype))
        tests = [store(np.array(rows, dtype=np.float64).T) for rows in CUHK03_TESTSETS]
        f.create_dataset("testsets", data=np.array([tests], dtype=h5py.ref_dtype))
    for kind in ("detected", "labeled"):
        names = cuhk03_names(kind)
        labels = np.array([[i] for i, _ in names], dtype=np.float64)
        train = [k + 1 for k, (i, _) in enumerate(names) if i <= 3]
        seen, query, gallery = set(), [], []
        for k, (i, name) in enumerate(names):
            if i > 3:
                view = (i, name.split("_")[2])
                (gallery if view in seen else query).append(k + 1)
                seen.add(view)
        filelist = np.empty((len(names), 1), dtype=object)
        for k, (_, name) in enumerate(names):
            filelist[k, 0] = name
        savemat(base / f"cuhk03_new_protocol_config_{kind}.mat",
                {"filelist": filelist, "labels": labels, "train_idx": np.array(train, np.uint16)[:, None],
                 "query_idx": np.array(query, np.uint16)[:, None],
                 "gallery_idx": np.array(gallery, np.uint16)[:, None]})  # the release's indices are integers
    return base


# --------------------------------------------------------------------------------------------------------------
# The small random-split benchmarks


def write_viper(root: Path, identities: int = 8) -> Path:
    base = root / "viper" / "VIPeR"
    images(base / "cam_a", [f"{i:03d}_45.bmp" for i in range(identities)])
    images(base / "cam_b", [f"{i:03d}_90.bmp" for i in range(identities)])
    return base


def write_cuhk01(root: Path, identities: int = 6) -> Path:
    base = root / "cuhk01" / "campus"
    images(base, [f"{i:04d}{c:03d}.png" for i in range(1, identities + 1) for c in range(1, 5)])
    return base


def write_grid(root: Path, distractors: int = 6) -> Path:
    """GRID as torchreid needs it: 250 identities (125 train ids per split) plus distractors of identity 0."""
    from scipy.io import savemat

    base = root / "grid" / "underground_reid"
    images(base / "probe", [f"{i:04d}_{1 + i % 8}_25004_107_32_130.jpeg" for i in range(1, 251)])
    images(base / "gallery", [f"{i:04d}_{1 + (i + 3) % 8}_25023_116_134_128.jpeg" for i in range(1, 251)]
           + [f"0000_{1 + k % 8}_{30000 + k}_1_2_3.jpeg" for k in range(distractors)])
    rng = np.random.default_rng(5)
    cells = np.empty((1, 10), dtype=object)
    for k in range(10):
        train = np.sort(rng.permutation(250)[:125] + 1)
        cells[0, k] = {"idxProbe": np.arange(1, 3.0)[None], "idxGallery": np.arange(1, 3.0)[None],
                       "idxTrain": train[None].astype(float)}
    savemat(base / "features_and_partitions.mat", {"trainIdxAll": cells})
    return base


def write_prid_single(root: Path, cam_a: int = 385, cam_b: int = 749) -> Path:
    base = root / "prid2011" / "prid_2011"
    images(base / "single_shot" / "cam_a", [f"person_{i:04d}.png" for i in range(1, cam_a + 1)])
    images(base / "single_shot" / "cam_b", [f"person_{i:04d}.png" for i in range(1, cam_b + 1)])
    return base


def write_ilids(root: Path, identities: int = 119, per_id: int = 4) -> Path:
    base = root / "ilids" / "i-LIDS_Pedestrian"
    images(base / "Persons", [f"{i:04d}{k:03d}.jpg" for i in range(1, identities + 1) for k in range(1, per_id + 1)])
    return base


def write_cuhk02(root: Path) -> Path:
    base = root / "cuhk02" / "Dataset"
    for p, persons in enumerate((3, 2, 2, 2, 3), start=1):
        for cam in (1, 2):
            images(base / f"P{p}" / f"cam{cam}", [f"{i:03d}_{k}.png" for i in range(1, persons + 1)
                                                  for k in (2 * cam - 1, 2 * cam)])
    return base


def write_sensereid(root: Path) -> Path:
    base = root / "sensereid" / "SenseReID"
    images(base / "test_probe", ["0000001_00.jpg", "0000002_01.jpg"])
    images(base / "test_gallery", ["0000001_03.jpg", "0000002_04.jpg", "0000002_05.jpg", "0000009_02.jpg"])
    return base


def write_cuhksysu(root: Path) -> Path:
    base = root / "cuhksysu" / "cropped_images"
    images(base, ["p1_s1.jpg", "p1_s3.jpg", "p12_s2.jpg", "p12_s9.jpg", "p5_s4.jpg"])
    return base


# --------------------------------------------------------------------------------------------------------------
# Vehicles


def write_vehicleid(root: Path) -> Path:
    base = root / "vehicleid"
    train = [(f"{k:07d}", k // 3) for k in range(1, 10)]
    test = [(f"{k:07d}", 100 + k % 4) for k in range(20, 36)]
    images(base / "image", [f"{name}.jpg" for name, _ in train + test])
    (base / "train_test_split").mkdir()
    (base / "train_test_split" / "train_list.txt").write_text("".join(f"{n} {v}\n" for n, v in train))
    (base / "train_test_split" / "test_list_800.txt").write_text("".join(f"{n} {v}\n" for n, v in test))
    return base


VERIWILD_CAMERAS = (3, 7, 12, 40)


def write_veriwild(root: Path) -> Path:
    base = root / "VERI-Wild"
    rows: Dict[str, List[Tuple[str, str]]] = {"train_list.txt": [], "test_3000_query.txt": [], "test_3000.txt": []}
    info = ["id/image;Camera ID;Time;Model;Type;Color"]
    k = 0
    for vid in range(1, 8):
        for n in range(3):
            k += 1
            name, camera = f"{k:06d}", VERIWILD_CAMERAS[(vid + n) % 4]
            image(base / "images" / f"{vid:05d}" / f"{name}.jpg", k)
            info.append(f"{vid:05d}/{name};{camera};2018-03-11 17:13:06;Audi;SUV;white")
            target = "train_list.txt" if vid <= 3 else "test_3000_query.txt" if n == 0 else "test_3000.txt"
            rows[target].append((f"{vid:05d}", name))
    (base / "train_test_split").mkdir()
    (base / "train_test_split" / "vehicle_info.txt").write_text("\n".join(info) + "\n")
    for file, entries in rows.items():
        (base / "train_test_split" / file).write_text("".join(f"{v}/{n}\n" for v, n in entries))
    return base


# --------------------------------------------------------------------------------------------------------------
# Video


def write_mars(root: Path) -> Path:
    """Two training identities, three test identities (one distractor 0000, one junk 00-1 tracklet)."""
    from scipy.io import savemat

    base = root / "mars"
    tracks = {"train": [(1, 1, 1, 3), (1, 3, 2, 2), (4, 2, 1, 4)],
              "test": [(2, 1, 1, 2), (2, 4, 2, 3), (3, 2, 1, 2), (3, 5, 3, 3), (0, 6, 1, 2), (-1, 1, 5, 2),
                       (2, 2, 4, 2)]}  # (identity, camera, tracklet, frames)
    for split, rows in tracks.items():
        names, info = [], []
        for pid, camera, tracklet, frames in rows:
            folder = f"{pid:04d}" if pid >= 0 else "00-1"
            start = len(names) + 1
            for f in range(1, frames + 1):
                name = f"{folder}C{camera}T{tracklet:04d}F{f:03d}.jpg"
                image(base / f"bbox_{split}" / folder / name, len(names))
                names.append(name)
            info.append([start, len(names), pid, camera])
        (base / "info").mkdir(exist_ok=True)
        (base / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        savemat(base / "info" / f"tracks_{split}_info.mat", {f"track_{split}_info": np.array(info, dtype=np.int32)})
    savemat(base / "info" / "query_IDX.mat", {"query_IDX": np.array([[1, 3]], dtype=np.int32)})
    return base


def write_ilidsvid(root: Path, persons: int = 300) -> Path:
    """iLIDS-VID as torchreid needs it: 300 persons (its split code asserts the number), 2 frames per tracklet."""
    from scipy.io import savemat

    base = root / "ilids-vid"
    for cam in (1, 2):
        for p in range(1, persons + 1):
            images(base / "i-LIDS-VID" / "sequences" / f"cam{cam}" / f"person{p:03d}",
                   [f"cam{cam}_person{p:03d}_{f:05d}.png" for f in (317, 318 + cam)])
    rng = np.random.default_rng(3)
    ls_set = np.stack([rng.permutation(persons) + 1 for _ in range(10)]).astype(float)
    (base / "train-test people splits").mkdir()
    savemat(base / "train-test people splits" / "train_test_splits_ilidsvid.mat", {"ls_set": ls_set})
    return base


def write_prid2011(root: Path, frames: Dict[int, Tuple[int, int]] = None) -> Path:
    """multi_shot/cam_a|cam_b/person_NNNN/NNNN.png; ``frames`` maps person -> (frames in A, frames in B), 0 = absent;
    also torchreid's splits_prid2011.json over persons 1-4."""
    frames = frames or {1: (3, 2), 2: (2, 2), 3: (2, 3), 4: (1, 2), 5: (2, 0), 6: (0, 2)}
    base = root / "prid2011" / "prid_2011"
    for p, counts in frames.items():
        for cam, count in zip(("cam_a", "cam_b"), counts):
            images(base / "multi_shot" / cam / f"person_{p:04d}", [f"{f:04d}.png" for f in range(1, count + 1)])
    splits = [{"train": ["person_0001", "person_0003"], "test": ["person_0002", "person_0004"]},
              {"train": ["person_0002", "person_0004"], "test": ["person_0001", "person_0003"]}]
    (root / "prid2011" / "splits_prid2011.json").write_text(json.dumps(splits))
    return base


def write_dukevideo(root: Path) -> Path:
    base = root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"
    layout = {"train": [(1, 1, 6, 3), (1, 2, 2, 2), (5, 1, 3, 2)], "query": [(2, 1, 1, 2), (3, 1, 4, 1)],
              "gallery": [(2, 2, 5, 3), (3, 2, 2, 2), (9, 1, 8, 2)]}  # (identity, tracklet, camera, frames)
    for split, rows in layout.items():
        for pid, tracklet, camera, count in rows:
            images(base / split / f"{pid:04d}" / f"{tracklet:04d}",
                   [f"{pid:04d}_C{camera}_F{f:04d}_X{30000 + f}.jpg" for f in range(1, count + 1)])
    return base
