"""The small person benchmarks evaluated over random splits: VIPeR, CUHK01, GRID, PRID (single-shot) and QMUL
i-LIDS. Each builds every split of its protocol (``splits``), as torchreid defines them; a split file torchreid
wrote beside the release (``splits.json``) is read when present, so both toolkits use the same splits, otherwise
the splits are drawn from ``DATASETS.SPLIT_SEED``."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, UNKNOWN_CAMERA, ImageRecord, Split
from .matfiles import int_vector, load_mat
from .scan import scan_images
from .splits import (NUM_SPLITS, SplitDataset, draw_identity_splits, lookup, map_split_file, peer_split_file,
                     read_identity_splits, split_records)

VIPER_LAYOUT = """\
  VIPeR/                        (or torchreid's viper/VIPeR/, with its viper/splits.json)
    cam_a/000_45.bmp ...        one image of each of the 632 identities per camera: <identity>_<angle>.bmp
    cam_b/000_90.bmp ..."""

CUHK01_LAYOUT = """\
  cuhk01/campus/                (torchreid's place, with its cuhk01/splits.json; or CUHK01/campus/)
    0001001.png ...             <identity:4><camera:3>.png, 971 identities x 4 images; cameras 1-2 are one view,
                                3-4 the other"""

GRID_LAYOUT = """\
  underground_reid/             (or torchreid's grid/underground_reid/)
    probe/0001_1_25004_107_32_130.jpeg ...     <identity:4>_<camera>_..., 250 identities
    gallery/0001_2_25023_116_134_128.jpeg ...  idem, plus 775 images of identity 0000 (never a match)
    features_and_partitions.mat                the 10 splits' training identities ('trainIdxAll')"""

PRID_LAYOUT = """\
  prid_2011/                    (or torchreid's prid2011/prid_2011/, with its prid2011/splits_single_shot.json)
    single_shot/cam_a/person_0001.png ...      385 persons
    single_shot/cam_b/person_0001.png ...      749 persons; persons 1-200 are seen by both cameras"""

PRID_SHARED = 200  # PRID 2011's persons 1-200 are the same people in both cameras (Hirzer et al. 2011)

ILIDS_LAYOUT = """\
  i-LIDS_Pedestrian/            (or torchreid's ilids/i-LIDS_Pedestrian/, with its ilids/splits.json)
    Persons/0001001.jpg ...     <identity:4><image:3>.jpg, 119 identities, 476 images"""


def _peer_key(path: str, depth: int = 2) -> Tuple[str, ...]:
    """The last ``depth`` parts of a path a peer's split file holds (``cam_a/000_45.bmp``): where the release
    lies may have changed since the file was written."""
    return tuple(Path(path).parts[-depth:])


def _records_of(entries: Sequence, index: Dict[Tuple[str, ...], ImageRecord], path: Path,
                depth: int) -> List[ImageRecord]:
    """The records of a peer split file's ``[path, pid, camid]`` entries, matched by their last path parts."""
    return [lookup(index, _peer_key(str(entry[0]), depth) if isinstance(entry, list) and entry else None, path,
                   "the image") for entry in entries]


def _two_view_splits(views: Dict[int, Tuple[List[ImageRecord], List[ImageRecord]]], folder: Path, peer_dir: str,
                     seed: int, depth: int) -> List[Split]:
    """VIPeR's and CUHK01's protocol: ten random halves of the identities, each used twice (view A as query and
    view B as gallery, then the reverse), 20 splits in torchreid's order; or torchreid's ``splits.json``, whose
    image paths are matched by their last ``depth`` parts."""
    file = peer_split_file(folder, "splits.json", peer_dir)
    if file is not None:
        index = {_peer_key(r.path, depth): r for pair in views.values() for view in pair for r in view}
        return map_split_file(file, ("train", "query", "gallery"), None, lambda s: split_records(
            *(_records_of(s[k], index, file, depth) for k in ("train", "query", "gallery"))))
    splits = []
    for train_ids, test_ids in draw_identity_splits(list(views), len(views) // 2, NUM_SPLITS, seed):
        train = [r for i in train_ids for view in views[i] for r in view]
        view_a = [r for i in test_ids for r in views[i][0]]
        view_b = [r for i in test_ids for r in views[i][1]]
        splits += [split_records(train, view_a, view_b), split_records(train, view_b, view_a)]
    return splits


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class VIPeR(SplitDataset):
    """VIPeR (Gray et al. PETS 2007): 632 identities, one image per camera; 316 train and 316 test identities, 10
    random halves x 2 directions (query camera A / gallery camera B, then the reverse) = 20 splits."""

    FOLDERS = ("VIPeR", "viper/VIPeR")
    LAYOUT = VIPER_LAYOUT
    MARKERS = ("cam_a", "cam_b")
    PATTERN = re.compile(r"(\d{1,9})_\d+\.bmp", re.ASCII)
    NAMING = "VIPeR's naming <identity>_<angle>.bmp, e.g. 000_45.bmp"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        views: Dict[int, Tuple[List[ImageRecord], List[ImageRecord]]] = {}
        for camid, camera in enumerate(self.MARKERS):
            for path, match in scan_images(folder / camera, self.PATTERN, self.NAMING, self.LAYOUT):
                views.setdefault(int(match.group(1)), ([], []))[camid].append(ImageRecord(str(path),
                                                                                        int(match.group(1)), camid))
        one_view = [i for i, pair in views.items() if not (pair[0] and pair[1])]
        if one_view:
            camera = self.MARKERS[1] if views[one_view[0]][0] else self.MARKERS[0]
            raise DatasetError(f"VIPeR identity {one_view[0]} has no image in {str(folder / camera)!r} (and "
                               f"{len(one_view) - 1} more identities are seen by one camera only); every identity "
                               f"has one image per camera in the release.")
        super().__init__(folder, cfg, _two_view_splits(views, folder, "viper", cfg.DATASETS.SPLIT_SEED, depth=2))


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class CUHK01(SplitDataset):
    """CUHK01 (Li et al. ACCV 2012): 971 identities, two images in each of two views (cameras 1-2 are view A,
    3-4 view B); 485 train identities, 10 random halves x 2 directions = 20 splits, as VIPeR."""

    FOLDERS = ("cuhk01/campus", "CUHK01/campus")
    LAYOUT = CUHK01_LAYOUT
    PATTERN = re.compile(r"(\d{4})(\d{3})\.png", re.ASCII)
    NAMING = "CUHK01's naming <identity:4><camera:3>.png with cameras 001-004, e.g. 0001001.png"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        views: Dict[int, Tuple[List[ImageRecord], List[ImageRecord]]] = {}
        for path, match in scan_images(folder, self.PATTERN, self.NAMING, self.LAYOUT):
            pid, camera = int(match.group(1)), int(match.group(2))
            if not 1 <= camera <= 4:
                raise DatasetError(f"{str(path)!r}: camera {camera}; CUHK01's cameras are 001-004 ({self.NAMING}).")
            view = (camera - 1) // 2
            views.setdefault(pid, ([], []))[view].append(ImageRecord(str(path), pid, view))
        super().__init__(folder, cfg, _two_view_splits(views, folder, "cuhk01", cfg.DATASETS.SPLIT_SEED, depth=1))


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class GRID(SplitDataset):
    """GRID (Loy et al. CVPR 2009): 250 identities seen in probe/ and gallery/, plus 775 gallery-only images of
    identity 0 (distractors); the release's 10 splits of 125 training identities (``trainIdxAll``). Query = the
    test identities' probe images, gallery = their gallery images and every distractor."""

    FOLDERS = ("underground_reid", "grid/underground_reid")
    LAYOUT = GRID_LAYOUT
    MARKERS = ("probe", "gallery", "features_and_partitions.mat")
    PATTERN = re.compile(r"(\d{1,9})_(\d{1,9})_[\d_]+\.jpeg", re.ASCII)
    NAMING = "GRID's naming <identity:4>_<camera>_<...>.jpeg, e.g. 0001_1_25004_107_32_130.jpeg"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        probe, gallery = self._images(folder / "probe"), self._images(folder / "gallery")
        splits = []
        for train_ids in self._train_ids(folder / "features_and_partitions.mat"):
            splits.append(split_records([r for r in probe + gallery if r.pid in train_ids],
                                        [r for r in probe if r.pid not in train_ids],
                                        [r for r in gallery if r.pid not in train_ids]))
        super().__init__(folder, cfg, splits)

    def _images(self, folder: Path) -> List[ImageRecord]:
        records = []
        for path, match in scan_images(folder, self.PATTERN, self.NAMING, self.LAYOUT):
            if int(match.group(2)) < 1:
                raise DatasetError(f"{str(path)!r}: camera 0; GRID's cameras are numbered from 1 ({self.NAMING}).")
            records.append(ImageRecord(str(path), int(match.group(1)), int(match.group(2)) - 1))
        return records

    def _train_ids(self, path: Path) -> List[set]:
        """The training identities of each split: the third field of each of ``trainIdxAll``'s ten structs (the
        field torchreid reads)."""
        cells = np.asarray(load_mat(path, ("trainIdxAll",), self.LAYOUT)["trainIdxAll"], dtype=object).ravel()
        splits = []
        for cell in cells:
            try:
                record = np.asarray(cell).ravel()[0]
                splits.append(set(int_vector(record[2], path, "a trainIdxAll entry").tolist()))
            except (IndexError, TypeError, ValueError):
                raise DatasetError(f"{path}: 'trainIdxAll' should hold one struct per split whose third field lists "
                                   f"the training identities; got {type(cell).__name__}.") from None
        if len(splits) != NUM_SPLITS:
            raise DatasetError(f"{path}: 'trainIdxAll' holds {len(splits)} splits, the release {NUM_SPLITS}.")
        return splits


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class PRID(SplitDataset):
    """PRID 2011, single-shot images (Hirzer et al. SCIA 2011): persons 1-200 are seen by both cameras (higher
    numbers are different people in each camera); they are halved at random, 10 times; query = camera A's images
    of the test half, gallery = camera B's images of the test half and of every other person of camera B (as
    torchreid; camera A's other persons are not used). torchreid's ``splits_single_shot.json`` is read when
    present."""

    FOLDERS = ("prid_2011", "prid2011/prid_2011")
    LAYOUT = PRID_LAYOUT
    MARKERS = ("single_shot", "multi_shot")
    PATTERN = re.compile(r"person_(\d{1,9})\.png", re.ASCII)
    NAMING = "PRID's naming person_<number:4>.png, e.g. person_0001.png"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        cameras = [{int(m.group(1)): ImageRecord(str(p), int(m.group(1)), camid)
                    for p, m in scan_images(folder / "single_shot" / cam, self.PATTERN, self.NAMING, self.LAYOUT)}
                   for camid, cam in enumerate(("cam_a", "cam_b"))]
        shared = sorted(i for i in set(cameras[0]) & set(cameras[1]) if i <= PRID_SHARED)
        only_b = [cameras[1][i] for i in sorted(set(cameras[1]) - set(shared))]
        file = peer_split_file(folder, "splits_single_shot.json", "prid2011")
        if file is not None:
            drawn = read_identity_splits(file, shared, "the person")
        else:
            drawn = draw_identity_splits(shared, len(shared) // 2, NUM_SPLITS, cfg.DATASETS.SPLIT_SEED)
        splits = [split_records([cameras[c][i] for i in train for c in (0, 1)], [cameras[0][i] for i in test],
                                [cameras[1][i] for i in test] + only_b) for train, test in drawn]
        super().__init__(folder, cfg, splits)


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class iLIDS(SplitDataset):  # noqa: N801 - the dataset's name
    """QMUL i-LIDS (Zheng et al. BMVC 2009): 119 identities, 476 images; 59 train identities, and for each test
    identity two random images, one query and one gallery; 10 splits. The file names carry no camera (the last
    three digits number the identity's images), so cameras are unknown and the evaluation removes only the
    query's own image. torchreid's ``splits.json`` is read when present."""

    FOLDERS = ("i-LIDS_Pedestrian", "ilids/i-LIDS_Pedestrian")
    LAYOUT = ILIDS_LAYOUT
    MARKERS = ("Persons",)
    PATTERN = re.compile(r"(\d{4})(\d{3})\.jpg", re.ASCII)
    NAMING = "i-LIDS's naming <identity:4><image:3>.jpg, e.g. 0001001.jpg"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        images: Dict[int, List[ImageRecord]] = {}
        for path, match in scan_images(folder / "Persons", self.PATTERN, self.NAMING, self.LAYOUT):
            images.setdefault(int(match.group(1)), []).append(ImageRecord(str(path), int(match.group(1)),
                                                                          UNKNOWN_CAMERA))
        few = [i for i, rs in images.items() if len(rs) < 2]
        if few:
            raise DatasetError(f"i-LIDS identity {few[0]} has one image in {str(folder / 'Persons')!r}; the protocol "
                               f"needs two per identity (a query and a gallery image), as the release has.")
        file = peer_split_file(folder, "splits.json", "ilids")
        if file is not None:
            index = {Path(r.path).name: r for rs in images.values() for r in rs}
            splits = map_split_file(file, ("train", "query", "gallery"), None, lambda s: split_records(
                *([lookup(index, name, file, "the image") for name in s[k]] for k in ("train", "query", "gallery"))))
        else:
            splits = self._draw(images, cfg.DATASETS.SPLIT_SEED)
        super().__init__(folder, cfg, splits)

    @staticmethod
    def _draw(images: Dict[int, List[ImageRecord]], seed: int) -> List[Split]:
        rng = np.random.default_rng(seed)
        ids = sorted(images)
        splits = []
        for _ in range(NUM_SPLITS):
            order = rng.permutation(len(ids))
            train_ids, test_ids = sorted(ids[i] for i in order[:len(ids) // 2]), sorted(ids[i] for i in
                                                                                        order[len(ids) // 2:])
            pairs = [rng.choice(len(images[i]), 2, replace=False) for i in test_ids]
            splits.append(split_records([r for i in train_ids for r in images[i]],
                                        [images[i][q] for i, (q, _) in zip(test_ids, pairs)],
                                        [images[i][g] for i, (_, g) in zip(test_ids, pairs)]))
        return splits
