"""Data layer: dataset parsers (Market-1501, MSMT17, Synthetic, folder:PATH, csv:FILE), P x K sampling, transforms,
loaders. Offline tools that write datasets (re-ID crops from MOT tracking ground truth) are in ``prep/``, outside
the runtime pipeline."""
from .build import (TestSet, TrainLoader, build_dataset, build_test_loader, build_test_set, build_train_loader,
                    check_test_sets, evaluated_splits, subset_loader)
from .datasets import DATASET_REGISTRY, ImageRecord, ReIDDataset
from .io import read_image
from .samplers import IdentitySampler, ShuffleSampler
from .transforms import build_resize, build_test_transform

__all__ = ["build_dataset", "build_train_loader", "build_test_set", "build_test_loader", "subset_loader",
           "evaluated_splits", "TestSet", "check_test_sets", "TrainLoader",
           "IdentitySampler", "ShuffleSampler", "read_image", "build_resize", "build_test_transform",
           "DATASET_REGISTRY", "ImageRecord", "ReIDDataset"]
