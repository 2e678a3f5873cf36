"""Galleries of embeddings: the feature file (``FeatureFile``), its FAISS indexes (``GalleryIndex``), reid's exact
search, and ``Gallery``, which opens, searches and grows a gallery by the rules of ``reid-search`` and
``reid-extract``."""
from .exact import search
from .features import FeatureFile
from .gallery import Gallery, IndexChange, Match, SearchResult
from .index import DEFAULTS, KINDS, GalleryIndex, build_index, index_path

__all__ = ["DEFAULTS", "FeatureFile", "Gallery", "GalleryIndex", "IndexChange", "KINDS", "Match", "SearchResult",
           "build_index", "index_path", "search"]
