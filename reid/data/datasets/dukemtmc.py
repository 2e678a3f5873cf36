"""DukeMTMC-reID (Zheng et al. ICCV 2017, from Ristani et al. ECCVW 2016's videos): Market-1501's layout with
names ``<pid>_c<camera>_f<frame>.jpg``."""
from __future__ import annotations

import re

from .base import DATASET_REGISTRY
from .market1501 import NamedImageFolders

DUKE_LAYOUT = """\
  DukeMTMC-reID/                (or torchreid's dukemtmc-reid/DukeMTMC-reID/)
    bounding_box_train/         0001_c2_f0046182.jpg ...   16,522 images of 702 identities
    query/                      0005_c2_f0046985.jpg ...   2,228 images
    bounding_box_test/          0002_c1_f0044158.jpg ...   17,661 images (408 identities only here)"""


@DATASET_REGISTRY.register(argument="PATH", argument_required=False)
class DukeMTMC(NamedImageFolders):
    """``<pid>_c<camera 1..8>_f<frame>.jpg`` in ``bounding_box_train/``, ``query/``, ``bounding_box_test/``. The
    gallery's identities without a query are distractors (never a match). ``DukeMTMC:PATH`` reads the folder PATH.
    """

    FOLDERS = ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID")
    LAYOUT = DUKE_LAYOUT
    PATTERN = re.compile(r"(-?\d{1,9})_c(\d{1,9})_f\d+\.jpg", re.ASCII)
    NAMING = "the DukeMTMC-reID naming <pid>_c<camera from 1>_f<frame>.jpg, e.g. 0001_c2_f0046182.jpg"
