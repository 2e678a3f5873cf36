"""TransReID (damo-cv/TransReID) checkpoints: ViT-B/16 and DeiT-S/16 with overlapping patches, SIE and JPM.

TransReID saves the model's ``state_dict()`` (``base.*`` the ViT, ``b1`` / ``b2`` the JPM branches,
``bottleneck*`` the BNNecks, ``classifier*``). The model is described by the YAML it was trained with
(``configs/<set>/vit_transreid_stride.yml``), read here over TransReID's defaults with ``yaml.safe_load``, so
TransReID need not be present (it cannot be installed from the package index).

Reproduced as TransReID tests: the input of its config (mean / std 0.5, a bilinear resize to INPUT.SIZE_TEST),
SIE with the file's camera table and the config's coefficient, the global feature and the K local ones divided by
K (JPM: 3840-d), before or after the BNNecks by TEST.NECK_FEAT, cosine distance (TEST.FEAT_NORM yes). Not
converted, as TransReID's forward never uses them: the ImageNet ``base.fc`` and, with JPM, the backbone's last
block and final norm (the branches hold their copies). The classifiers are dropped as for every importer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

import torch

from ...config import load_cfg
from ...utils.errors import CheckpointError
from .core import Plan, Rule, PeerConfig, merge_dicts, peer_config_dict, state_dict_of

HINT = "Pass the YAML the checkpoint was trained with (e.g. configs/MSMT17/vit_transreid_stride.yml of TransReID)."
# TransReID's defaults (config/defaults.py) of every key the model and its test input depend on
DEFAULTS: Dict[str, Any] = {
    "MODEL": {"NAME": "resnet50", "TRANSFORMER_TYPE": "None", "STRIDE_SIZE": [16, 16], "JPM": False,
              "SHIFT_NUM": 5, "SHUFFLE_GROUP": 2, "DEVIDE_LENGTH": 4, "RE_ARRANGE": True, "SIE_COE": 3.0,
              "SIE_CAMERA": False, "SIE_VIEW": False, "DROP_PATH": 0.1, "ID_LOSS_TYPE": "softmax"},
    "INPUT": {"SIZE_TRAIN": [384, 128], "SIZE_TEST": [384, 128], "PIXEL_MEAN": [0.485, 0.456, 0.406],
              "PIXEL_STD": [0.229, 0.224, 0.225]},
    "TEST": {"NECK_FEAT": "after", "FEAT_NORM": "yes"},
}
# TRANSFORMER_TYPE -> attention heads (the widths and depths are read from the file)
_TYPES = {"vit_base_patch16_224_TransReID": 12, "deit_base_patch16_224_TransReID": 12,
          "deit_small_patch16_224_TransReID": 6}


def read_config(peer_config: PeerConfig) -> Dict[str, Any]:
    return merge_dicts(DEFAULTS, peer_config_dict(peer_config, "TransReID", HINT))


def input_opts(inp: Dict[str, Any], test: Dict[str, Any]) -> List[str]:
    """Our INPUT / TEST keys for the peers that share TransReID's data code (TransReID, CLIP-ReID, SOLIDER-REID):
    a bilinear test resize (torchvision's default there), the config's statistics, cosine with FEAT_NORM."""
    return ["INPUT.SIZE_TRAIN", str(list(inp["SIZE_TRAIN"])), "INPUT.SIZE_TEST", str(list(inp["SIZE_TEST"])),
            "INPUT.INTERPOLATION", "bilinear", "INPUT.PIXEL_MEAN", str([float(v) for v in inp["PIXEL_MEAN"]]),
            "INPUT.PIXEL_STD", str([float(v) for v in inp["PIXEL_STD"]]),
            "MODEL.HEADS.TEST_FEAT", str(test["NECK_FEAT"]), "MODEL.HEADS.NECK", "bnneck",
            "MODEL.HEADS.CLS_LAYER", "linear", "MODEL.HEADS.POOL", "avg", "MODEL.HEADS.EMBEDDING_DIM", "0",
            "MODEL.BACKBONE.PRETRAIN", "False",
            "TEST.METRIC", "cosine" if str(test["FEAT_NORM"]) == "yes" else "euclidean"]


def sie_cameras(state: Dict[str, torch.Tensor], key: str, model: Dict[str, Any]) -> int:
    """MODEL.VIT.SIE_CAMERAS for the file: the rows of its camera table (0 without SIE)."""
    if model["SIE_VIEW"]:
        raise CheckpointError("The config enables SIE_VIEW (viewpoint embeddings of TransReID's vehicle models); "
                              "this importer converts person models with camera embeddings only.")
    if not model["SIE_CAMERA"]:
        return 0
    if key not in state:
        raise CheckpointError(f"The config enables SIE_CAMERA but the file has no {key}; pass the config the "
                              f"checkpoint was trained with.")
    return int(state[key].shape[0])


def _vit_size(state: Dict[str, torch.Tensor], kind: str) -> List[str]:
    if kind not in _TYPES:
        raise CheckpointError(f"TransReID MODEL.TRANSFORMER_TYPE {kind!r} is not converted (supported: "
                              f"{', '.join(_TYPES)}; vit_small_patch16_224_TransReID has no qkv bias).")
    if "base.cls_token" not in state:
        raise CheckpointError(f"The file holds no TransReID ViT (no base.cls_token; first keys: "
                              f"{', '.join(list(state)[:4])}). {HINT}")
    proj = state["base.patch_embed.proj.weight"]
    depth = len({k.split(".")[2] for k in state if k.startswith("base.blocks.")})
    mlp = state["base.blocks.0.mlp.fc1.weight"].shape[0] / proj.shape[0]
    return ["MODEL.VIT.EMBED_DIM", str(proj.shape[0]), "MODEL.VIT.DEPTH", str(depth), "MODEL.VIT.NUM_HEADS",
            str(_TYPES[kind]), "MODEL.VIT.MLP_RATIO", str(mlp), "MODEL.VIT.PATCH_SIZE", str(proj.shape[-1])]


def _rules(jpm: bool, depth: int) -> List[Rule]:
    rules: List[Rule] = [(r"classifier(_\d+)?\.weight", None), (r"base\.fc\.(weight|bias)", None),
                         (r"base\.sie_embed", "backbone.sie.weight")]
    if not jpm:
        return rules + [(r"base\.(.+)", r"backbone.\1"), (r"bottleneck\.(.+)", r"head.neck.\1")]
    return rules + [(rf"base\.blocks\.{depth - 1}\..+", None), (r"base\.norm\..+", None),
                    (r"base\.(.+)", r"backbone.\1"),
                    (r"b1\.(.+)", r"branches.0.\1"), (r"b2\.(.+)", r"branches.1.\1"),
                    (r"bottleneck\.(.+)", r"heads.0.neck.\1"), (r"bottleneck_(\d+)\.(.+)", r"heads.\1.neck.\2")]


def plan(obj: Any, path: str | Path, peer_config: PeerConfig) -> Plan:
    """The conversion of a loaded TransReID file ``obj`` described by its training YAML ``peer_config``."""
    tr = read_config(peer_config)
    model, inp = tr["MODEL"], tr["INPUT"]
    if model["NAME"] != "transformer":
        raise CheckpointError(f"The TransReID config builds MODEL.NAME {model['NAME']!r}; this importer converts its "
                              f"transformers (MODEL.NAME transformer).")
    state = state_dict_of(obj, ("state_dict", "model"), path)
    size = _vit_size(state, model["TRANSFORMER_TYPE"])
    depth = int(size[3])
    cameras = sie_cameras(state, "base.sie_embed", model)
    jpm = bool(model["JPM"])
    opts = ["MODEL.META_ARCHITECTURE", "TransReID" if jpm else "Baseline", "MODEL.BACKBONE.NAME", "vit", *size,
            "MODEL.VIT.STRIDE", str(list(model["STRIDE_SIZE"])), "MODEL.VIT.SIE_CAMERAS", str(cameras),
            "MODEL.VIT.SIE_COEF", str(float(model["SIE_COE"])), "MODEL.VIT.DROP_PATH", str(float(model["DROP_PATH"])),
            "MODEL.JPM.PARTS", str(model["DEVIDE_LENGTH"]), "MODEL.JPM.SHIFT", str(model["SHIFT_NUM"]),
            "MODEL.JPM.GROUPS", str(model["SHUFFLE_GROUP"]), "MODEL.JPM.REARRANGE", str(bool(model["RE_ARRANGE"])),
            *input_opts(inp, tr["TEST"])]
    cfg = load_cfg(opts=opts)
    classifier = state.get("classifier.weight")
    parts = [f"ViT {size[1]}-d x {depth}", f"stride {model['STRIDE_SIZE'][0]}"] + \
        ([f"SIE {cameras} cameras"] if cameras else []) + ([f"JPM {model['DEVIDE_LENGTH']} parts"] if jpm else [])
    return Plan("transreid", f"TransReID {', '.join(parts)}", cfg, _rules(jpm, depth), state,
                None if classifier is None else int(classifier.shape[0]), HINT,
                {"peer_config": str(peer_config) if not isinstance(peer_config, Mapping) else "built-in recipe", "transreid_config": tr})
