"""``build_criterion(cfg)``: the weighted sum of the losses named in MODEL.LOSSES.NAME, each averaged over heads."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...utils.distributed import all_gather_with_grad, dist_info
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

    With ``gather_features`` (MODEL.LOSSES.GATHER_FEATURES) under DistributedDataParallel, the pair losses see the
    features and labels of every rank's batch, gathered with gradients: the loss and the gradients are those of a
    single process on the whole batch (``reid.utils.distributed.all_gather_with_grad``), whatever the number of
    GPUs; the gathered features and the sums of their gradients are float32 also under bf16 / fp16 autocast.
    Otherwise each rank's pair losses see only its share (IMS_PER_BATCH / GPUs images). Class losses always
    see the rank's own logits (their mean over ranks is already the whole batch's).

    A model may weigh its heads (``outputs["head_weights"]``, one weight per head of both lists, e.g. TransReID's
    0.5 for the global feature and 0.5 / K for each local one); the mean over heads is then the weighted mean.
    """

    def __init__(self, terms: Sequence[Tuple[str, nn.Module, float]], gather_features: bool = False) -> None:
        super().__init__()
        self.losses = nn.ModuleDict({name: loss for name, loss, _ in terms})
        self.weights: Dict[str, float] = {name: float(w) for name, _, w in terms}
        self.gather_features = gather_features

    def forward(self, outputs: Mapping[str, List[Tensor]], pids: Tensor) -> Dict[str, Tensor]:
        terms: Dict[str, Tensor] = {}
        inputs: Dict[str, Tuple[List[Tensor], Tensor]] = {}  # per model output: (heads, labels), gathered once
        for name, loss in self.losses.items():
            key = _INPUTS[loss.kind]
            if key not in inputs:
                inputs[key] = self._inputs(list(outputs.get(key) or []), pids, loss.kind)
            heads, labels = inputs[key]
            if not heads:
                raise ReIDError(f"MODEL.LOSSES.NAME includes {type(loss).__name__} (a {loss.kind} loss), but the "
                                f"model returned no {key!r}; remove the loss or use a model that outputs {key}.")
            weights = outputs.get("head_weights") or [1.0] * len(heads)
            if len(weights) != len(heads):
                raise ReIDError(f"The model gave {len(weights)} head_weights for {len(heads)} {key!r}.")
            terms[name] = self.weights[name] * sum(w * loss(head, labels) for w, head in zip(weights, heads)) \
                / sum(weights)
        return terms

    def _inputs(self, heads: List[Tensor], pids: Tensor, kind: str) -> Tuple[List[Tensor], Tensor]:
        """What losses of ``kind`` see: the heads and labels of this rank, or of all ranks for gathered pair
        losses (all heads in one collective)."""
        if kind != "pair" or not self.gather_features or not heads or dist_info()[1] == 1:
            return heads, pids
        # At least float32 whatever the autocast dtype: bf16 would round the gathered features and their summed
        # gradients (float64 stays float64).
        gathered = all_gather_with_grad(torch.cat([h.to(torch.promote_types(h.dtype, torch.float32)) for h in heads],
                                                  dim=1))
        return list(gathered.split([h.shape[1] for h in heads], dim=1)), all_gather_with_grad(pids)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}: weight {w}" for name, w in self.weights.items())


def trains_classifier(cfg) -> bool:
    """Whether MODEL.LOSSES.NAME has a classification loss. Models build classifiers only then: without one, a
    classifier would get no gradient (and DistributedDataParallel fails on parameters without gradients)."""
    return any(LOSS_REGISTRY.get(name).kind == "class" for name in cfg_get(cfg, "MODEL.LOSSES.NAME"))


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
    return Criterion(terms, gather_features=bool(cfg_get(cfg, "MODEL.LOSSES.GATHER_FEATURES")))
