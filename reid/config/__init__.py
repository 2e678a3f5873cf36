"""Configuration: yacs defaults (``defaults.py``), YAML files with ``_BASE_`` and ``KEY VALUE`` overrides."""
from .config import (cfg_from_dict, cfg_to_dict, dump_cfg, get_cfg, load_cfg, merge_from_file, merge_from_list,
                     validate)

__all__ = ["get_cfg", "load_cfg", "merge_from_file", "merge_from_list", "validate", "dump_cfg", "cfg_to_dict",
           "cfg_from_dict"]
