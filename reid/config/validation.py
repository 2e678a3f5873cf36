"""Checks of a whole config that a per-key type check cannot make; each failure names the key."""
from __future__ import annotations

from yacs.config import CfgNode

from ..utils.errors import ConfigError


def validate(cfg: CfgNode) -> None:
    """Cross-key checks that a type check cannot make; raise ConfigError naming the key."""
    s, d, t = cfg.SOLVER, cfg.DATALOADER, cfg.TEST

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(s.IMS_PER_BATCH > 0, f"SOLVER.IMS_PER_BATCH must be positive, got {s.IMS_PER_BATCH}.")
    need(d.NUM_INSTANCE > 0, f"DATALOADER.NUM_INSTANCE must be positive, got {d.NUM_INSTANCE}.")
    if d.SAMPLER == "identity":
        need(s.IMS_PER_BATCH % d.NUM_INSTANCE == 0,
             f"SOLVER.IMS_PER_BATCH ({s.IMS_PER_BATCH}) must be a multiple of DATALOADER.NUM_INSTANCE "
             f"({d.NUM_INSTANCE}) for P x K identity batches.")
    need(d.SAMPLER in ("identity", "random"), f"DATALOADER.SAMPLER must be 'identity' or 'random', got {d.SAMPLER!r}.")
    need(d.NUM_WORKERS >= 0, f"DATALOADER.NUM_WORKERS must be >= 0, got {d.NUM_WORKERS}.")
    need(s.MAX_EPOCHS > 0, f"SOLVER.MAX_EPOCHS must be positive, got {s.MAX_EPOCHS}.")
    need(s.BASE_LR > 0, f"SOLVER.BASE_LR must be positive, got {s.BASE_LR}.")
    need(s.CHECKPOINT_PERIOD > 0, f"SOLVER.CHECKPOINT_PERIOD must be positive, got {s.CHECKPOINT_PERIOD}.")
    need(t.EVAL_PERIOD > 0, f"TEST.EVAL_PERIOD must be positive, got {t.EVAL_PERIOD}.")
    need(t.IMS_PER_BATCH > 0, f"TEST.IMS_PER_BATCH must be positive, got {t.IMS_PER_BATCH}.")
    need(t.MAX_RANK > 0, f"TEST.MAX_RANK must be positive, got {t.MAX_RANK}.")
    need(t.METRIC in ("cosine", "euclidean"), f"TEST.METRIC must be 'cosine' or 'euclidean', got {t.METRIC!r}.")
    need(s.OPTIMIZER in ("SGD", "Adam", "AdamW"), f"SOLVER.OPTIMIZER must be SGD, Adam or AdamW, got {s.OPTIMIZER!r}.")
    need(s.SCHED in ("multistep", "cosine"), f"SOLVER.SCHED must be 'multistep' or 'cosine', got {s.SCHED!r}.")
    for key in ("SIZE_TRAIN", "SIZE_TEST"):
        v = cfg.INPUT[key]
        need(len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v),
             f"INPUT.{key} must be [height, width] of positive ints, got {v!r}.")
    need(len(cfg.DATASETS.NAMES) > 0, "DATASETS.NAMES must name at least one training dataset.")
    need(0.0 <= cfg.INPUT.FLIP_PROB <= 1.0, f"INPUT.FLIP_PROB must be in [0, 1], got {cfg.INPUT.FLIP_PROB}.")
    need(t.RERANK.K1 > 0 and t.RERANK.K2 > 0, "TEST.RERANK.K1 and TEST.RERANK.K2 must be positive.")
    need(0.0 <= t.RERANK.LAMBDA <= 1.0, f"TEST.RERANK.LAMBDA must be in [0, 1], got {t.RERANK.LAMBDA}.")
    if t.RERANK.ENABLED:
        need(t.RERANK.K2 <= t.RERANK.K1 + 1, f"TEST.RERANK.K2 ({t.RERANK.K2}) must be at most TEST.RERANK.K1 + 1 "
                                             f"({t.RERANK.K1 + 1}).")
    need(len(cfg.DATASETS.TESTS) > 0, "DATASETS.TESTS must name at least one test set.")
    need(s.LOG_PERIOD > 0, f"SOLVER.LOG_PERIOD must be positive, got {s.LOG_PERIOD}.")
    need(s.WARMUP_EPOCHS >= 0, f"SOLVER.WARMUP_EPOCHS must be >= 0, got {s.WARMUP_EPOCHS}.")
    need(0.0 < s.WARMUP_FACTOR <= 1.0, f"SOLVER.WARMUP_FACTOR must be in (0, 1], got {s.WARMUP_FACTOR}.")
    need(s.GAMMA > 0, f"SOLVER.GAMMA must be positive, got {s.GAMMA}.")
    need(list(s.STEPS) == sorted(s.STEPS) and all(x >= 0 for x in s.STEPS),
         f"SOLVER.STEPS must be epochs >= 0 in increasing order, got {list(s.STEPS)!r}.")
    for key in ("MOMENTUM", "WEIGHT_DECAY", "WEIGHT_DECAY_BIAS", "BIAS_LR_FACTOR", "GRAD_CLIP", "ETA_MIN_LR"):
        need(s[key] >= 0, f"SOLVER.{key} must be >= 0, got {s[key]}.")
    need(cfg.INPUT.PADDING >= 0, f"INPUT.PADDING must be >= 0, got {cfg.INPUT.PADDING}.")
    need(0.0 <= cfg.INPUT.REA.PROB <= 1.0, f"INPUT.REA.PROB must be in [0, 1], got {cfg.INPUT.REA.PROB}.")
    need(len(cfg.INPUT.PIXEL_MEAN) == 3, f"INPUT.PIXEL_MEAN must have 3 (RGB) values, got {cfg.INPUT.PIXEL_MEAN!r}.")
    need(len(cfg.INPUT.PIXEL_STD) == 3 and all(x > 0 for x in cfg.INPUT.PIXEL_STD),
         f"INPUT.PIXEL_STD must be 3 (RGB) positive values, got {cfg.INPUT.PIXEL_STD!r}.")
    layers = cfg.MODEL.BACKBONE.LAYERS
    need(not layers or (len(layers) == 4 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                                  for x in layers)),
         f"MODEL.BACKBONE.LAYERS must be [] or 4 positive block counts, got {list(layers)!r}.")
    need(cfg.MODEL.HEADS.NUM_CLASSES >= 0, f"MODEL.HEADS.NUM_CLASSES must be >= 0, got {cfg.MODEL.HEADS.NUM_CLASSES}.")
    need(cfg.MODEL.HEADS.EMBEDDING_DIM >= 0,
         f"MODEL.HEADS.EMBEDDING_DIM must be >= 0, got {cfg.MODEL.HEADS.EMBEDDING_DIM}.")
