"""Person sets with one fixed protocol, used mostly to pre-train or for cross-domain tests: CUHK02 (train on camera
pairs P1-P4, test on P5), SenseReID (test only) and CUHK-SYSU's cropped persons (train only)."""
from __future__ import annotations

import re
from typing import List, Optional

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import DATASET_REGISTRY, ImageRecord, ReIDDataset, relabel, require_nonempty
from .scan import scan_images

CUHK02_LAYOUT = """\
  cuhk02/Dataset/               (torchreid's place; or CUHK02/Dataset/)
    P1/cam1/<identity>_<n>.png  P1/cam2/...    five camera pairs P1-P5 (971, 306, 107, 193, 239 identities)
    P2/ ... P5/                 P1-P4 train; P5 is the test pair: cam1 query, cam2 gallery"""

SENSEREID_LAYOUT = """\
  SenseReID/                    (or torchreid's sensereid/SenseReID/)
    test_probe/<identity>_<camera>.jpg ...      1,040 query images of 522 identities
    test_gallery/<identity>_<camera>.jpg ...    3,388 gallery images of 1,717 identities"""

CUHKSYSU_LAYOUT = """\
  cuhksysu/cropped_images/      (torchreid's place; or fast-reid's cuhk_sysu/cropped_images/)
    p<identity>_s<scene>....jpg   the persons cropped from CUHK-SYSU's scenes, 11,934 identities, 34,574 images"""


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class CUHK02(ReIDDataset):
    """CUHK02 (Li and Wang, CVPR 2013): five camera pairs with their own identities; P1-P4 train (identities of
    different pairs are different people: ``identity_name`` is ``P<k>/<identity>``), P5 tests, camera 1 as query
    and camera 2 as gallery. Cameras are numbered 0..9 over the pairs (P1's are 0 and 1), as in torchreid."""

    FOLDERS = ("cuhk02/Dataset", "CUHK02/Dataset")
    LAYOUT = CUHK02_LAYOUT
    PAIRS = ("P1", "P2", "P3", "P4", "P5")
    MARKERS = PAIRS
    PATTERN = re.compile(r"(\d{1,9})_[^/]*\.png", re.ASCII)
    NAMING = "CUHK02's naming <identity>_<n>.png"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        pairs: List[List[List[ImageRecord]]] = []
        for k, pair in enumerate(self.PAIRS):
            pairs.append([[ImageRecord(str(path), int(match.group(1)), 2 * k + view, f"{pair}/{match.group(1)}")
                           for path, match in scan_images(folder / pair / f"cam{view + 1}", self.PATTERN, self.NAMING,
                                                          self.LAYOUT)] for view in (0, 1)])
        *train_pairs, (query, gallery) = pairs
        names = sorted({r.identity_name for pair in train_pairs for view in pair for r in view})
        number = {name: i for i, name in enumerate(names)}
        train = [ImageRecord(r.path, number[r.identity_name], r.camid, r.identity_name)
                 for pair in train_pairs for view in pair for r in view]
        require_nonempty(query, "query", folder / self.PAIRS[-1] / "cam1")
        require_nonempty(gallery, "gallery", folder / self.PAIRS[-1] / "cam2")
        super().__init__(type(self).__name__, str(folder), train, query, gallery)


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class SenseReID(ReIDDataset):
    """SenseReID (Zhao et al. CVPR 2017): a test set only (no training images); query from ``test_probe/``,
    gallery from ``test_gallery/``, identity and camera from ``<identity>_<camera>.jpg`` (cameras as numbered
    there, as both peers read them)."""

    FOLDERS = ("SenseReID", "sensereid/SenseReID")
    LAYOUT = SENSEREID_LAYOUT
    MARKERS = ("test_probe", "test_gallery")
    PATTERN = re.compile(r"(\d{1,9})_(\d{1,9})\.jpg", re.ASCII)
    NAMING = "SenseReID's naming <identity>_<camera>.jpg, e.g. 0000000_00.jpg"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        query, gallery = ([ImageRecord(str(path), int(m.group(1)), int(m.group(2)))
                           for path, m in scan_images(folder / sub, self.PATTERN, self.NAMING, self.LAYOUT)]
                          for sub in self.MARKERS)
        require_nonempty(query, "query", folder / self.MARKERS[0])
        require_nonempty(gallery, "gallery", folder / self.MARKERS[1])
        super().__init__(type(self).__name__, str(folder), [], query, gallery)


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class CUHKSYSU(ReIDDataset):
    """CUHK-SYSU's persons cropped from its scenes (Xiao et al. CVPR 2017), a training set only (no query or
    gallery); identity from ``p<identity>_s...``, one camera (camid 0), as both peers read it."""

    FOLDERS = ("cuhksysu/cropped_images", "cuhk_sysu/cropped_images", "CUHK-SYSU/cropped_images")
    LAYOUT = CUHKSYSU_LAYOUT
    PATTERN = re.compile(r"p(\d{1,9})_s\d+[^/]*\.jpg", re.ASCII)
    NAMING = "the cropped CUHK-SYSU naming p<identity>_s<scene>....jpg, e.g. p1000_s1000.jpg"

    def __init__(self, root: str, cfg: CfgNode, arg: Optional[str] = None) -> None:
        folder = self.dataset_folder(root, arg)
        train = [ImageRecord(str(path), int(m.group(1)), 0)
                 for path, m in scan_images(folder, self.PATTERN, self.NAMING, self.LAYOUT)]
        if not train:
            raise DatasetError(f"No images in {str(folder)!r}. Expected layout:\n{self.LAYOUT}")
        super().__init__(type(self).__name__, str(folder), relabel(train), [], [])
