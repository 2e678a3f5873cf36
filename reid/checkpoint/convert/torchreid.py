"""torchreid (Zhou et al.'s deep-person-reid) checkpoints: the OSNet family, ResNet50, ResNet50-fc512, ResNet50-IBN.

torchreid writes ``{'state_dict': ..., 'epoch': ..., 'rank1': ...}`` (often with DataParallel's ``module.``
prefixes); a bare state dict is accepted too. Its models end in global average pooling, an optional ``fc``
(Linear + BN + ReLU, the test embedding) and a linear ``classifier``; here those are ``MODEL.HEADS.POOL avg``,
``REDUCTION linear_bn_relu`` and no neck. Its test transform resizes bilinearly to 256 x 128, scales pixels to
[0, 1] and normalises with ImageNet's mean and std, which the converted config reproduces.
"""
from __future__ import annotations

import contextlib
import io
from importlib.metadata import version
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from ...config import load_cfg
from ...modeling import build_model
from ...modeling.backbones.osnet import SPECS as OSNET_SPECS
from ...utils.errors import CheckpointError
from .core import Plan, Rule, count_parameters, map_state, state_dict_of
from .verify import PeerModel

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# torchreid's defaults: 256 x 128, torchvision's (bilinear) Resize, [0, 1] pixels, ImageNet statistics
_INPUT = ("INPUT.SIZE_TEST", "[256, 128]", "INPUT.SIZE_TRAIN", "[256, 128]", "INPUT.INTERPOLATION", "bilinear",
          "INPUT.PIXEL_MEAN", str(IMAGENET_MEAN), "INPUT.PIXEL_STD", str(IMAGENET_STD))
_HEAD = ("MODEL.HEADS.POOL", "avg", "MODEL.HEADS.NECK", "none", "MODEL.HEADS.CLS_LAYER", "linear",
         "MODEL.BACKBONE.PRETRAIN", "False")
_FC512 = ("MODEL.HEADS.EMBEDDING_DIM", "512", "MODEL.HEADS.REDUCTION", "linear_bn_relu")
# torchreid's fc (Linear, BatchNorm1d) -> our reduction (Flatten, Linear, BatchNorm1d); its classifier is dropped
_FC_RULES: Tuple[Rule, ...] = ((r"fc\.0\.(.+)", r"head.reduction.1.\1"), (r"fc\.1\.(.+)", r"head.reduction.2.\1"))
_CLASSIFIER_RULES: Tuple[Rule, ...] = ((r"classifier\.(weight|bias)", None),)


@dataclass(frozen=True)
class Arch:
    """How a torchreid architecture is built here."""

    opts: Tuple[str, ...]  # our config overrides
    fc: bool  # has torchreid's 512-d fc layer
    metric: str = "euclidean"  # the distance torchreid's model zoo evaluates it with


def _resnet50(last_stride: int, *extra: str, fc: bool = False) -> Arch:
    opts = ("MODEL.BACKBONE.NAME", "resnet", "MODEL.BACKBONE.DEPTH", "50", "MODEL.BACKBONE.LAST_STRIDE",
            str(last_stride), *extra)
    return Arch(opts + (_FC512 if fc else ()), fc)


ARCHS: Dict[str, Arch] = {
    **{name: Arch(("MODEL.BACKBONE.NAME", name) + _FC512, True, "cosine" if "_ain_" in name else "euclidean")
       for name in OSNET_SPECS},
    "resnet50": _resnet50(2),
    "resnet50_fc512": _resnet50(1, fc=True),
    "resnet50_ibn_a": _resnet50(2, "MODEL.BACKBONE.WITH_IBN", "True", "MODEL.BACKBONE.IBN_TYPE", "a"),
    "resnet50_ibn_b": _resnet50(2, "MODEL.BACKBONE.WITH_IBN", "True", "MODEL.BACKBONE.IBN_TYPE", "b"),
}
_OSNET_WIDTHS = {64: "x1_0", 48: "x0_75", 32: "x0_5", 16: "x0_25"}


def guess_arch(state: Dict[str, torch.Tensor]) -> Optional[str]:
    """The torchreid architecture whose parameter names and stem width the file has (None when none fits)."""
    if "conv1.conv.weight" in state:
        width = _OSNET_WIDTHS.get(state["conv1.conv.weight"].shape[0])
        if width is None:
            return None
        if any(".conv2.0.layers." in k for k in state):
            return f"osnet_ain_{width}"
        return "osnet_ibn_x1_0" if "conv1.bn.running_mean" not in state else f"osnet_{width}"
    if "layer1.0.conv1.weight" not in state:
        return None
    if "layer1.0.bn1.IN.weight" in state:
        return "resnet50_ibn_a"
    if "bn1.running_mean" not in state:
        return "resnet50_ibn_b"
    return "resnet50_fc512" if "fc.0.weight" in state else "resnet50"


def fitting_arch(state: Dict[str, torch.Tensor], path: str | Path, exclude: str = "") -> Optional[str]:
    """The torchreid architecture (other than ``exclude``) every tensor of ``state`` maps onto exactly, checked by
    mapping it onto each architecture's model (built without memory, on the meta device), the name's guess first;
    None when none fits."""
    guess = guess_arch(state)
    for arch in ([guess] if guess else []) + sorted(a for a in ARCHS if a != guess):
        if arch == exclude:
            continue
        candidate = plan({"state_dict": state}, path, arch)
        with torch.device("meta"):
            model = build_model(candidate.cfg, num_classes=1, pretrained=False)
        try:
            map_state(candidate, model)
        except CheckpointError:
            continue
        return arch
    return None


def plan(obj: Any, path: str | Path, arch: str) -> Plan:
    """The conversion of a loaded torchreid file ``obj`` (read from ``path``) as architecture ``arch``."""
    if arch not in ARCHS:
        raise CheckpointError(f"--arch {arch!r} is not a torchreid architecture this importer knows; choose one of "
                              f"{', '.join(sorted(ARCHS))}.")
    state = state_dict_of(obj, ("state_dict", "model"), path)
    if any(k.startswith(("backbone.", "heads.", "b1_head.")) for k in state):
        hint = "The file's keys (backbone.*, heads.*) are fast-reid's: use --source fastreid --peer-config CONFIG."
    else:
        guess = guess_arch(state)
        hint = (f"The file looks like torchreid's {guess}: try --arch {guess}." if guess and guess != arch else
                f"Check --arch (the file's first keys: {', '.join(list(state)[:4])}).")
    spec = ARCHS[arch]
    cfg = load_cfg(opts=[*spec.opts, *_HEAD, *_INPUT, "TEST.METRIC", spec.metric])
    classifier = state.get("classifier.weight")
    rules = _CLASSIFIER_RULES + (_FC_RULES if spec.fc else ()) + ((r"(.+)", r"backbone.\1"),)
    return Plan("torchreid", f"torchreid {arch}", cfg, rules, state,
                None if classifier is None else int(classifier.shape[0]), hint, {"arch": arch})


def peer_model(plan: Plan) -> Optional[PeerModel]:
    """torchreid's own model with the file's weights and its own test transform; None when torchreid is not
    importable."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchreid prints while importing and building
            from torchreid.reid import models
            from torchreid.reid.data.transforms import build_transforms
    except ImportError:
        return None
    arch = plan.info["arch"]
    with contextlib.redirect_stdout(io.StringIO()):
        model = models.build_model(arch, plan.num_classes or 1, pretrained=False, use_gpu=False)
        h, w = plan.cfg.INPUT.SIZE_TEST
        _, transform = build_transforms(h, w, transforms=None, norm_mean=IMAGENET_MEAN, norm_std=IMAGENET_STD)
    result = model.load_state_dict(plan.state, strict=False)
    leftover = [k for k in result.missing_keys if not k.startswith("classifier.")] + list(result.unexpected_keys)
    if leftover:
        raise CheckpointError(f"torchreid's {arch} does not accept the file either: {leftover[:8]}.")
    model.eval()
    params = count_parameters(model, lambda name: name.startswith("classifier."))

    def embed(images: Sequence[Any]) -> torch.Tensor:
        return model(torch.stack([transform(im) for im in images]))

    return PeerModel(f"torchreid {version('torchreid')} {arch}", params, embed)
