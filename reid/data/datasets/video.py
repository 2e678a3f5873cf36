"""Video re-ID sets read from folders of frames: iLIDS-VID (Wang et al. ECCV 2014), PRID-2011 multi-shot
(Hirzer et al. SCIA 2011) and DukeMTMC-VideoReID (Wu et al. CVPR 2018). A record is a TrackletRecord (frames in
temporal order)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ReIDDataset, Split, TrackletRecord, relabel, require_nonempty
from .matfiles import int_vector, load_mat
from .random_splits import PRID_SHARED
from .scan import scan_images, subfolders
from .splits import (NUM_SPLITS, SplitDataset, draw_identity_splits, peer_split_file, read_identity_splits,
                     split_records)

ILIDSVID_LAYOUT = """\
  iLIDS-VID/                    (or torchreid's ilids-vid/)
    i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png ...   300 persons, one tracklet per camera
    i-LIDS-VID/sequences/cam2/person001/...
    train-test people splits/train_test_splits_ilidsvid.mat            'ls_set': the 10 splits of the release"""

PRID2011_LAYOUT = """\
  prid_2011/                    (or torchreid's prid2011/prid_2011/, with its prid2011/splits_prid2011.json)
    multi_shot/cam_a/person_0001/0001.png ...  385 persons
    multi_shot/cam_b/person_0001/0001.png ...  749 persons; persons 1-200 are seen by both cameras"""

DUKEVIDEO_LAYOUT = """\
  DukeMTMC-VideoReID/           (or torchreid's dukemtmc-vidreid/DukeMTMC-VideoReID/)
    train/0001/0001/0001_C6_F0001_X30823.jpg ...   <identity>/<tracklet>/<identity>_C<camera>_F<frame>_X<n>.jpg
    query/ ...                  one tracklet per test identity
    gallery/ ..."""

_PNG = re.compile(r"[^/]+\.png", re.ASCII)


def _frames(folder: Path, layout: str, pattern: re.Pattern = _PNG, naming: str = "<frame>.png") -> Tuple[str, ...]:
    """The frames of one tracklet folder, in name order; a folder without frames is an error naming it."""
    frames = tuple(str(p) for p, _ in scan_images(folder, pattern, naming, layout))
    if not frames:
        raise DatasetError(f"Tracklet folder {str(folder)!r} holds no frames. Expected layout:\n{layout}")
    return frames


def _two_camera_splits(tracklets: Dict[str, Tuple[TrackletRecord, TrackletRecord]],
                       drawn: Sequence[Tuple[Sequence[str], Sequence[str]]]) -> List[Split]:
    """iLIDS-VID's and PRID-2011's protocol: per split, both tracklets of the training persons train; the test
    persons' first-camera tracklets are the queries, their second-camera ones the gallery."""
    return [split_records([t for p in train for t in tracklets[p]], [tracklets[p][0] for p in test],
                          [tracklets[p][1] for p in test]) for train, test in drawn]


def _person_number(name: str, where: Path) -> int:
    digits = re.sub(r"\D", "", name)
    if not digits or len(digits) > 9:
        raise DatasetError(f"Person folder {str(where / name)!r}: expected a name with its number, e.g. person001.")
    return int(digits)


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class iLIDSVID(SplitDataset):  # noqa: N801 - the dataset's name
    """iLIDS-VID: 300 persons, one tracklet from each of two cameras; the release's 10 splits (``ls_set``: per split
    a permutation of the persons, the first 150 test and the last 150 train). Persons are numbered by their folder
    (person001 -> 1), ``ls_set`` indexes them in sorted order of camera 1's folders (as torchreid reads it)."""

    FOLDERS = ("iLIDS-VID", "ilids-vid")
    LAYOUT = ILIDSVID_LAYOUT
    MARKERS = ("i-LIDS-VID", "train-test people splits")

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        sequences = folder / "i-LIDS-VID" / "sequences"
        persons = subfolders(sequences / "cam1", self.LAYOUT)
        other = subfolders(sequences / "cam2", self.LAYOUT)
        if set(persons) != set(other):
            odd = sorted(set(persons) ^ set(other))[0]
            raise DatasetError(f"{str(sequences)!r}: person {odd!r} is in one camera's folder only; every iLIDS-VID "
                               f"person has a tracklet in cam1/ and cam2/.")
        tracklets = {p: tuple(TrackletRecord(_frames(sequences / cam / p, self.LAYOUT),
                                             _person_number(p, sequences / cam), c)
                              for c, cam in enumerate(("cam1", "cam2"))) for p in persons}
        path = folder / "train-test people splits" / "train_test_splits_ilidsvid.mat"
        ls_set = np.asarray(load_mat(path, ("ls_set",), self.LAYOUT)["ls_set"])
        if ls_set.ndim != 2 or ls_set.shape[1] != len(persons) or ls_set.shape[1] % 2:
            raise DatasetError(f"{path}: 'ls_set' should be a (splits, {len(persons)}) matrix of person indices; got "
                               f"shape {ls_set.shape}.")
        half = ls_set.shape[1] // 2
        drawn = []
        for row in ls_set:
            index = int_vector(row, path, "ls_set") - 1
            if index.min() < 0 or index.max() >= len(persons):
                raise DatasetError(f"{path}: 'ls_set' holds person indices outside 1..{len(persons)}.")
            drawn.append(([persons[i] for i in sorted(index[half:])], [persons[i] for i in sorted(index[:half])]))
        super().__init__(folder, cfg, _two_camera_splits(tracklets, drawn))


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class PRID2011(SplitDataset):
    """PRID-2011 multi-shot: persons 1-200, seen by both cameras, one tracklet each per camera; 10 random halves
    into train and test. torchreid's ``splits_prid2011.json`` (the 178 persons with long enough tracklets, Wang et al.
    ECCV 2014) is read when present; otherwise the splits are drawn from ``DATASETS.SPLIT_SEED`` among the persons
    with at least ``MIN_FRAMES`` frames in both cameras."""

    FOLDERS = ("prid_2011", "prid2011/prid_2011")
    LAYOUT = PRID2011_LAYOUT
    MARKERS = ("multi_shot", "single_shot")
    MIN_FRAMES = 21  # Wang et al. ECCV 2014 drop the persons with shorter tracklets

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        cameras = [folder / "multi_shot" / cam for cam in ("cam_a", "cam_b")]
        shared = sorted(p for p in set(subfolders(cameras[0], self.LAYOUT)) & set(subfolders(cameras[1], self.LAYOUT))
                        if _person_number(p, cameras[0]) <= PRID_SHARED)
        tracklets = {p: tuple(TrackletRecord(_frames(cam / p, self.LAYOUT), _person_number(p, cam), c)
                              for c, cam in enumerate(cameras)) for p in shared}
        file = peer_split_file(folder, "splits_prid2011.json", "prid2011")
        if file is not None:
            drawn = read_identity_splits(file, shared, "the person folder")
        else:
            long_enough = [p for p in shared if min(len(t.paths) for t in tracklets[p]) >= self.MIN_FRAMES]
            drawn = draw_identity_splits(long_enough, len(long_enough) // 2, NUM_SPLITS, cfg.DATASETS.SPLIT_SEED)
        super().__init__(folder, cfg, _two_camera_splits(tracklets, drawn))


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class DukeMTMCVideo(ReIDDataset):
    """DukeMTMC-VideoReID: ``<split>/<identity>/<tracklet>/`` folders of frames; frames ordered by their ``F``
    number, the camera read from their names. Train relabelled; gallery identities without a query are
    distractors."""

    FOLDERS = ("DukeMTMC-VideoReID", "dukemtmc-vidreid/DukeMTMC-VideoReID")
    LAYOUT = DUKEVIDEO_LAYOUT
    MARKERS = ("train", "query", "gallery")
    FRAME = re.compile(r"(\d{1,9})_C(\d{1,9})_F(\d{1,9})_X\d+\.jpg", re.ASCII)
    NAMING = "DukeMTMC-VideoReID's naming <identity>_C<camera>_F<frame>_X<n>.jpg, e.g. 0001_C6_F0001_X30823.jpg"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        train, query, gallery = (self._parse(folder / split) for split in self.MARKERS)
        require_nonempty(query, "query", folder / "query")
        require_nonempty(gallery, "gallery", folder / "gallery")
        super().__init__(type(self).__name__, str(folder), relabel(train), query, gallery)

    def _parse(self, split_dir: Path) -> List[TrackletRecord]:
        tracklets = []
        for person in subfolders(split_dir, self.LAYOUT):
            pid = _person_number(person, split_dir)
            for tracklet in subfolders(split_dir / person, self.LAYOUT):
                frames = scan_images(split_dir / person / tracklet, self.FRAME, self.NAMING, self.LAYOUT)
                if not frames:
                    raise DatasetError(f"Tracklet folder {str(split_dir / person / tracklet)!r} holds no frames.")
                keys = {(int(m.group(1)), int(m.group(2))) for _, m in frames}
                if len(keys) != 1 or next(iter(keys))[0] != pid or next(iter(keys))[1] < 1:
                    raise DatasetError(f"Tracklet folder {str(split_dir / person / tracklet)!r}: its frames should "
                                       f"all be of identity {pid} and one camera (from 1); their names give "
                                       f"{sorted(keys)[:3]}.")
                ordered = sorted(frames, key=lambda f: int(f[1].group(3)))
                tracklets.append(TrackletRecord(tuple(str(p) for p, _ in ordered), pid, next(iter(keys))[1] - 1))
        return tracklets
