"""reid: person re-identification with Circle / Multi-Similarity losses, fast exact evaluation and re-ranking.

``reid.ReIDModel`` (a trained model as an embedding function) is imported on first use, so that
``import reid.config`` stays light.
"""
from .version import __version__

__all__ = ["ReIDModel", "__version__"]


def __getattr__(name: str):
    if name == "ReIDModel":
        from .inference import ReIDModel

        return ReIDModel
    raise AttributeError(f"module 'reid' has no attribute {name!r}")
