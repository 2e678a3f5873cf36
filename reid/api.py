"""The Python API's names in one place, for ``from reid.api import ...``.

The code lives in ``reid.inference`` (``ReIDModel``, ``EmbeddingModule``, the images they take, ``list_images``)
and ``reid.gallery`` (``FeatureFile``, ``Gallery``, the FAISS indexes, the exact ``search``).
"""
from .gallery import FeatureFile, Gallery, GalleryIndex, SearchResult, build_index, index_path, search
from .inference import IMAGE_EXTENSIONS, EmbeddingModule, Preprocess, ReIDModel, list_images, pixel_boxes
from .inference.images import Frame, ImageLike, Images
from .utils.files import file_sha256

__all__ = ["EmbeddingModule", "FeatureFile", "Frame", "Gallery", "GalleryIndex", "IMAGE_EXTENSIONS", "ImageLike",
           "Images", "Preprocess", "ReIDModel", "SearchResult", "build_index", "file_sha256", "index_path",
           "list_images", "pixel_boxes", "search"]
