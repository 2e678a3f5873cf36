"""Heads: pooling, BNNeck, reduction and classifier."""
from .embedding_head import EmbeddingHead
from .pooling import GeM, build_pooling

__all__ = ["EmbeddingHead", "GeM", "build_pooling"]
