"""Checks of a whole config that a per-key type check cannot make; each failure names the key.

``validate`` runs before any dataset is read or any model is built (``load_cfg`` calls it, and so do the
Trainer and the loader of trained models), so a wrong choice fails at once, not after the datasets are parsed or
an image cache is decoded. Choice-valued keys are checked against the registries of ``reid.registry``, never
against a list copied here.
"""
from __future__ import annotations

import re
from typing import Iterator, List, Tuple

from yacs.config import CfgNode

from ..registry import REGISTRIES
from ..utils.errors import ConfigError
from ..utils.registry import Registry


def validate(cfg: CfgNode) -> None:
    """Every choice-valued key against its registry, then ranges and cross-key rules; raise ConfigError naming
    the key."""
    for registry in REGISTRIES:
        for key, value in registry_values(cfg, registry):
            registry.check(value, key)
    _check_lists(cfg)
    _check_ranges(cfg)
    _check_vis(cfg)
    _check_dataset_protocols(cfg)
    _check_recipe_keys(cfg)
    _check_metric_learning(cfg)


def training_warnings(cfg: CfgNode) -> List[str]:
    """Settings that are valid but make a training run not do what its config suggests (the Trainer logs each as
    a warning; evaluation and inference do not read these keys)."""
    s = cfg.SOLVER
    warnings = []
    late = [step for step in s.STEPS if step >= s.MAX_EPOCHS]
    if s.SCHED == "multistep" and late:
        early = [step for step in s.STEPS if step < s.MAX_EPOCHS]
        never = f"decays only at epochs {early}" if early else "never decays"
        usual = sorted({round(s.MAX_EPOCHS * 0.4), round(s.MAX_EPOCHS * 0.8)} - {0})
        example = f", e.g. {usual} (the usual shape: 40% and 80% of the run)" if len(usual) == 2 else ""
        warnings.append(f"SOLVER.STEPS {list(s.STEPS)} has epochs {late} at or beyond SOLVER.MAX_EPOCHS "
                        f"{s.MAX_EPOCHS}: the learning rate {never} (the multistep schedule multiplies it by "
                        f"SOLVER.GAMMA at each step). Set SOLVER.STEPS to epochs below {s.MAX_EPOCHS}{example}.")
    return warnings


def expand_key(cfg: CfgNode, pattern: str) -> List[str]:
    """The keys of ``cfg`` a registry key pattern names (``*`` = any one section): ``MODEL.LOSSES.*.MINER`` ->
    ``MODEL.LOSSES.CIRCLE.MINER``, ... A key without ``*`` is returned when it exists."""
    found = [("", cfg)]
    for part in pattern.split("."):
        step = []
        for prefix, node in found:
            if not isinstance(node, CfgNode):
                continue
            names = [k for k, v in node.items() if isinstance(v, CfgNode)] if part == "*" else [part]
            step += [(f"{prefix}{k}", node[k]) for k in names if k in node]
        found = [(f"{p}.", n) for p, n in step]
    return [p[:-1] for p, _ in found]


def get_key(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def registry_values(cfg: CfgNode, registry: Registry) -> Iterator[Tuple[str, object]]:
    """(key, value) for every config value naming an entry of ``registry``; a list key gives ``KEY[i]`` per
    element."""
    for pattern in registry.keys:
        for key in expand_key(cfg, pattern):
            value = get_key(cfg, key)
            if isinstance(value, (list, tuple)):
                yield from ((f"{key}[{i}]", v) for i, v in enumerate(value))
            else:
                yield key, value


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


_LISTS = {"DATASETS.NAMES": ("training dataset", "each dataset once"),
          "DATASETS.TESTS": ("test set", "each test set once"),
          "MODEL.LOSSES.NAME": ("loss", "each loss once and set its MODEL.LOSSES.<LOSS>.WEIGHT instead")}


def _check_lists(cfg: CfgNode) -> None:
    """Lists of choices: at least one name, none twice."""
    for key, (what, fix) in _LISTS.items():
        names = list(get_key(cfg, key))
        _need(len(names) > 0, f"{key} must name at least one {what}, got [].")
        twice = sorted({n for n in names if names.count(n) > 1})
        _need(not twice, f"{key} lists {', '.join(map(repr, twice))} twice: {names}; give {fix}.")


def _check_ranges(cfg: CfgNode) -> None:
    s, d, t = cfg.SOLVER, cfg.DATALOADER, cfg.TEST
    _need(s.IMS_PER_BATCH > 0, f"SOLVER.IMS_PER_BATCH must be positive, got {s.IMS_PER_BATCH}.")
    _need(d.NUM_INSTANCE > 0, f"DATALOADER.NUM_INSTANCE must be positive, got {d.NUM_INSTANCE}.")
    if d.SAMPLER == "identity":
        _need(s.IMS_PER_BATCH % d.NUM_INSTANCE == 0,
              f"SOLVER.IMS_PER_BATCH ({s.IMS_PER_BATCH}) must be a multiple of DATALOADER.NUM_INSTANCE "
              f"({d.NUM_INSTANCE}) for P x K identity batches.")
    _need(d.NUM_WORKERS >= 0, f"DATALOADER.NUM_WORKERS must be >= 0, got {d.NUM_WORKERS}.")
    _need(s.MAX_EPOCHS > 0, f"SOLVER.MAX_EPOCHS must be positive, got {s.MAX_EPOCHS}.")
    _need(s.BASE_LR > 0, f"SOLVER.BASE_LR must be positive, got {s.BASE_LR}.")
    _need(s.CHECKPOINT_PERIOD > 0, f"SOLVER.CHECKPOINT_PERIOD must be positive, got {s.CHECKPOINT_PERIOD}.")
    _need(t.EVAL_PERIOD > 0, f"TEST.EVAL_PERIOD must be positive, got {t.EVAL_PERIOD}.")
    _need(t.IMS_PER_BATCH > 0, f"TEST.IMS_PER_BATCH must be positive, got {t.IMS_PER_BATCH}.")
    _need(t.MAX_RANK > 0, f"TEST.MAX_RANK must be positive, got {t.MAX_RANK}.")
    bb, mgn = cfg.MODEL.BACKBONE, cfg.MODEL.MGN
    _need(bb.NL_INTER_CHANNELS >= 0, f"MODEL.BACKBONE.NL_INTER_CHANNELS must be >= 0, got {bb.NL_INTER_CHANNELS}.")
    _need(mgn.GLOBAL_STRIDE in (1, 2), f"MODEL.MGN.GLOBAL_STRIDE must be 1 or 2, got {mgn.GLOBAL_STRIDE}.")
    _need(cfg.MODEL.HEADS.GEM_P > 0, f"MODEL.HEADS.GEM_P must be positive, got {cfg.MODEL.HEADS.GEM_P}.")
    cmc_rank = re.fullmatch(r"rank(\d+)", t.BEST_METRIC)
    _need(cmc_rank is None or int(cmc_rank.group(1)) <= t.MAX_RANK,
          f"TEST.BEST_METRIC {t.BEST_METRIC!r} needs TEST.MAX_RANK >= {cmc_rank and cmc_rank.group(1)}, got "
          f"{t.MAX_RANK}; raise TEST.MAX_RANK or choose mAP.")
    _need(not s.EMA.ENABLED or 0.0 < s.EMA.DECAY < 1.0,
          f"SOLVER.EMA.DECAY must be in (0, 1) with SOLVER.EMA.ENABLED, got {s.EMA.DECAY}.")
    for key in ("SIZE_TRAIN", "SIZE_TEST"):
        v = cfg.INPUT[key]
        _need(len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v),
              f"INPUT.{key} must be [height, width] of positive ints, got {v!r}.")
    _need(0.0 <= cfg.INPUT.FLIP_PROB <= 1.0, f"INPUT.FLIP_PROB must be in [0, 1], got {cfg.INPUT.FLIP_PROB}.")
    _need(t.RERANK.K1 > 0 and t.RERANK.K2 > 0, "TEST.RERANK.K1 and TEST.RERANK.K2 must be positive.")
    _need(0.0 <= t.RERANK.LAMBDA <= 1.0, f"TEST.RERANK.LAMBDA must be in [0, 1], got {t.RERANK.LAMBDA}.")
    if t.RERANK.ENABLED:
        _need(t.RERANK.K2 <= t.RERANK.K1 + 1, f"TEST.RERANK.K2 ({t.RERANK.K2}) must be at most TEST.RERANK.K1 + 1 "
                                              f"({t.RERANK.K1 + 1}).")
    _need(0.0 < t.VERIFY_FAR < 1.0, f"TEST.VERIFY_FAR must be a false-accept rate in (0, 1), e.g. 1e-3; got "
                                    f"{t.VERIFY_FAR}.")
    _need(t.AQE.QE_TIME >= 1 and t.AQE.QE_K >= 1,
          f"TEST.AQE.QE_TIME and TEST.AQE.QE_K must be at least 1, got {t.AQE.QE_TIME} and {t.AQE.QE_K}.")
    _need(t.AQE.ALPHA >= 0, f"TEST.AQE.ALPHA must be >= 0, got {t.AQE.ALPHA}.")
    _need(s.LOG_PERIOD > 0, f"SOLVER.LOG_PERIOD must be positive, got {s.LOG_PERIOD}.")
    _need(s.WARMUP_EPOCHS >= 0, f"SOLVER.WARMUP_EPOCHS must be >= 0, got {s.WARMUP_EPOCHS}.")
    _need(0.0 < s.WARMUP_FACTOR <= 1.0, f"SOLVER.WARMUP_FACTOR must be in (0, 1], got {s.WARMUP_FACTOR}.")
    _need(s.GAMMA > 0, f"SOLVER.GAMMA must be positive, got {s.GAMMA}.")
    _need(list(s.STEPS) == sorted(s.STEPS) and all(x >= 0 for x in s.STEPS),
          f"SOLVER.STEPS must be epochs >= 0 in increasing order, got {list(s.STEPS)!r}.")
    for key in ("MOMENTUM", "WEIGHT_DECAY", "WEIGHT_DECAY_BIAS", "BIAS_LR_FACTOR", "GRAD_CLIP", "ETA_MIN_LR"):
        _need(s[key] >= 0, f"SOLVER.{key} must be >= 0, got {s[key]}.")
    _need(cfg.INPUT.PADDING >= 0, f"INPUT.PADDING must be >= 0, got {cfg.INPUT.PADDING}.")
    _need(0.0 <= cfg.INPUT.REA.PROB <= 1.0, f"INPUT.REA.PROB must be in [0, 1], got {cfg.INPUT.REA.PROB}.")
    _need(len(cfg.INPUT.PIXEL_MEAN) == 3, f"INPUT.PIXEL_MEAN must have 3 (RGB) values, got {cfg.INPUT.PIXEL_MEAN!r}.")
    _need(len(cfg.INPUT.PIXEL_STD) == 3 and all(x > 0 for x in cfg.INPUT.PIXEL_STD),
          f"INPUT.PIXEL_STD must be 3 (RGB) positive values, got {cfg.INPUT.PIXEL_STD!r}.")
    layers = cfg.MODEL.BACKBONE.LAYERS
    _need(not layers or (len(layers) == 4 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                                   for x in layers)),
          f"MODEL.BACKBONE.LAYERS must be [] or 4 positive block counts, got {list(layers)!r}.")
    _need(cfg.MODEL.HEADS.NUM_CLASSES >= 0, f"MODEL.HEADS.NUM_CLASSES must be >= 0, got {cfg.MODEL.HEADS.NUM_CLASSES}.")
    _need(cfg.MODEL.HEADS.EMBEDDING_DIM >= 0,
          f"MODEL.HEADS.EMBEDDING_DIM must be >= 0, got {cfg.MODEL.HEADS.EMBEDDING_DIM}.")
    cache = list(d.CACHE_SIZE)
    _need(not cache or (len(cache) == 2 and all(isinstance(x, int) and x > 0 for x in cache)),
          f"DATALOADER.CACHE_SIZE must be [] or [height, width] of positive ints, got {cache!r}.")
    _need(d.CACHE_RAM_GB >= 0, f"DATALOADER.CACHE_RAM_GB must be >= 0, got {d.CACHE_RAM_GB}.")
    _need(d.CACHE_DEVICE_GB >= 0 or d.CACHE_DEVICE_GB == -1,
          f"DATALOADER.CACHE_DEVICE_GB must be >= 0 (GB; 0 = keep the cache off the GPU) or -1 (onto the GPU "
          f"after the first step when it fits, a quarter of the GPU kept free), got {d.CACHE_DEVICE_GB}.")


# VIS.* lower bounds (the ranked-list and report drawing options).
_VIS_AT_LEAST = {"TOPK": 1, "NUM_MISSED": 0, "QUERIES_PER_SHEET": 1, "REPORT_SHEETS": 0, "HIST_MAX_QUERIES": 0}


def _check_vis(cfg: CfgNode) -> None:
    for name, low in _VIS_AT_LEAST.items():
        value = cfg.VIS[name]
        _need(value >= low, f"VIS.{name} must be at least {low}, got {value}.")


def _check_dataset_protocols(cfg: CfgNode) -> None:
    """DATASETS.* protocol keys (the test sizes name release files, checked when the dataset is read)."""
    d = cfg.DATASETS
    _need(d.SPLIT_ID >= 0, f"DATASETS.SPLIT_ID must be >= 0 (the first split is 0), got {d.SPLIT_ID}.")
    _need(d.VEHICLEID.REPEATS >= 1, f"DATASETS.VEHICLEID.REPEATS must be at least 1, got {d.VEHICLEID.REPEATS}.")
    _need(cfg.DATALOADER.SEQ_LEN >= 1, f"DATALOADER.SEQ_LEN must be at least 1 frame per training tracklet, got "
                                       f"{cfg.DATALOADER.SEQ_LEN}.")
    _need(cfg.TEST.SEQ_LEN >= 0, f"TEST.SEQ_LEN must be >= 0 (0 = every frame of a test tracklet), got "
                                 f"{cfg.TEST.SEQ_LEN}.")
    for key in ("VEHICLEID", "VERIWILD"):
        _need(d[key].TEST_SIZE > 0, f"DATASETS.{key}.TEST_SIZE must be a positive number of test identities, got "
                                    f"{d[key].TEST_SIZE}.")


def _check_recipe_keys(cfg: CfgNode) -> None:
    """The keys of the peers' published recipes (issue 23): warm-up in iterations, delayed decay, layer freezing,
    AutoAugment."""
    s, inp = cfg.SOLVER, cfg.INPUT
    for key in ("WARMUP_ITERS", "DELAY_EPOCHS", "FREEZE_ITERS", "FREEZE_EPOCHS", "HEADS_LR_FACTOR",
                "WEIGHT_DECAY_NORM"):
        _need(s[key] >= 0, f"SOLVER.{key} must be >= 0, got {s[key]}.")
    _need(not (s.WARMUP_ITERS and s.WARMUP_EPOCHS),
          f"Give the warm-up as SOLVER.WARMUP_ITERS ({s.WARMUP_ITERS}) or SOLVER.WARMUP_EPOCHS ({s.WARMUP_EPOCHS}), "
          f"not both; set the other to 0.")
    _need(not s.DELAY_EPOCHS or s.SCHED_STEP == "epoch",
          f"SOLVER.DELAY_EPOCHS ({s.DELAY_EPOCHS}) is fast-reid's delay of its epoch-stepped decay; it needs "
          f"SOLVER.SCHED_STEP epoch (got {s.SCHED_STEP!r}).")
    _need(s.SCHED_STEP != "timm_epoch" or not s.WARMUP_ITERS,
          f"SOLVER.SCHED_STEP timm_epoch warms up over whole epochs (SOLVER.WARMUP_EPOCHS, TransReID's timm "
          f"scheduler); set SOLVER.WARMUP_ITERS 0 (got {s.WARMUP_ITERS}).")
    _need(not (s.FREEZE_ITERS and s.FREEZE_EPOCHS),
          f"Give the freeze as SOLVER.FREEZE_ITERS ({s.FREEZE_ITERS}) or SOLVER.FREEZE_EPOCHS ({s.FREEZE_EPOCHS}), "
          f"not both; set the other to 0.")
    frozen = list(cfg.MODEL.FREEZE_LAYERS) + list(cfg.MODEL.FREEZE_PARAMS_ONLY)
    _need(all(isinstance(n, str) and n for n in frozen),
          f"MODEL.FREEZE_LAYERS and MODEL.FREEZE_PARAMS_ONLY must list module names such as 'backbone', got "
          f"{frozen!r}.")
    _need(not (s.FREEZE_ITERS or s.FREEZE_EPOCHS) or frozen,
          "SOLVER.FREEZE_ITERS / FREEZE_EPOCHS need the modules to freeze in MODEL.FREEZE_LAYERS (e.g. "
          "['backbone']).")
    _need(cfg.MODEL.HEADS.CLS_INIT_STD >= 0,
          f"MODEL.HEADS.CLS_INIT_STD must be >= 0 (0: the classifier's own initialisation), got "
          f"{cfg.MODEL.HEADS.CLS_INIT_STD}.")
    _need(0.0 <= inp.AUTOAUG.PROB <= 1.0, f"INPUT.AUTOAUG.PROB must be in [0, 1], got {inp.AUTOAUG.PROB}.")
    _need(not inp.AUTOAUG.ENABLED or cfg.DATALOADER.PIPELINE == "workers",
          f"INPUT.AUTOAUG works on the decoded image before the resize, which only DATALOADER.PIPELINE workers "
          f"sees (got {cfg.DATALOADER.PIPELINE!r}); use the workers pipeline or turn AutoAugment off.")


def _positive_ints(values: object) -> bool:
    return all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in values)


def _check_metric_learning(cfg: CfgNode) -> None:
    """TEST.RECALL_KS and a retrieval score as TEST.BEST_METRIC (which the first test set must be scored by: checked
    when the test sets are parsed, ``reid.engine.evaluator.Evaluator.check_best_metric``), INPUT.CROP.*."""
    t, crop = cfg.TEST, cfg.INPUT.CROP
    ks = list(t.RECALL_KS)
    _need(len(ks) > 0 and _positive_ints(ks) and ks == sorted(set(ks)),
          f"TEST.RECALL_KS must be positive integers in increasing order, each once (e.g. [1, 2, 4, 8]), got {ks!r}.")
    recall = re.fullmatch(r"recall@(\d+)", t.BEST_METRIC)
    _need(recall is None or int(recall.group(1)) in ks,
          f"TEST.BEST_METRIC {t.BEST_METRIC!r} needs {recall and recall.group(1)} in TEST.RECALL_KS, got {ks!r}.")
    _need(t.BEST_METRIC != "nmi" or t.NMI, "TEST.BEST_METRIC 'nmi' needs TEST.NMI True (NMI is computed on request).")
    resize = list(crop.RESIZE)
    _need(len(resize) in (0, 1, 2) and _positive_ints(resize),
          f"INPUT.CROP.RESIZE must be [] (no crop), [shorter side] or [height, width] of positive ints, got "
          f"{resize!r}.")
    _need(not resize or cfg.DATALOADER.PIPELINE != "gpu" or len(resize) == 2 or len(cfg.DATALOADER.CACHE_SIZE) == 2,
          f"INPUT.CROP.RESIZE {resize!r} resizes each image to its own size, which DATALOADER.PIPELINE gpu cannot "
          f"cache; give [height, width] (e.g. [256, 256]) or a DATALOADER.CACHE_SIZE.")
    for key, low, high in (("SCALE", 0.0, 1.0), ("RATIO", 0.0, float("inf"))):
        v = list(crop[key])
        _need(len(v) == 2 and low < v[0] <= v[1] <= high,
              f"INPUT.CROP.{key} must be [min, max] with {low:g} < min <= max" + (f" <= {high:g}" if high < 1e9 else "")
              + f", got {v!r}.")
