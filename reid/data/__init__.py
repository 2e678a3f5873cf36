"""Data layer: dataset parsers (Market-1501, MSMT17, Synthetic), P x K sampling, transforms and loaders."""
from .build import build_dataset, build_test_loader, build_train_loader
from .datasets import DATASET_REGISTRY, ImageRecord, ReIDDataset
from .io import read_image
from .samplers import IdentitySampler, RandomSampler
from .transforms import build_transforms

__all__ = ["build_dataset", "build_train_loader", "build_test_loader", "IdentitySampler", "RandomSampler",
           "read_image", "build_transforms", "DATASET_REGISTRY", "ImageRecord", "ReIDDataset"]
