"""Configuration: yacs defaults (``defaults.py``), YAML files with ``_BASE_`` and ``KEY VALUE`` overrides."""
from .config import cfg_from_dict, cfg_to_dict, dump_cfg, get_cfg, load_cfg
from .merge import merge_file as merge_from_file
from .merge import merge_list as merge_from_list
from .node import CfgNode
from .validation import training_warnings, validate

__all__ = ["CfgNode", "get_cfg", "load_cfg", "merge_from_file", "merge_from_list", "validate", "dump_cfg",
           "cfg_to_dict", "cfg_from_dict", "training_warnings"]
