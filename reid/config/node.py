"""reid's ``CfgNode``: yacs' node whose merges understand ``_BASE_`` and check every key, type and value.

``get_cfg()`` returns one, so the detectron2 / fast-reid habit works as expected::

    cfg = get_cfg()
    cfg.merge_from_file("configs/Market1501/mgn_circle.yml")   # follows _BASE_, rejects unknown keys
    cfg.merge_from_list(["SOLVER.MAX_EPOCHS", "60"])
    cfg.validate()                                              # choice keys, ranges, cross-key rules
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from yacs.config import CfgNode as _YacsCfgNode

from .merge import merge_file, merge_list
from .validation import validate


class CfgNode(_YacsCfgNode):
    """A yacs node with reid's merges; nested sections are of this class too."""

    def merge_from_file(self, cfg_filename: str | Path) -> None:
        """Merge a YAML file and its ``_BASE_`` chain; an unknown key or a wrong type is a ConfigError naming it
        and suggesting the closest keys."""
        merge_file(self, cfg_filename)

    def merge_from_list(self, cfg_list: Sequence[str]) -> None:
        """Merge ``KEY VALUE`` pairs (command-line overrides), checked like a file."""
        merge_list(self, cfg_list)

    def validate(self) -> None:
        """Check every choice-valued key, range and cross-key rule (``reid.config.validate``)."""
        validate(self)
