"""Fixtures of the transformer importers: weights made from a formula, and the peers' embeddings of them.

TransReID, CLIP-ReID and SOLIDER-REID cannot be installed, so their own code ran once, outside the repository, on
weights that :func:`formula_weights` fills from the names and shapes of the peer's state dict, and on the stored
pixels and cameras; ``tests/fixtures/<peer>.pt`` holds those names, shapes, pixels, cameras and the peer's
embeddings (tests/fixtures/README.md says how they were made). The weights themselves are not stored: a
deterministic hash of each element's index gives them back here, the same on every machine.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _hash_uniform(n: int, salt: int) -> torch.Tensor:
    """``n`` values in [-1, 1) from a sine hash of (index, salt) in float64 (no random generator involved)."""
    x = torch.arange(n, dtype=torch.float64) * 12.9898 + salt * 78.233
    return torch.frac(torch.sin(x).abs() * 43758.5453) * 2 - 1


def formula_weights(keys: Sequence[Tuple[str, Sequence[int], str]]) -> Dict[str, torch.Tensor]:
    """A state dict for (name, shape, dtype) entries: normalisation scales near 1, variances in [0.5, 1.5],
    other floats uniform with a 1 / sqrt(fan-in) scale; integer buffers (indices, counters) zero."""
    out: Dict[str, torch.Tensor] = {}
    for salt, (name, shape, dtype) in enumerate(keys):
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        if not dtype.startswith("torch.float"):
            out[name] = torch.zeros(shape, dtype=getattr(torch, dtype.split(".")[1]))
            continue
        u = _hash_uniform(n, salt + 1)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            v = 1.0 + 0.5 * u
        elif len(shape) == 1 and any(t in name for t in ("norm", "ln_", "bn", "bottleneck")) and leaf == "weight":
            v = 1.0 + 0.2 * u
        elif len(shape) <= 1:
            v = 0.1 * u
        else:
            fan_in = n // shape[0] if len(shape) > 1 and shape[0] else n
            v = u * (1.0 / math.sqrt(max(fan_in, 1))) * 1.7
        out[name] = v.reshape(shape).to(torch.float32)
    return out


def key_list(state: Dict[str, torch.Tensor]) -> List[Tuple[str, List[int], str]]:
    """(name, shape, dtype) of every tensor of a state dict, the form fixtures store."""
    return [(k, list(v.shape), str(v.dtype)) for k, v in state.items()]


def converted_difference(fixture: dict, tmp: Path, weights_name: str = "model.pth") -> Tuple[float, float, dict]:
    """Write the fixture's peer weights and YAML to ``tmp``, convert them with reid-convert's function, embed the
    stored pixels and cameras with the converted checkpoint as every tool loads it; returns (largest absolute
    difference from the peer's embeddings, their largest absolute value, the conversion report)."""
    import numpy as np
    from PIL import Image

    from reid.checkpoint.convert import convert_checkpoint
    from reid.checkpoint.inference import load_for_inference
    from reid.data.transforms import build_test_transform

    weights, config = tmp / weights_name, tmp / "peer_config.yml"
    torch.save(formula_weights(fixture["keys"]), weights)
    config.write_text(fixture["peer_config"], encoding="utf-8")
    report = convert_checkpoint(fixture["peer"], weights, tmp / "converted.pt", peer_config=config)
    model, cfg = load_for_inference(tmp / "converted.pt", device="cpu")
    transform = build_test_transform(cfg)
    images = torch.stack([transform(Image.fromarray(np.asarray(im))) for im in fixture["images"]])
    with torch.inference_mode():
        ours = model(images, camids=fixture["camids"]).float()
    expected = fixture["expected"]
    assert ours.shape == expected.shape, (ours.shape, expected.shape)
    return (ours - expected).abs().max().item(), expected.abs().max().item(), report
