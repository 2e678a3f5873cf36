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

# Deep metric learning benchmarks (classes, no cameras; reid.data.datasets.metric_learning).
from .cars196 import Cars196  # noqa: E402
from .cub200 import CUB200  # noqa: E402
from .inshop import InShop  # noqa: E402
from .metric_learning import RetrievalDataset  # noqa: E402
from .sop import SOP  # noqa: E402

__all__ += ["CUB200", "Cars196", "InShop", "RetrievalDataset", "SOP"]
from .synthetic_retrieval import SyntheticRetrieval  # noqa: E402

__all__ += ["SyntheticRetrieval"]
