"""A trained model used elsewhere (a tracker, a search service): ``ReIDModel`` (checkpoint -> embeddings of images
or of boxes in frames), the one test-time ``Preprocess`` both take, and the image inputs they accept."""
from .images import IMAGE_EXTENSIONS, list_images, pixel_boxes
from .model import EmbeddingModule, ReIDModel
from .preprocess import Preprocess

__all__ = ["EmbeddingModule", "IMAGE_EXTENSIONS", "Preprocess", "ReIDModel", "list_images", "pixel_boxes"]
