"""Two small families of pair losses that share constructor, config reading and repr."""
from __future__ import annotations

from typing import Dict, Optional

from ._config import finite, positive
from .frame import PairLoss, PairMiner
from .mining import build_miner


class MarginPairLoss(PairLoss):
    """A pair loss with one similarity margin ``MODEL.LOSSES.<KEY>.MARGIN`` and a miner ``<KEY>.MINER``."""

    def __init__(self, margin: float, miner: Optional[PairMiner] = None) -> None:
        super().__init__(miner)
        self.margin = float(margin)

    @classmethod
    def from_config(cls, cfg) -> "MarginPairLoss":
        key = f"MODEL.LOSSES.{cls.cfg_key}."
        return cls(margin=finite(cfg, key + "MARGIN"), miner=build_miner(cfg, key + "MINER"))

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class ScaledPairLoss(PairLoss):
    """A pair loss with a positive scale alpha, a negative scale beta and a similarity threshold (``base``,
    the papers' lambda): MS and binomial deviance."""

    def __init__(self, alpha: float, beta: float, base: float, miner: Optional[PairMiner] = None) -> None:
        super().__init__(miner)
        if not (alpha > 0 and beta > 0):
            raise ValueError(f"alpha and beta must be > 0, got {alpha}, {beta}")
        self.alpha, self.beta, self.base = float(alpha), float(beta), float(base)

    @classmethod
    def scales_from_config(cls, cfg) -> Dict[str, float]:
        key = f"MODEL.LOSSES.{cls.cfg_key}."
        return {"alpha": positive(cfg, key + "ALPHA"), "beta": positive(cfg, key + "BETA"),
                "base": finite(cfg, key + "BASE")}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}"
