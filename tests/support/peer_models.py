"""The peers' own models (fast-reid 1.4.0, torchreid 0.2.5, installed from requirements-peers.txt), built through
their APIs with realistic random weights and saved in their checkpoint formats, for the importer tests.

Without the peers the tests that need them skip, except where REID_REQUIRE_PEERS=1 (CI), where a missing peer is
an error, so that the equivalence tests cannot silently stop running.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict

import pytest
import torch
import yaml
from torch import nn


def require(module: str):
    """``module`` imported, or the test skipped (an error under REID_REQUIRE_PEERS=1)."""
    if os.environ.get("REID_REQUIRE_PEERS") == "1":
        return __import__(module)
    return pytest.importorskip(module, reason=f"needs the peer {module} (requirements-peers.txt)")


def _residual_ends(model: nn.Module):
    """The norm layer closing each residual branch: bn3 (bottleneck), bn2 (basic block), conv3.bn (OSNet), W[1]
    (non-local)."""
    for m in model.modules():
        if hasattr(m, "bn3"):
            yield m.bn3
        elif hasattr(m, "bn2") and hasattr(m, "downsample"):
            yield m.bn2
        elif hasattr(m, "gate") and getattr(m.conv3, "bn", None) is not None:
            yield m.conv3.bn
        elif isinstance(getattr(m, "W", None), nn.Sequential):
            yield m.W[1]


def realistic_(model: nn.Module, images: torch.Tensor, seed: int = 0) -> nn.Module:
    """Give every tensor of ``model`` a value that matters: random norm affines, biases and GeM exponents (a freshly
    built model has BN weights of 1, biases of 0 and zero non-local outputs, which would hide a mis-mapped
    tensor), then BatchNorm running statistics measured on ``images`` (as training leaves them), so activations
    keep a trained network's scale. Returns the model in eval mode.

    The residual branches end with small gains (0 to 0.25), as in trained ResNets and as zero-initialised last BNs
    start (Goyal et al. 2017): a BN ResNet with unit gains everywhere is chaotic at initialisation, turning the
    float32 rounding between fast-reid's (x - 123.675) / 58.395 and reid's (x / 255 - 0.485) / 0.229 (a few 1e-7)
    into 1e-4 of its embedding, a property of the random network, not of the conversion."""
    g = torch.Generator().manual_seed(seed)
    norms = (nn.modules.batchnorm._BatchNorm, nn.InstanceNorm2d)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, norms) and module.affine:
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
            elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.05)
        for norm in _residual_ends(model):
            norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) * 0.25)
        for name, p in model.named_parameters():
            if name.endswith("pool_layer.p"):  # fast-reid's learnable GeM exponent
                p.copy_(torch.rand(p.shape, generator=g) + 2.5)
        model.eval()
        batch_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in batch_norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
            m.train()
        model(images)
        for m in batch_norms:
            m.momentum = 0.1
            m.eval()
    return model


def torchreid_model(arch: str, num_classes: int = 11, size=(64, 32), seed: int = 0) -> nn.Module:
    require("torchreid")
    from torchreid.reid import models

    torch.manual_seed(seed)  # the peer initialises from the global generator
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = models.build_model(arch, num_classes, pretrained=False, use_gpu=False)
    g = torch.Generator().manual_seed(seed)
    return realistic_(model, torch.randn(8, 3, *size, generator=g), seed)


def fastreid_config(conf: Dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    return path


def fastreid_model(conf: Dict[str, Any], num_classes: int = 7, seed: int = 0) -> nn.Module:
    """fast-reid's model for the (nested) config ``conf``, built by fastreid.modeling.build_model."""
    require("fastreid")
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model

    cfg = get_cfg()
    with tempfile.TemporaryDirectory() as tmp:
        cfg.merge_from_file(str(fastreid_config(conf, Path(tmp) / "config.yaml")))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    torch.manual_seed(seed)  # the peer initialises from the global generator
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(8, 3, *conf["INPUT"]["SIZE_TEST"], generator=g) * 255
    return realistic_(model, images, seed)


def parameters(model: nn.Module, classifier=("classifier.", "heads.weight", "_head.weight")) -> int:
    """Parameters without the classifier of the training identities."""
    return sum(p.numel() for n, p in model.named_parameters() if not any(c in n for c in classifier))


def assert_matches_peer(report, peer: nn.Module) -> None:
    """The converter compared the converted model with ``peer``'s own on the same pixels: within 1e-5 of the
    embedding scale, with as many parameters (classifiers aside). Printed for the -s log."""
    check = report.verification
    assert check is not None, report.skipped
    print(f"\n{report.converted.plan.description}: {check.line()}")
    assert check.ok and check.relative < 1e-5 and check.scale > 0.05, check.line()
    assert check.parameters == (parameters(peer), parameters(peer))
