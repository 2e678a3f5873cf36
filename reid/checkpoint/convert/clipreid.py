"""CLIP-ReID (Syliz517/CLIP-ReID) checkpoints: CLIP ViT-B/16 (with overlapping patches and SIE, "SIE-OLP") and
CLIP RN50, baseline and CLIP-ReID models alike.

CLIP-ReID saves its whole model: ``image_encoder.*`` (CLIP's visual encoder, position embeddings already resized
to the training grid), ``cv_embed`` (SIE), ``bottleneck`` / ``bottleneck_proj`` and their classifiers, plus the
text side it trains with (``prompt_learner.*``, ``text_encoder.*``), which image embeddings never use and which
is not converted. The config is its training YAML (``configs/person/vit_clipreid.yml``), read over CLIP-ReID's
defaults; the model's sizes come from the file.

Reproduced as CLIP-ReID tests: its config's input (the person ViT configs normalise with mean / std 0.5, the RN50
ones with ImageNet's; a bilinear resize to INPUT.SIZE_TEST), the camera embedding added to the class token with
SIE_COE, and the concatenation of the feature before CLIP's projection and the projected one (ViT-B/16: 768 + 512,
RN50: 2048 + 1024), before or after their BNNecks by TEST.NECK_FEAT; CLIP-ReID's ResNet keeps stride 1 in layer4.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

import torch

from ...config import load_cfg
from ...utils.errors import CheckpointError
from .core import Plan, Rule, PeerConfig, merge_dicts, peer_config_dict, state_dict_of
from .transreid import input_opts, sie_cameras

HINT = "Pass the YAML the checkpoint was trained with (e.g. configs/person/vit_clipreid.yml of CLIP-ReID)."
DEFAULTS: Dict[str, Any] = {  # CLIP-ReID's config/defaults_base.py, the keys the image model depends on
    "MODEL": {"NAME": "resnet50", "STRIDE_SIZE": [16, 16], "SIE_COE": 3.0, "SIE_CAMERA": False, "SIE_VIEW": False},
    "INPUT": {"SIZE_TRAIN": [384, 128], "SIZE_TEST": [384, 128], "PIXEL_MEAN": [0.485, 0.456, 0.406],
              "PIXEL_STD": [0.229, 0.224, 0.225]},
    "TEST": {"NECK_FEAT": "after", "FEAT_NORM": "yes"},
}
_RULES: List[Rule] = [
    (r"(prompt_learner|text_encoder)\..+", None),
    (r"classifier(_proj)?\.weight", None),
    (r"cv_embed", "backbone.sie.weight"),
    (r"image_encoder\.(.+)", r"backbone.\1"),
    (r"bottleneck\.(.+)", r"heads.0.neck.\1"),
    (r"bottleneck_proj\.(.+)", r"heads.1.neck.\1"),
]


def _size_opts(state: Dict[str, torch.Tensor], name: str) -> List[str]:
    """Our backbone keys for the file's image encoder (sizes read from its tensors, as CLIP's build_model does)."""
    if name == "ViT-B-16":
        if "image_encoder.proj" not in state:
            raise CheckpointError(f"MODEL.NAME ViT-B-16 but the file has no image_encoder.proj. {HINT}")
        width = state["image_encoder.conv1.weight"].shape[0]
        layers = len({k.split(".")[3] for k in state if k.startswith("image_encoder.transformer.resblocks.")})
        return ["MODEL.BACKBONE.NAME", "clip_vit", "MODEL.VIT.EMBED_DIM", str(width), "MODEL.VIT.DEPTH", str(layers),
                "MODEL.VIT.NUM_HEADS", str(width // 64), "MODEL.VIT.PATCH_SIZE",
                str(state["image_encoder.conv1.weight"].shape[-1]), "MODEL.CLIP.PROJ_DIM",
                str(state["image_encoder.proj"].shape[1])]
    if name == "RN50":
        if "image_encoder.attnpool.c_proj.weight" not in state:
            raise CheckpointError(f"MODEL.NAME RN50 but the file has no image_encoder.attnpool. {HINT}")
        layers = [len({k.split(".")[2] for k in state if k.startswith(f"image_encoder.layer{i}.")}) for i in range(1, 5)]
        return ["MODEL.BACKBONE.NAME", "clip_resnet", "MODEL.BACKBONE.LAYERS", str(layers), "MODEL.BACKBONE.WIDTH",
                str(state["image_encoder.layer1.0.conv1.weight"].shape[0]), "MODEL.BACKBONE.LAST_STRIDE", "1",
                "MODEL.CLIP.PROJ_DIM", str(state["image_encoder.attnpool.c_proj.weight"].shape[0])]
    raise CheckpointError(f"CLIP-ReID MODEL.NAME {name!r} is not converted (supported: ViT-B-16, RN50).")


def plan(obj: Any, path: str | Path, peer_config: PeerConfig) -> Plan:
    """The conversion of a loaded CLIP-ReID file ``obj`` described by its training YAML ``peer_config``."""
    cr = merge_dicts(DEFAULTS, peer_config_dict(peer_config, "CLIP-ReID", HINT))
    model = cr["MODEL"]
    state = state_dict_of(obj, ("state_dict", "model"), path)
    opts = ["MODEL.META_ARCHITECTURE", "CLIPReID", *_size_opts(state, str(model["NAME"])),
            "MODEL.VIT.STRIDE", str(list(model["STRIDE_SIZE"])), *input_opts(cr["INPUT"], cr["TEST"])]
    cameras = sie_cameras(state, "cv_embed", model) if model["NAME"] == "ViT-B-16" else 0
    opts += ["MODEL.VIT.SIE_CAMERAS", str(cameras), "MODEL.VIT.SIE_COEF", str(float(model["SIE_COE"]))]
    cfg = load_cfg(opts=opts)
    classifier = state.get("classifier.weight")
    extra = ([f"stride {model['STRIDE_SIZE'][0]}"] if model["NAME"] == "ViT-B-16" else []) + \
        ([f"SIE {cameras} cameras"] if cameras else [])
    return Plan("clipreid", f"CLIP-ReID {model['NAME']}" + (f" ({', '.join(extra)})" if extra else ""), cfg,
                _RULES, state, None if classifier is None else int(classifier.shape[0]), HINT,
                {"peer_config": str(peer_config) if not isinstance(peer_config, Mapping) else "built-in recipe", "clipreid_config": cr})
