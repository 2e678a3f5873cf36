"""The training set-ups the training benchmark and the GPU check share: the published ResNet50 and MGN configs on
the built-in synthetic set, each speed setting alone or together (``VARIANTS``), the data sizes and ``--tiny``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, List

from reid.config import load_cfg

from .common import ROOT

CONFIGS = {"resnet50": ROOT / "configs/Market1501/resnet50_circle.yml",
           "mgn": ROOT / "configs/Market1501/mgn_circle.yml"}
TINY_SIZES = {"resnet50": "[64, 32]", "mgn": "[96, 32]"}

BASELINE = {"DATALOADER.PIPELINE": "workers", "SOLVER.AMP": "off", "MODEL.CHANNELS_LAST": "False",
            "MODEL.COMPILE": "False", "SOLVER.FUSED": "True"}
FACTORS = {"gpu_pipeline": {"DATALOADER.PIPELINE": "gpu"}, "bf16": {"SOLVER.AMP": "bf16"},
           "channels_last": {"MODEL.CHANNELS_LAST": "True"}, "compile": {"MODEL.COMPILE": "True"}}
VARIANTS: Dict[str, Dict[str, str]] = {
    "conventional": {},
    **FACTORS,
    "fast": {**FACTORS["gpu_pipeline"], **FACTORS["bf16"], **FACTORS["channels_last"]},
    "fast_compile": {**FACTORS["gpu_pipeline"], **FACTORS["bf16"], **FACTORS["channels_last"], **FACTORS["compile"]},
}


def variant_settings(variant: str) -> Dict[str, str]:
    """The config values of a set-up (the baseline's, overridden by the variant's)."""
    return {**BASELINE, **VARIANTS[variant]}


def data_settings(args: argparse.Namespace) -> List[str]:
    syn = "DATASETS.SYNTHETIC."
    return ["DATASETS.ROOT", args.root, "DATASETS.NAMES", "['Synthetic']", "DATASETS.TESTS", "['Synthetic']",
            syn + "NUM_TRAIN_IDS", str(args.ids), syn + "IMAGES_PER_ID", str(args.images_per_id),
            syn + "NUM_TEST_IDS", str(args.test_ids), syn + "NUM_DISTRACTORS", str(args.test_ids),
            syn + "NUM_JUNK", str(args.test_ids // 4),
            # the fast pipeline's cache is decoded once, into a file later set-ups reuse (then copied to the GPU)
            "DATALOADER.CACHE_RAM_GB", "0.0", "DATALOADER.CACHE_DIR", str(Path(args.root) / "cache")]


def model_settings(model: str, batch: int, args: argparse.Namespace) -> List[str]:
    opts = ["MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DEVICE", args.device, "SOLVER.IMS_PER_BATCH", str(batch),
            "DATALOADER.NUM_INSTANCE", "4", "DATALOADER.NUM_WORKERS", str(args.workers), "VIS.REPORT", "False",
            "SOLVER.LOG_PERIOD", "1000000"]
    if args.tiny:
        opts += ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 1, 1]", "MODEL.BACKBONE.WIDTH", "8",
                 "INPUT.SIZE_TRAIN", TINY_SIZES[model], "INPUT.SIZE_TEST", TINY_SIZES[model]]
    return opts


def config_opts(model: str, variant: str, batch: int, args: argparse.Namespace) -> List[str]:
    """The config overrides of one model, set-up and batch on the synthetic set (KEY VALUE pairs, flattened)."""
    settings = [x for kv in variant_settings(variant).items() for x in kv]
    return data_settings(args) + model_settings(model, batch, args) + settings


def build_cfg(model: str, variant: str, batch: int, args: argparse.Namespace, output_dir: str, *extra: str):
    return load_cfg(CONFIGS[model], config_opts(model, variant, batch, args) + ["OUTPUT_DIR", output_dir, *extra])


def add_data_options(parser: argparse.ArgumentParser, images_per_id: int, test_ids: int) -> None:
    """The synthetic set's sizes and the loader's workers (``--tiny`` replaces them: :func:`use_tiny_data`)."""
    parser.add_argument("--ids", type=int, default=751, help="training identities (Market-1501: 751)")
    parser.add_argument("--images-per-id", type=int, default=images_per_id, help="images per training identity (Market-1501: ~17)")
    parser.add_argument("--test-ids", type=int, default=test_ids, help="test identities")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DATALOADER.NUM_WORKERS: loader processes of the workers pipeline, decode threads of gpu")


def use_tiny_data(args: argparse.Namespace) -> None:
    """``--tiny``: 8 identities x 6 images (and 8 test identities), loaded in the main process."""
    args.ids, args.images_per_id, args.test_ids, args.workers = 8, 6, 8, 0
