"""Heads: pooling, BNNeck, reduction and classifier."""
from .embedding_head import EmbeddingHead
from .pooling import GeM, build_pooling, horizontal_stripes

__all__ = ["EmbeddingHead", "GeM", "build_pooling", "horizontal_stripes"]
