"""SOLIDER-REID (tinyvision/SOLIDER-REID) checkpoints: Swin-T / S / B with SOLIDER's semantic weight.

SOLIDER-REID saves the model's ``state_dict()``: ``base.*`` (the Swin in mmsegmentation's layout), ``bottleneck``
(BNNeck), ``classifier`` and, with MODEL.REDUCE_FEAT_DIM, ``fcneck``. The config is its training YAML
(``configs/msmt17/swin_base.yml``) over SOLIDER-REID's defaults; the Swin sizes come from the file.

The semantic weight is not in those YAML files: SOLIDER-REID's run.sh / runtest.sh pass MODEL.SEMANTIC_WEIGHT 0.2
on the command line ("The semantic weight is set to 0.2 in these experiments", its README), so 0.2 is used unless
the YAML sets it; a model trained with another value needs ``MODEL.SWIN.SEMANTIC_WEIGHT`` as an override.

Reproduced as SOLIDER-REID tests: mean / std 0.5 and a bilinear resize to INPUT.SIZE_TEST (384 x 128), the global
average of the last stage after ``norm3`` (1024-d for Swin-B), reduced by ``fcneck`` when present, before or after
the BNNeck by TEST.NECK_FEAT. Not converted, as SOLIDER's output never uses them: the other stages' norms
(``norm0``-``norm2``), the last stage's semantic modulation, the relative position indices (recomputed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

import torch

from ...config import load_cfg
from ...utils.errors import CheckpointError
from .core import Plan, Rule, PeerConfig, merge_dicts, peer_config_dict, state_dict_of
from .transreid import input_opts

HINT = "Pass the YAML the checkpoint was trained with (e.g. configs/msmt17/swin_base.yml of SOLIDER-REID)."
SEMANTIC_WEIGHT = 0.2  # SOLIDER-REID's run.sh / runtest.sh and README
DEFAULTS: Dict[str, Any] = {  # SOLIDER-REID's config/defaults.py, the keys the model depends on
    "MODEL": {"NAME": "resnet50", "TRANSFORMER_TYPE": "None", "JPM": False, "REDUCE_FEAT_DIM": False,
              "FEAT_DIM": 512, "DROP_PATH": 0.1},
    "INPUT": {"SIZE_TRAIN": [384, 128], "SIZE_TEST": [384, 128], "PIXEL_MEAN": [0.485, 0.456, 0.406],
              "PIXEL_STD": [0.229, 0.224, 0.225]},
    "TEST": {"NECK_FEAT": "after", "FEAT_NORM": "yes"},
}
_TYPES = ("swin_base_patch4_window7_224", "swin_small_patch4_window7_224", "swin_tiny_patch4_window7_224")


def _swin_opts(state: Dict[str, torch.Tensor]) -> List[str]:
    """MODEL.SWIN sizes read from the file's tensors."""
    if "base.patch_embed.projection.weight" not in state:
        raise CheckpointError(f"The file holds no SOLIDER Swin (no base.patch_embed.projection.weight; first keys: "
                              f"{', '.join(list(state)[:4])}). {HINT}")
    stages = sorted({int(k.split(".")[2]) for k in state if k.startswith("base.stages.")})
    depths = [len({k.split(".")[4] for k in state if k.startswith(f"base.stages.{i}.blocks.")}) for i in stages]
    heads = [int(state[f"base.stages.{i}.blocks.0.attn.w_msa.relative_position_bias_table"].shape[1]) for i in stages]
    table = state["base.stages.0.blocks.0.attn.w_msa.relative_position_bias_table"].shape[0]
    window = (int(round(table ** 0.5)) + 1) // 2
    return ["MODEL.SWIN.EMBED_DIM", str(state["base.patch_embed.projection.weight"].shape[0]),
            "MODEL.SWIN.DEPTHS", str(depths), "MODEL.SWIN.NUM_HEADS", str(heads), "MODEL.SWIN.WINDOW", str(window)]


def _rules(state: Dict[str, torch.Tensor]) -> List[Rule]:
    last = max(int(k.split(".")[2]) for k in state if k.startswith("base.stages."))
    return [(r"classifier\.weight", None), (r"base\..*relative_position_index", None),
            (rf"base\.norm[0-{last - 1}]\..+", None), (rf"base\.semantic_embed_[wb]\.{last}\..+", None),
            (r"base\.(.+)", r"backbone.\1"), (r"bottleneck\.(.+)", r"head.neck.\1"),
            (r"fcneck\.weight", "head.reduction.0.weight")]


def plan(obj: Any, path: str | Path, peer_config: PeerConfig) -> Plan:
    """The conversion of a loaded SOLIDER-REID file ``obj`` described by its training YAML ``peer_config``."""
    raw = peer_config_dict(peer_config, "SOLIDER-REID", HINT)
    sr = merge_dicts(DEFAULTS, raw)
    model = sr["MODEL"]
    if model["NAME"] != "transformer" or model["TRANSFORMER_TYPE"] not in _TYPES or model["JPM"]:
        raise CheckpointError(f"The SOLIDER-REID config builds {model['NAME']} / {model['TRANSFORMER_TYPE']}"
                              f"{' with JPM' if model['JPM'] else ''}; this importer converts its Swin models "
                              f"({', '.join(_TYPES)}) without JPM.")
    state = state_dict_of(obj, ("state_dict", "model"), path)
    weight = float(raw.get("MODEL", {}).get("SEMANTIC_WEIGHT", SEMANTIC_WEIGHT))
    has_semantic = any(k.startswith("base.semantic_embed_w.") for k in state)
    reduce = bool(model["REDUCE_FEAT_DIM"])
    opts = ["MODEL.META_ARCHITECTURE", "Baseline", "MODEL.BACKBONE.NAME", "swin", *_swin_opts(state),
            "MODEL.SWIN.SEMANTIC_WEIGHT", str(weight if has_semantic else -1.0),
            "MODEL.SWIN.DROP_PATH", str(float(model["DROP_PATH"])), *input_opts(sr["INPUT"], sr["TEST"])]
    if reduce:
        opts += ["MODEL.HEADS.EMBEDDING_DIM", str(model["FEAT_DIM"]), "MODEL.HEADS.REDUCTION", "conv"]
    cfg = load_cfg(opts=opts)
    classifier = state.get("classifier.weight")
    sw = cfg.MODEL.SWIN
    description = (f"SOLIDER-REID Swin ({sw.EMBED_DIM}-d, depths {list(sw.DEPTHS)}, semantic weight "
                   f"{sw.SEMANTIC_WEIGHT:g})")
    return Plan("solider", description, cfg, _rules(state), state,
                None if classifier is None else int(classifier.shape[0]), HINT,
                {"peer_config": str(peer_config) if not isinstance(peer_config, Mapping) else "built-in recipe", "solider_config": sr})
