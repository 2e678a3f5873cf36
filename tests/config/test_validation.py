"""``validate``: every choice-valued key against its registry (no choice list copied by hand), before any work.

The parametrised cases are derived from ``reid.registry``, so a new registry or key is tested without editing
this file; the coverage tests make sure no string key of the defaults escapes the registries.
"""
import re
import sys

import pytest
from yacs.config import CfgNode

from reid.config import get_cfg, load_cfg, validate
from reid.config.validation import expand_key, get_key
from reid.registry import DATASET_REGISTRY, POOLING_REGISTRY, REGISTRIES
from reid.utils.errors import ConfigError
from reid.utils.registry import Registry

from tests.cli.test_reliability_tools import _tool

# String keys whose values are not choices: paths and devices (checked when used, before any work).
FREE_FORM = {"OUTPUT_DIR", "MODEL.DEVICE", "MODEL.WEIGHTS", "MODEL.BACKBONE.PRETRAIN_PATH", "DATASETS.ROOT",
             "DATALOADER.CACHE_DIR"}


def _leaves(node: CfgNode, prefix: str = ""):
    for k, v in node.items():
        if isinstance(v, CfgNode):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _served_keys():
    """(registry, concrete key) for every key a registry declares."""
    return [(r, key) for r in REGISTRIES for pattern in r.keys for key in expand_key(get_cfg(), pattern)]


CASES = [pytest.param(r, key, id=key) for r, key in _served_keys()]


def test_every_registry_key_exists_and_its_default_is_registered():
    for registry in REGISTRIES:
        assert registry.keys, f"the {registry.name} registry serves no config key"
        for pattern in registry.keys:
            keys = expand_key(get_cfg(), pattern)
            assert keys, f"{pattern} ({registry.name} registry) matches no key of reid/config/defaults.py"
            for key in keys:
                default = get_key(get_cfg(), key)
                for value in default if isinstance(default, list) else [default]:
                    registry.check(value, key)  # a default that is not registered fails here


def test_every_choice_valued_default_is_served_by_a_registry():
    """A new string key is a choice (served by a registry in reid/registry.py) or declared free-form above; a
    hand-made table cannot slip past validate."""
    strings = {k for k, v in _leaves(get_cfg())
               if isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))}
    served = {key for _, key in _served_keys()}
    assert strings - FREE_FORM == served


def test_each_location_fills_its_registry():
    assert all(len(r) > 0 for r in REGISTRIES)


@pytest.mark.parametrize("registry, key", CASES)
def test_a_bad_choice_names_the_key_and_the_registered_names(registry, key):
    listed = isinstance(get_key(get_cfg(), key), list)
    value = "['bogus']" if listed else "bogus"
    with pytest.raises(ConfigError) as e:
        load_cfg(None, [key, value])
    message = str(e.value)
    assert message.startswith(f"{key}[0] must be one of " if listed else f"{key} must be one of "), message
    assert all(f"'{name}" in message for name in registry.names()), message  # 'folder:PATH' names folder
    assert f"(the {registry.name} registry); got 'bogus'" in message


@pytest.mark.parametrize("registry, key", CASES)
def test_a_near_miss_gets_the_registered_name_suggested(registry, key):
    name = registry.names()[0]
    typo = name.swapcase() if name.swapcase() != name else name + "x"
    listed = isinstance(get_key(get_cfg(), key), list)
    with pytest.raises(ConfigError, match=re.escape(f"Did you mean {name!r}")):
        load_cfg(None, [key, str([typo]) if listed else typo])


def test_message_format():
    with pytest.raises(ConfigError) as e:
        load_cfg(None, ["MODEL.HEADS.POOL", "gen"])
    assert str(e.value) == ("MODEL.HEADS.POOL must be one of 'avg', 'gem', 'max' (the pooling registry); got 'gen'. "
                            "Did you mean 'gem'?")


def test_builders_called_without_validate_give_the_same_message():
    from reid.modeling.heads.pooling import build_pooling

    with pytest.raises(ConfigError, match=r"^MODEL\.HEADS\.POOL must be one of 'avg', 'gem', 'max'"):
        build_pooling("median")


def test_an_empty_miner_means_none_but_an_empty_pool_is_an_error():
    validate(load_cfg(None, ["MODEL.LOSSES.CIRCLE.MINER", "''"]))
    with pytest.raises(ConfigError, match="MODEL.HEADS.POOL"):
        load_cfg(None, ["MODEL.HEADS.POOL", "''"])


@pytest.mark.parametrize("key, value, message", [
    ("MODEL.LOSSES.NAME", "[]", "MODEL.LOSSES.NAME must name at least one loss"),
    ("MODEL.LOSSES.NAME", "['TripletLoss', 'TripletLoss']", "lists 'TripletLoss' twice"),
    ("DATASETS.TESTS", "['Market1501', 'Market1501']", "DATASETS.TESTS lists 'Market1501' twice"),
    ("DATASETS.NAMES", "[]", "DATASETS.NAMES must name at least one training dataset"),
    ("VIS.TOPK", "0", "VIS.TOPK must be at least 1, got 0"),
    ("VIS.QUERIES_PER_SHEET", "0", "VIS.QUERIES_PER_SHEET must be at least 1"),
    ("VIS.HIST_MAX_QUERIES", "-1", "VIS.HIST_MAX_QUERIES must be at least 0"),
    ("DATALOADER.CACHE_SIZE", "[64]", "DATALOADER.CACHE_SIZE must be"),
])
def test_list_and_range_rules(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_cfg(None, [key, value])


def test_trainer_validates_before_reading_data(tmp_path):
    """A config built in Python (no load_cfg) still fails on the choice, not on the missing dataset folder."""
    from reid.engine.trainer import Trainer

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.HEADS.POOL", "bogus", "DATASETS.ROOT", str(tmp_path / "nowhere"),
                         "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu"])
    with pytest.raises(ConfigError, match=r"^MODEL\.HEADS\.POOL must be one of"):
        Trainer(cfg)


@pytest.mark.parametrize("tool", ["train.py", "test.py", "visualize.py"])
def test_a_bad_choice_with_a_missing_dataset_folder_reports_the_key(tmp_path, tool):
    err = _tool(tool, "MODEL.HEADS.POOL", "bogus", "DATASETS.ROOT", str(tmp_path / "nowhere"),
                "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu")
    assert err.startswith("error: MODEL.HEADS.POOL must be one of 'avg', 'gem', 'max' (the pooling registry); "
                          "got 'bogus'."), err
    assert "nowhere" not in err


# -- the Registry class: lazy locations and parametrised entries ---------------------------------------------------
def test_lookups_import_the_locations_once(tmp_path, monkeypatch):
    registry = Registry("widget", keys=("X.WIDGET",), locations=("reid_test_widgets",))
    (tmp_path / "reid_test_widgets.py").write_text(
        f"from {__name__} import WIDGETS\n"
        "WIDGETS.register('round', 1)\n"
        "assert 'round' in WIDGETS  # a lookup while the location imports does not recurse\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "WIDGETS", registry, raising=False)
    registry.register("square", 2)  # registering imports nothing
    assert "reid_test_widgets" not in sys.modules
    assert registry.names() == ["round", "square"] and registry.get("round") == 1
    assert "reid_test_widgets" in sys.modules
    monkeypatch.delitem(sys.modules, "reid_test_widgets")


def test_parametrised_entries():
    registry = Registry("source", keys=("X.SOURCES",), separator=":")
    registry.register("folder", "the folder class", argument="PATH")
    registry.register("Market1501", "the market class")
    assert registry.get("folder:/data/cams") == "the folder class"
    assert registry.split("folder:/data/c:1") == ("folder", "/data/c:1")
    assert registry.get("Market1501") == "the market class"
    assert registry.choices() == "'folder:PATH', 'Market1501'"
    with pytest.raises(ConfigError, match=r"X\.SOURCES: 'folder' needs a PATH: write folder:PATH"):
        registry.check("folder")
    with pytest.raises(ConfigError, match=r"takes no ':' argument"):
        registry.check("Market1501:x")
    with pytest.raises(ConfigError, match=r"Did you mean 'folder'\?"):
        registry.check("foldr:/x")
    with pytest.raises(ValueError):
        Registry("plain").register("x", 1, argument="PATH")


def test_validate_accepts_a_registered_dataset_scheme():
    """DATASETS.NAMES 'folder:PATH' passes validation: the folder dataset is registered with argument="PATH"."""
    validate(load_cfg(None, ["DATASETS.NAMES", "['folder:/data/cams', 'Market1501']"]))
    with pytest.raises(ConfigError, match=r"DATASETS\.TESTS\[0\]: 'folder' needs a PATH"):
        load_cfg(None, ["DATASETS.TESTS", "['folder']"])


def test_registering_a_name_twice_is_refused():
    with pytest.raises(KeyError, match="already registered"):
        POOLING_REGISTRY.register("avg", None)


def test_a_location_that_fails_to_import_fails_every_lookup():
    registry = Registry("gadget", keys=("X.GADGET",), locations=("reid_test_no_such_module",))
    for _ in range(2):
        with pytest.raises(ModuleNotFoundError):
            registry.names()
