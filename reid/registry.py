"""Every registry of reid: the one place where a config key's choices come from.

Each registry names the config key(s) whose values choose its entries and the modules whose import fills it.
The modules register their code with a decorator (``@POOLING_REGISTRY.register("gem")``); ``reid.config.validate``
checks every key listed here against its registry before any dataset is read or any model is built, importing
the modules on the first lookup (see ``reid.utils.registry``). Adding a choice is one decorator; adding a
choice-valued config key is one ``keys=`` entry here (tests/config/test_validation.py fails for a string key of the
defaults that is neither here nor declared free-form).
"""
from __future__ import annotations

from typing import Tuple

from .utils.registry import Registry

# Data. Dataset entries are classes built as ``Cls(root, cfg)``; entries registered with ``argument="METAVAR"``
# are chosen as ``NAME:ARGUMENT`` (e.g. a folder dataset ``folder:PATH``).
DATASET_REGISTRY = Registry("dataset", keys=("DATASETS.NAMES", "DATASETS.TESTS"),
                            locations=("reid.data.datasets",), separator=":")
# (record pids, per-rank batch size, cfg, seed, rank, world size) -> torch Sampler of training indices.
SAMPLER_REGISTRY = Registry("sampler", keys=("DATALOADER.SAMPLER",), locations=("reid.data.samplers",))
# (cfg, device, rank, world size) -> (iterable of batch dicts with a ``sampler``, merged training ReIDDataset).
PIPELINE_REGISTRY = Registry("input pipeline", keys=("DATALOADER.PIPELINE",),
                             locations=("reid.data.build", "reid.data.gpu_pipeline"))
# Resize filter name -> torchvision InterpolationMode.
INTERPOLATION_REGISTRY = Registry("interpolation", keys=("INPUT.INTERPOLATION",), locations=("reid.data.transforms",))
# The same filters for training images alone; "" = INPUT.INTERPOLATION's (issue 25: TransReID resizes bicubic to train).
TRAIN_INTERPOLATION_REGISTRY = Registry("training interpolation", keys=("INPUT.INTERPOLATION_TRAIN",),
                                        locations=("reid.data.transforms",), optional=True)
# (frames in a tracklet, frames wanted, numpy Generator) -> the frame indices a training clip is read from.
FRAME_SAMPLING_REGISTRY = Registry("frame sampling", keys=("DATALOADER.SEQ_SAMPLE",), locations=("reid.data.video",))

# Modeling.
BACKBONE_REGISTRY = Registry("backbone", keys=("MODEL.BACKBONE.NAME",), locations=("reid.modeling.backbones",))
META_ARCH_REGISTRY = Registry("meta-architecture", keys=("MODEL.META_ARCHITECTURE",),
                              locations=("reid.modeling.meta_arch",))
# cfg -> module scoring each frame of a tracklet (its weight in the tracklet's embedding), or None: equal weights.
TEMPORAL_POOL_REGISTRY = Registry("temporal pooling", keys=("MODEL.TEMPORAL_POOL",), locations=("reid.modeling.video",))
# GeM exponent -> pooling module giving (B, C, 1, 1).
POOLING_REGISTRY = Registry("pooling", keys=("MODEL.HEADS.POOL",), locations=("reid.modeling.heads.pooling",))
# Feature dimension -> module between the (pre-neck) feature and the classifier / test embedding.
NECK_REGISTRY = Registry("neck", keys=("MODEL.HEADS.NECK",), locations=("reid.modeling.heads.embedding_head",))
# (input channels, output size) -> module reducing the pooled feature when MODEL.HEADS.EMBEDDING_DIM > 0.
REDUCTION_REGISTRY = Registry("reduction", keys=("MODEL.HEADS.REDUCTION",),
                              locations=("reid.modeling.heads.embedding_head",))
# Which side of the neck a feature is taken from (True: after the neck).
NECK_SIDE_REGISTRY = Registry("neck side", keys=("MODEL.HEADS.NECK_FEAT", "MODEL.HEADS.TEST_FEAT"),
                              locations=("reid.modeling.heads.embedding_head",))
# IBN-Net variant of the ResNet trunk (used with MODEL.BACKBONE.WITH_IBN) -> its description.
IBN_REGISTRY = Registry("IBN-Net type", keys=("MODEL.BACKBONE.IBN_TYPE",),
                        locations=("reid.modeling.backbones.resnet",))
# MGN's classifier layout -> whether each of the eight features has its own classifier.
MGN_CLASSIFIER_REGISTRY = Registry("MGN classifier layout", keys=("MODEL.MGN.CLASSIFIER",),
                                   locations=("reid.modeling.meta_arch.mgn",))
# nn.Module(in_dim, num_classes, scale, margin) called as ``cls(features, labels=None)``.
CLASSIFIER_REGISTRY = Registry("classifier", keys=("MODEL.HEADS.CLS_LAYER",), locations=("reid.modeling.losses",))
# Loss classes with ``kind`` ("class" / "pair"), ``cfg_key`` and ``from_config(cfg)``.
LOSS_REGISTRY = Registry("loss", keys=("MODEL.LOSSES.NAME",), locations=("reid.modeling.losses",))
# Which pairs a pair loss may use; "" = every pair of the masks.
MINER_REGISTRY = Registry("pair miner", keys=("MODEL.LOSSES.*.MINER",), locations=("reid.modeling.losses",),
                          optional=True)

# Solver.
# (parameter groups, cfg.SOLVER, fused) -> torch optimizer.
OPTIMIZER_REGISTRY = Registry("optimizer", keys=("SOLVER.OPTIMIZER",), locations=("reid.solver.build",))
# (cfg.SOLVER, fractional epoch >= SOLVER.WARMUP_EPOCHS) -> LR multiplier after warm-up.
LR_SCHEDULE_REGISTRY = Registry("LR schedule", keys=("SOLVER.SCHED",), locations=("reid.solver.build",))
# Mixed-precision mode -> autocast dtype (None = full precision).
AMP_REGISTRY = Registry("AMP mode", keys=("SOLVER.AMP",), locations=("reid.solver.amp",))

# Published training recipes (fast-reid's Base-*.yml, torchreid's OSNet configs), issue 23.
# When the decay schedule advances -> a ``DecayClock`` (reid.solver.build).
SCHED_STEP_REGISTRY = Registry("LR decay stepping", keys=("SOLVER.SCHED_STEP",), locations=("reid.solver.build",))
# Value written into a randomly erased rectangle -> fill(shape, generator, dtype, device) of normalised values.
ERASE_FILL_REGISTRY = Registry("random-erasing fill", keys=("INPUT.REA.FILL",), locations=("reid.data.augment",))
# Label smoothing target -> (epsilon, classes) -> torch's label_smoothing giving that target distribution.
SMOOTHING_REGISTRY = Registry("label smoothing", keys=("MODEL.LOSSES.CE.SMOOTHING",),
                              locations=("reid.modeling.losses.cross_entropy",))
# Triplet weighting of an anchor's positives and negatives -> TripletLoss uses the batch-hard miner (True) or not.
TRIPLET_WEIGHTING_REGISTRY = Registry("triplet weighting", keys=("MODEL.LOSSES.TRIPLET.WEIGHTING",),
                                      locations=("reid.modeling.losses.triplet",))
# MGN's pair-loss features -> whether each part branch's stripe features, concatenated, are added.
MGN_PAIR_REGISTRY = Registry("MGN pair features", keys=("MODEL.MGN.PAIR_FEATURES",),
                             locations=("reid.modeling.meta_arch.mgn",))

# Evaluation.
METRIC_REGISTRY = Registry("distance metric", keys=("TEST.METRIC",), locations=("reid.evaluation.distance",))
# RankResult -> float, or None where the result is too short (rank10 of a CMC cut at 5); retrieval metrics (recall@K,
# map@r, ...) -> their name in words (a retrieval set's evaluation computes them).
SCORE_REGISTRY = Registry("score", keys=("TEST.BEST_METRIC",), locations=("reid.evaluation.results",))

# Every registry above, in order (derived, so a new registry cannot be left out of validation).
REGISTRIES: Tuple[Registry, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Registry))
