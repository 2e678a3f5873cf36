"""``build_criterion(cfg)``: the weighted sum of the losses named in MODEL.LOSSES.NAME, each averaged over heads."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple

from torch import Tensor, nn

from ...utils.errors import ConfigError, ReIDError
from ._config import cfg_get
from .registry import LOSS_REGISTRY

_INPUTS = {"class": "logits", "pair": "features"}  # which model output each kind of loss consumes


class Criterion(nn.Module):
    """``criterion(outputs, pids)`` -> {"loss_<name>": weight * mean over heads of loss(head, pids)}.

    Class losses (``kind = "class"``) see every tensor of ``outputs["logits"]``, pair losses every tensor of
    ``outputs["features"]``; the total loss is the sum of the returned terms. Averaging over heads (fast-reid's MGN
    weighs its eight classification terms by 1/8, its pair terms by 1/5) keeps a multi-head model's loss on the
    scale of a one-head model's, so the weights and the learning rate mean the same for both.
    """

    def __init__(self, terms: Sequence[Tuple[str, nn.Module, float]]) -> None:
        super().__init__()
        self.losses = nn.ModuleDict({name: loss for name, loss, _ in terms})
        self.weights: Dict[str, float] = {name: float(w) for name, _, w in terms}

    def forward(self, outputs: Mapping[str, List[Tensor]], pids: Tensor) -> Dict[str, Tensor]:
        terms = {}
        for name, loss in self.losses.items():
            key = _INPUTS[loss.kind]
            heads = outputs.get(key) or []
            if not heads:
                raise ReIDError(f"MODEL.LOSSES.NAME includes {type(loss).__name__} (a {loss.kind} loss), but the "
                                f"model returned no {key!r}; remove the loss or use a model that outputs {key}.")
            terms[name] = self.weights[name] * sum(loss(head, pids) for head in heads) / len(heads)
        return terms

    def extra_repr(self) -> str:
        return ", ".join(f"{name}: weight {w}" for name, w in self.weights.items())


def build_criterion(cfg) -> Criterion:
    """One term per MODEL.LOSSES.NAME entry, configured by ``cls.from_config`` and weighted by its WEIGHT."""
    names = cfg_get(cfg, "MODEL.LOSSES.NAME")
    if isinstance(names, str) or not names:
        raise ConfigError(f"MODEL.LOSSES.NAME must be a non-empty list of loss names, got {names!r}. Registered: "
                          f"{LOSS_REGISTRY.choices()}.")
    if len(set(names)) != len(names):
        raise ConfigError(f"MODEL.LOSSES.NAME lists a loss twice: {list(names)}; use its WEIGHT instead.")
    terms = []
    for name in names:
        cls = LOSS_REGISTRY.get(name)
        key = f"MODEL.LOSSES.{cls.cfg_key}.WEIGHT"
        weight = cfg_get(cfg, key)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{key} must be a finite number >= 0, got {weight!r}.")
        try:
            loss = cls.from_config(cfg)
        except ValueError as e:
            raise ConfigError(f"MODEL.LOSSES.{cls.cfg_key}: {e}.") from None
        terms.append((f"loss_{cls.cfg_key.lower()}", loss, weight))
    return Criterion(terms)
