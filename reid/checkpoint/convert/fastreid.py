"""fast-reid (JDAI-CV) checkpoints: Baseline (BoT, AGW, SBS; ResNet 18-101, IBN-a, non-local, GeM) and MGN.

fast-reid writes ``{'model': state_dict, 'optimizer': ..., ...}``. The model is described by a fast-reid config:
the ``config.yaml`` it writes next to its checkpoints, or a model-zoo config whose ``_BASE_`` chain names
``Base-*.yml`` files beside it. The config is read here with ``yaml.safe_load`` over fast-reid 1.4's defaults, so
fast-reid need not be installed to convert; it is needed only to verify.

Reproduced exactly, as fast-reid 1.4 computes them: the stem max-pool without padding in ceil mode, non-local
blocks with the embedding width the file holds (fast-reid's code builds 1 channel), GeM with a (1,)-shaped
exponent, the reduction conv directly followed by the BNNeck, and the test embedding after the BNNeck. fast-reid
normalises 0-255 pixels inside its model with MODEL.PIXEL_MEAN / PIXEL_STD; the converted config sets
INPUT.PIXEL_MEAN / PIXEL_STD to those values / 255, which gives the same numbers from reid's [0, 1] pixels, and
its bicubic resize to INPUT.SIZE_TEST.

Legacy model-zoo files (fast-reid's v0.1 release) name the BNNeck ``heads.bnneck`` and the classifier
``heads.classifier``, and store ``pixel_mean`` / ``pixel_std``; fast-reid >= 1.0 silently skips those tensors
(its issues #486, #617). They are renamed to the current layout before mapping, and the stored pixel statistics
must agree with the config.
"""
from __future__ import annotations

import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import yaml

from ...config import load_cfg
from ...utils.errors import CheckpointError
from .core import Plan, Rule, count_parameters, merge_dicts as _merge, read_peer_yaml, state_dict_of
from .verify import PeerModel

PeerConfig = Union[str, os.PathLike, Mapping[str, Any]]
FASTREID_HINT = ("Pass the config.yaml fast-reid wrote beside the checkpoint, or a model-zoo config with its "
                 "Base-*.yml files.")

# fast-reid 1.4's defaults (fastreid/config/defaults.py) of every key the model depends on
DEFAULTS: Dict[str, Any] = {
    "MODEL": {
        "META_ARCHITECTURE": "Baseline",
        "BACKBONE": {"NAME": "build_resnet_backbone", "DEPTH": "50x", "LAST_STRIDE": 1, "FEAT_DIM": 2048,
                     "NORM": "BN", "WITH_IBN": False, "WITH_SE": False, "WITH_NL": False},
        "HEADS": {"NAME": "EmbeddingHead", "NORM": "BN", "EMBEDDING_DIM": 0, "WITH_BNNECK": False,
                  "NECK_FEAT": "before", "POOL_LAYER": "GlobalAvgPool", "CLS_LAYER": "Linear", "SCALE": 1,
                  "MARGIN": 0.0},
        "PIXEL_MEAN": [0.485 * 255, 0.456 * 255, 0.406 * 255],
        "PIXEL_STD": [0.229 * 255, 0.224 * 255, 0.225 * 255],
    },
    "INPUT": {"SIZE_TRAIN": [256, 128], "SIZE_TEST": [256, 128]},
}
# The model part of fast-reid's model-zoo recipes (configs/Base-*.yml), for zoo entries and tests.
RECIPES: Dict[str, Dict[str, Any]] = {
    "bagtricks": {"MODEL": {"META_ARCHITECTURE": "Baseline",
                            "BACKBONE": {"NAME": "build_resnet_backbone", "NORM": "BN", "DEPTH": "50x",
                                         "LAST_STRIDE": 1, "FEAT_DIM": 2048, "WITH_IBN": False},
                            "HEADS": {"NAME": "EmbeddingHead", "NORM": "BN", "WITH_BNNECK": True,
                                      "POOL_LAYER": "GlobalAvgPool", "NECK_FEAT": "before", "CLS_LAYER": "Linear"}},
                  "INPUT": {"SIZE_TRAIN": [256, 128], "SIZE_TEST": [256, 128]}},
    "AGW": {"_BASE_": "bagtricks",
            "MODEL": {"BACKBONE": {"WITH_NL": True}, "HEADS": {"POOL_LAYER": "GeneralizedMeanPooling"}}},
    "SBS": {"_BASE_": "bagtricks",
            "MODEL": {"BACKBONE": {"WITH_NL": True},
                      "HEADS": {"NECK_FEAT": "after", "POOL_LAYER": "GeneralizedMeanPoolingP",
                                "CLS_LAYER": "CircleSoftmax", "SCALE": 64, "MARGIN": 0.35}},
            "INPUT": {"SIZE_TRAIN": [384, 128], "SIZE_TEST": [384, 128]}},
    "MGN": {"_BASE_": "SBS",
            "MODEL": {"META_ARCHITECTURE": "MGN", "BACKBONE": {"WITH_NL": False}, "HEADS": {"EMBEDDING_DIM": 256}}},
}
# fast-reid pooling layer -> (our MODEL.HEADS.POOL, GEM_LEARN)
_POOLS = {"GlobalAvgPool": ("avg", True), "FastGlobalAvgPool": ("avg", True), "GlobalMaxPool": ("max", True),
          "GeneralizedMeanPoolingP": ("gem", True), "GeneralizedMeanPooling": ("gem", False)}
_CLASSIFIERS = {"Linear": "linear", "CircleSoftmax": "circle", "CosSoftmax": "cosface"}
_NORMS = ("BN", "syncBN", "GhostBN")  # identical at inference: BatchNorm with running statistics
# MGN: fast-reid's head names in our head order (built branch by branch: global; part2 + 2 stripes; part3 + 3)
_MGN_HEADS = ("b1_head", "b2_head", "b21_head", "b22_head", "b3_head", "b31_head", "b32_head", "b33_head")
_MAX_BLOCKS = 36  # blocks of the longest ResNet stage (ResNet152's layer3)
_MGN_STEM = (("0", "conv1"), ("1", "bn1"), ("4", "layer1"), ("5", "layer2"), ("6", "layer3.0"))


def recipe(name: str, **model: Mapping[str, Any]) -> Dict[str, Any]:
    """A fast-reid model-zoo recipe (``bagtricks``, ``AGW``, ``SBS``, ``MGN``) with ``MODEL`` overrides, e.g.
    ``recipe("SBS", BACKBONE={"WITH_IBN": True, "DEPTH": "101x"})``."""
    node = RECIPES[name]
    base = recipe(node["_BASE_"]) if "_BASE_" in node else {}
    return _merge(_merge(base, {k: v for k, v in node.items() if k != "_BASE_"}), {"MODEL": model})


def read_config(peer_config: PeerConfig) -> Dict[str, Any]:
    """fast-reid's defaults merged with ``peer_config`` (a YAML file or a nested dict such as :func:`recipe`)."""
    if isinstance(peer_config, Mapping):
        return _merge(DEFAULTS, peer_config)
    return _merge(DEFAULTS, read_peer_yaml(Path(peer_config).resolve(), "fast-reid", FASTREID_HINT))


def _depth(value: Any) -> int:
    text = str(value).rstrip("x")
    if not text.isdigit() or int(text) not in (18, 34, 50, 101):
        raise CheckpointError(f"fast-reid MODEL.BACKBONE.DEPTH {value!r} is not a ResNet depth this importer "
                              f"knows (18x, 34x, 50x, 101x).")
    return int(text)


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise CheckpointError(f"The fast-reid config asks for {what}, which this importer does not convert "
                              f"(supported: Baseline and MGN on build_resnet_backbone with BN, IBN-a, non-local "
                              f"blocks; EmbeddingHead with {', '.join(_POOLS)}).")


def _non_local_width(state: Dict[str, torch.Tensor]) -> int:
    """MODEL.BACKBONE.NL_INTER_CHANNELS for the file: 1 (fast-reid's code) or 0 (half the channels, as fast-reid
    built them between September and December 2020), read from the non-local blocks' ``g`` convolutions."""
    shapes = [v.shape for k, v in state.items() if ".NL_" in f".{k}" and k.endswith(".g.weight")]
    return 0 if shapes and all(s[0] * 2 == s[1] for s in shapes) else 1


def _reid_opts(fr: Dict[str, Any], state: Dict[str, torch.Tensor]) -> List[str]:
    """Our config overrides for fast-reid config ``fr`` (and the file's non-local width)."""
    model, bb, heads, inp = fr["MODEL"], fr["MODEL"]["BACKBONE"], fr["MODEL"]["HEADS"], fr["INPUT"]
    meta = model["META_ARCHITECTURE"]
    _require(meta in ("Baseline", "MGN"), f"MODEL.META_ARCHITECTURE {meta}")
    _require(bb["NAME"] == "build_resnet_backbone", f"MODEL.BACKBONE.NAME {bb['NAME']}")
    _require(not bb["WITH_SE"], "MODEL.BACKBONE.WITH_SE True")
    _require(bb["NORM"] in _NORMS and heads["NORM"] in _NORMS, f"NORM {bb['NORM']} / {heads['NORM']}")
    _require(heads["NAME"] == "EmbeddingHead", f"MODEL.HEADS.NAME {heads['NAME']}")
    _require(heads["POOL_LAYER"] in _POOLS, f"MODEL.HEADS.POOL_LAYER {heads['POOL_LAYER']}")
    _require(meta == "Baseline" or heads["EMBEDDING_DIM"] > 0, "MGN with MODEL.HEADS.EMBEDDING_DIM 0")
    depth = _depth(bb["DEPTH"])
    pool, learn = _POOLS[heads["POOL_LAYER"]]
    non_local = bool(bb["WITH_NL"]) and depth in (50, 101) and meta == "Baseline"  # fast-reid: none for 18 / 34
    inter = _non_local_width(state)
    opts = ["MODEL.META_ARCHITECTURE", meta,
            "MODEL.BACKBONE.NAME", "resnet", "MODEL.BACKBONE.DEPTH", str(depth),
            "MODEL.BACKBONE.LAST_STRIDE", str(bb["LAST_STRIDE"]), "MODEL.BACKBONE.WITH_IBN", str(bool(bb["WITH_IBN"])),
            "MODEL.BACKBONE.IBN_TYPE", "a", "MODEL.BACKBONE.WITH_NL", str(non_local),
            "MODEL.BACKBONE.NL_INTER_CHANNELS", str(inter), "MODEL.BACKBONE.MAXPOOL_CEIL", "True",
            "MODEL.BACKBONE.PRETRAIN", "False",
            "MODEL.HEADS.POOL", pool, "MODEL.HEADS.GEM_LEARN", str(learn), "MODEL.HEADS.GEM_P", "3.0",
            "MODEL.HEADS.NECK", "bnneck" if heads["WITH_BNNECK"] else "none",
            "MODEL.HEADS.EMBEDDING_DIM", str(int(heads["EMBEDDING_DIM"])), "MODEL.HEADS.REDUCTION", "conv",
            "MODEL.HEADS.NECK_FEAT", str(heads["NECK_FEAT"]), "MODEL.HEADS.TEST_FEAT", "after",
            "MODEL.MGN.GLOBAL_STRIDE", str(bb["LAST_STRIDE"]), "MODEL.MGN.CLASSIFIER", "heads",
            "INPUT.SIZE_TEST", str(list(inp["SIZE_TEST"])), "INPUT.SIZE_TRAIN", str(list(inp["SIZE_TRAIN"])),
            "INPUT.INTERPOLATION", "bicubic",
            "INPUT.PIXEL_MEAN", str([float(v) / 255 for v in model["PIXEL_MEAN"]]),
            "INPUT.PIXEL_STD", str([float(v) / 255 for v in model["PIXEL_STD"]])]
    if heads["CLS_LAYER"] in _CLASSIFIERS:  # the classifier is not converted; this only sets a fine-tuning default
        opts += ["MODEL.HEADS.CLS_LAYER", _CLASSIFIERS[heads["CLS_LAYER"]],
                 "MODEL.HEADS.SCALE", str(float(heads["SCALE"])), "MODEL.HEADS.MARGIN", str(float(heads["MARGIN"]))]
    return opts


def _head_rules(peer: str, ours: str, reduction: bool) -> List[Rule]:
    """An EmbeddingHead of fast-reid (``peer`` prefix) onto ours: pool exponent, reduction conv + BNNeck (or the
    BNNeck alone), classifier dropped."""
    if reduction:
        neck = [(rf"{peer}\.bottleneck\.0\.(.+)", rf"{ours}.reduction.0.\1"),
                (rf"{peer}\.bottleneck\.1\.(.+)", rf"{ours}.neck.\1")]
    else:
        neck = [(rf"{peer}\.bottleneck\.0\.(.+)", rf"{ours}.neck.\1")]
    return [(rf"{peer}\.pool_layer\.p", f"{ours}.pool.p"), (rf"{peer}\.weight", None), *neck]


def _rules(meta: str, reduction: bool) -> List[Rule]:
    if meta == "Baseline":
        return [(r"backbone\.(.+)", r"backbone.\1"), *_head_rules("heads", "head", reduction)]
    rules: List[Rule] = [(rf"backbone\.{i}\.(.+)", rf"shared.{name}.\1") for i, name in _MGN_STEM]
    for b in range(3):
        # fast-reid re-indexes layer3[1:] from 0; our branches keep the stage's block numbers (from 1)
        rules += [(rf"b{b + 1}\.0\.{i}\.(.+)", rf"branches.{b}.layer3.{i + 1}.\1") for i in range(_MAX_BLOCKS)]
        rules.append((rf"b{b + 1}\.1\.(.+)", rf"branches.{b}.layer4.\1"))
    for i, name in enumerate(_MGN_HEADS):
        rules += _head_rules(name, f"heads.{i}", reduction)
    return rules


def _normalise_legacy(state: Dict[str, torch.Tensor], fr: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Rename v0.1 zoo keys to fast-reid 1.x's and check stored pixel statistics against the config."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in state.items():
        for old, new in ((".bnneck.", ".bottleneck.0."), (".classifier.weight", ".weight")):
            if old in k and k.replace(old, new) not in state:
                k = k.replace(old, new)
        out[k] = v
    for key in ("pixel_mean", "pixel_std"):
        if key in out:
            stored = out.pop(key).flatten().tolist()
            expected = [float(v) for v in fr["MODEL"][key.upper()]]
            if len(stored) != 3 or max(abs(a - b) for a, b in zip(stored, expected)) > 1e-3:
                raise CheckpointError(f"The file stores {key} {stored} but the fast-reid config has MODEL."
                                      f"{key.upper()} {expected}; pass the config the model was trained with.")
    return out


def _classes(state: Dict[str, torch.Tensor]) -> Optional[int]:
    weight = state.get("heads.weight", state.get("b1_head.weight"))
    return None if weight is None else int(weight.shape[0])


def plan(obj: Any, path: str | Path, peer_config: PeerConfig) -> Plan:
    """The conversion of a loaded fast-reid file ``obj`` (read from ``path``) described by ``peer_config``."""
    fr = read_config(peer_config)
    state = _normalise_legacy(state_dict_of(obj, ("model", "state_dict"), path), fr)
    cfg = load_cfg(opts=_reid_opts(fr, state))
    meta = cfg.MODEL.META_ARCHITECTURE
    hint = ("The file's keys look like torchreid's: use --source torchreid --arch NAME."
            if "conv1.weight" in state or "conv1.conv.weight" in state else
            "Pass the fast-reid config the checkpoint was trained with (its DEPTH, WITH_IBN, WITH_NL, POOL_LAYER, "
            "EMBEDDING_DIM and META_ARCHITECTURE must match the file).")
    heads, bb = fr["MODEL"]["HEADS"], cfg.MODEL.BACKBONE
    parts = [f"R{bb.DEPTH}{'-ibn' if bb.WITH_IBN else ''}" + (" + non-local" if bb.WITH_NL else ""),
             heads["POOL_LAYER"]] + (["BNNeck"] if heads["WITH_BNNECK"] else []) + \
        ([f"{heads['EMBEDDING_DIM']}-d"] if heads["EMBEDDING_DIM"] else [])
    description = f"fast-reid {meta} {', '.join(parts)}"
    config_name = str(peer_config) if not isinstance(peer_config, Mapping) else "built-in recipe"
    return Plan("fastreid", description, cfg, _rules(meta, cfg.MODEL.HEADS.EMBEDDING_DIM > 0), state,
                _classes(state), hint, {"peer_config": config_name, "fastreid_config": fr})


def check_stripes(plan: Plan, model: torch.nn.Module) -> None:
    """fast-reid cuts MGN's part maps with ``torch.chunk``, which equals our stripes when the map height divides
    by 2 and 3 (INPUT.SIZE_TEST of 384 gives 24 rows); refuse a size where the two would differ."""
    if plan.cfg.MODEL.META_ARCHITECTURE != "MGN":
        return
    h, w = plan.cfg.INPUT.SIZE_TEST
    with torch.no_grad():
        rows = model.branches[1](model.shared(torch.zeros(1, 3, h, w))).shape[2]
    if rows % 6:
        raise CheckpointError(f"INPUT.SIZE_TEST {h}x{w} gives MGN part maps of {rows} rows; fast-reid splits them "
                              f"with torch.chunk, which matches reid's stripes only when the rows divide by 6. Use "
                              f"a test height that is a multiple of 96 (fast-reid's 384).")


def peer_model(plan: Plan) -> Optional[PeerModel]:
    """fast-reid's own model (built from the same config) with the file's weights, fed 0-255 pixels as its test
    transform gives them; None when fast-reid is not importable."""
    try:
        from fastreid.config import get_cfg as fastreid_cfg
        from fastreid.modeling import build_model as fastreid_model
    except ImportError:
        return None
    fr = plan.info["fastreid_config"]
    cfg = fastreid_cfg()
    with tempfile.TemporaryDirectory() as tmp:  # fast-reid merges files only
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump({"MODEL": fr["MODEL"], "INPUT": fr["INPUT"]}), encoding="utf-8")
        cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = plan.num_classes or 1
    model = fastreid_model(cfg)
    result = model.load_state_dict(plan.state, strict=False)
    classifier = ("heads.weight",) + tuple(f"{h}.weight" for h in _MGN_HEADS)
    leftover = [k for k in result.missing_keys if k not in classifier] + list(result.unexpected_keys)
    if leftover:
        raise CheckpointError(f"fast-reid's model does not accept the file either: {leftover[:8]}.")
    model.eval()
    params = count_parameters(model, lambda name: name in classifier)

    def embed(images: Sequence[Any]) -> torch.Tensor:
        # fast-reid's ToTensor keeps 0-255 values (no scaling); its model subtracts PIXEL_MEAN, divides by PIXEL_STD.
        # (fastreid.data itself no longer imports on torch >= 2: it needs torch._six.)
        pixels = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images]).float()
        return model(pixels)

    return PeerModel(f"fast-reid {version('fastreid')} {plan.cfg.MODEL.META_ARCHITECTURE}", params, embed)
