"""Dataset parsers behind ``DATASET_REGISTRY``; each is built as ``Cls(root, cfg)`` (or ``Cls(root, cfg, arg=ARG)``
for an entry ``NAME:ARG``) and yields ImageRecord lists."""
from .base import DATASET_REGISTRY, ImageRecord, ReIDDataset
from .csvfile import CsvDataset
from .folder import FolderDataset
from .market1501 import Market1501
from .msmt17 import MSMT17
from .synthetic import Synthetic

__all__ = ["DATASET_REGISTRY", "ImageRecord", "ReIDDataset", "CsvDataset", "FolderDataset", "Market1501", "MSMT17",
           "Synthetic"]
