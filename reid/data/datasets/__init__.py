"""Dataset parsers behind ``DATASET_REGISTRY``; each is built as ``Cls(root, cfg)`` (or ``Cls(root, cfg, arg=ARG)``
for an entry ``NAME:ARG``) and yields ImageRecord lists (TrackletRecord lists for the video sets)."""
from .base import DATASET_REGISTRY, ImageRecord, ReIDDataset, Split, TrackletRecord
from .csvfile import CsvDataset
from .folder import FolderDataset
from .market1501 import Market1501
from .msmt17 import MSMT17
from .synthetic import Synthetic
# The standard benchmarks (datasets/README.md): person images, vehicles, video; deep metric learning sets (classes,
# no cameras; metric_learning.py).
from .cars196 import Cars196
from .cub200 import CUB200
from .inshop import InShop
from .metric_learning import RetrievalDataset
from .sop import SOP
from .synthetic_retrieval import SyntheticRetrieval
from .cuhk03 import CUHK03
from .dukemtmc import DukeMTMC
from .fixed_person import CUHK02, CUHKSYSU, SenseReID
from .mars import MARS
from .random_splits import CUHK01, GRID, PRID, VIPeR, iLIDS
from .vehicles import VehicleID, VeRi, VeRiWild
from .video import DukeMTMCVideo, PRID2011, iLIDSVID

__all__ = ["DATASET_REGISTRY", "ImageRecord", "ReIDDataset", "CsvDataset", "FolderDataset", "Market1501", "MSMT17",
           "Synthetic", "Split", "TrackletRecord", "CUHK01", "CUHK02", "CUHK03", "CUHKSYSU", "DukeMTMC",
           "DukeMTMCVideo", "GRID", "MARS", "PRID", "PRID2011", "SenseReID", "VIPeR", "VeRi", "VeRiWild", "VehicleID",
           "iLIDS", "iLIDSVID", "CUB200", "Cars196", "InShop", "RetrievalDataset", "SOP", "SyntheticRetrieval"]
