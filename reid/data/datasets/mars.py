"""MARS (Zheng et al. ECCV 2016), the video re-ID benchmark: tracklets defined by the release's ``info/`` files,
query / gallery from ``query_IDX.mat`` as in torchreid (the gallery is every test tracklet that is not a query)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import numpy as np
from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ReIDDataset, TrackletRecord, relabel, require_dir, require_nonempty, text_lines
from .matfiles import int_vector, load_mat, require_file

MARS_LAYOUT = """\
  MARS/                         (or torchreid's mars/)
    bbox_train/0001/0001C1T0001F001.jpg ...    frames of the training tracklets, one folder per identity
    bbox_test/0000/ bbox_test/00-1/ ...        test frames (0000 distractors, 00-1 junk)
    info/train_name.txt  info/test_name.txt    every frame's file name, in tracklet order
    info/tracks_train_info.mat                 'track_train_info': start, end (1-based rows of the name list),
    info/tracks_test_info.mat                  'track_test_info'   identity, camera per tracklet
    info/query_IDX.mat                         'query_IDX': the query tracklets (1-based rows of the test info)"""

_JUNK = -1


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class MARS(ReIDDataset):
    """Tracklets of 1,261 identities from 6 cameras; train relabelled, junk tracklets (identity -1) dropped (kept in
    query / gallery with ``DATASETS.KEEP_JUNK``), distractors (0) kept in the gallery. Frames are in the name
    list's order (the release's frame order)."""

    FOLDERS = ("MARS", "mars")
    LAYOUT = MARS_LAYOUT
    MARKERS = ("info", "bbox_train", "bbox_test")
    NAME = re.compile(r"(\d{4}|00-1)C(\d)T\d{4}F\d{3}\.jpg", re.ASCII)

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        info = require_dir(folder / "info", self.LAYOUT)
        train_info = info / "tracks_train_info.mat"
        test_info = info / "tracks_test_info.mat"
        train_rows = self._rows(load_mat(train_info, ("track_train_info",), self.LAYOUT)["track_train_info"],
                                train_info)
        test_rows = self._rows(load_mat(test_info, ("track_test_info",), self.LAYOUT)["track_test_info"], test_info)
        query_file = info / "query_IDX.mat"
        query_idx = int_vector(load_mat(query_file, ("query_IDX",), self.LAYOUT)["query_IDX"], query_file,
                               "query_IDX") - 1
        if len(query_idx) and (query_idx.min() < 0 or query_idx.max() >= len(test_rows)):
            raise DatasetError(f"{query_file}: 'query_IDX' holds rows outside 1..{len(test_rows)} "
                               f"({test_info.name} has {len(test_rows)} tracklets).")
        train = self._tracklets(train_rows, self._names(info / "train_name.txt"), folder / "bbox_train", train_info)
        test = self._tracklets(test_rows, self._names(info / "test_name.txt"), folder / "bbox_test", test_info)
        is_query = np.zeros(len(test), dtype=bool)
        is_query[query_idx] = True
        keep = [cfg.DATASETS.KEEP_JUNK or t.pid != _JUNK for t in test]
        query = [test[i] for i in query_idx if keep[i]]
        gallery = [t for i, t in enumerate(test) if keep[i] and not is_query[i]]
        require_nonempty(query, "query", query_file)
        require_nonempty(gallery, "gallery", test_info)
        super().__init__(type(self).__name__, str(folder), relabel(t for t in train if t.pid != _JUNK), query,
                         gallery)

    @staticmethod
    def _rows(value: object, path: Path) -> np.ndarray:
        rows = np.asarray(value)
        if rows.ndim != 2 or rows.shape[1] != 4:
            raise DatasetError(f"{path}: expected a (tracklets, 4) matrix of start, end, identity, camera rows; got "
                               f"shape {rows.shape}.")
        return np.stack([int_vector(rows[:, k], path, "the tracklet matrix") for k in range(4)], axis=1)

    def _names(self, path: Path) -> List[str]:
        require_file(path, self.LAYOUT)
        return [line.strip() for _, line in text_lines(path, f"is {path.name} MARS's frame name list?")]

    def _tracklets(self, rows: np.ndarray, names: List[str], home: Path, where: Path) -> List[TrackletRecord]:
        """One record per row ``start, end, identity, camera``: frames ``names[start - 1:end]`` under
        ``home/<identity folder>/``; rows that do not agree with their frames' names are errors naming the row."""
        require_dir(home, self.LAYOUT)
        tracklets = []
        for row, (start, end, pid, camera) in enumerate(rows.tolist(), start=1):
            frames = names[start - 1:end] if 1 <= start <= end <= len(names) else []
            parsed = [self.NAME.fullmatch(n) for n in frames]
            if not frames or not all(parsed):
                raise DatasetError(f"{where} row {row}: frames {start}..{end} are not MARS frame names of the name "
                                   f"list ({len(names)} names), e.g. 0001C1T0001F001.jpg.")
            if camera < 1 or {(m.group(1), int(m.group(2))) for m in parsed} != {
                    (f"{pid:04d}" if pid >= 0 else "00-1", camera)}:
                raise DatasetError(f"{where} row {row}: identity {pid}, camera {camera}, but its frames are "
                                   f"{frames[0]!r}..{frames[-1]!r}.")
            paths = tuple(str(home / n[:4] / n) for n in frames)
            for path in (paths[0], paths[-1]):
                if not Path(path).is_file():
                    raise DatasetError(f"{where} row {row}: frame {path!r} does not exist (incomplete extraction of "
                                       f"{home.name}.zip?).")
            tracklets.append(TrackletRecord(paths, pid, camera - 1))
        return tracklets
