"""Analysis of losses: GPW pair weights (GPW paper, Wang et al. 2019, Theorem 3.1) and the figures drawn
from them."""
from .pair_weights import pair_weights, sim_pair_weights

__all__ = ["pair_weights", "sim_pair_weights"]
