"""Config system: defaults, _BASE_ inheritance, overrides, unknown keys and types, safe YAML, round trip."""
import re
from pathlib import Path

import pytest
import yaml

from reid.config import cfg_from_dict, cfg_to_dict, dump_cfg, get_cfg, load_cfg
from reid.config.merge import parse_override_value
from reid.utils.errors import ConfigError


def test_get_cfg_is_a_fresh_copy():
    a = get_cfg()
    a.SOLVER.MAX_EPOCHS = 1
    assert get_cfg().SOLVER.MAX_EPOCHS == 120


def test_every_default_key_has_a_comment_and_is_defined_once():
    import inspect
    import re

    from reid.config import defaults

    seen = set()
    for line in inspect.getsource(defaults).splitlines():
        if re.match(r"^_C(\.[A-Z0-9_]+)+ = (?!CN\(\))", line):
            assert "#" in line, f"undocumented key: {line}"
            key = line.split(" = ", 1)[0]
            assert key not in seen, f"defined twice (the second silently replaces the first): {line}"
            seen.add(key)


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yml").write_text("SOLVER:\n  MAX_EPOCHS: 7\n  BASE_LR: 0.1\nINPUT:\n  SIZE_TRAIN: [64, 32]\n")
    (tmp_path / "child.yml").write_text("_BASE_: base.yml\nSOLVER:\n  MAX_EPOCHS: 9\n")
    cfg = load_cfg(tmp_path / "child.yml", ["SOLVER.BASE_LR", "0.5", "OUTPUT_DIR", "out/x"])
    assert cfg.SOLVER.MAX_EPOCHS == 9  # child beats base
    assert cfg.SOLVER.BASE_LR == 0.5  # command line beats both
    assert cfg.INPUT.SIZE_TRAIN == [64, 32]  # inherited
    assert cfg.OUTPUT_DIR == "out/x"
    assert cfg.is_frozen()


def test_unknown_key_in_file_names_key_and_suggests(tmp_path):
    (tmp_path / "bad.yml").write_text("SOLVER:\n  MAX_EPOCH: 3\n")
    with pytest.raises(ConfigError) as e:
        load_cfg(tmp_path / "bad.yml")
    assert "SOLVER.MAX_EPOCH" in str(e.value) and "SOLVER.MAX_EPOCHS" in str(e.value)
    assert "bad.yml" in str(e.value)


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError, match=r"MODEL\.HEADS\.SCALE"):
        load_cfg(None, ["MODEL.HEADS.SCLAE", "3"])


def test_wrong_type_and_odd_overrides():
    with pytest.raises(ConfigError, match="SOLVER.BASE_LR.*float"):
        load_cfg(None, ["SOLVER.BASE_LR", "fast"])
    with pytest.raises(ConfigError, match="KEY VALUE"):
        load_cfg(None, ["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="section"):
        load_cfg(None, ["SOLVER", "3"])


@pytest.mark.parametrize("opts, message", [
    (["INPUT.PIXEL_MEAN", "['a', 0.4, 0.4]"], r"INPUT.PIXEL_MEAN.*list of float.*element 'a' is a str"),
    (["DATASETS.NAMES", "[1]"], r"DATASETS.NAMES.*list of str.*element 1 is an int"),
    (["MODEL.BACKBONE.LAYERS", "[[1], 1, 1, 1]"], r"MODEL.BACKBONE.LAYERS.*element \[1\] is a list"),
    (["SOLVER.BASE_LR", "1e999"], r"SOLVER.BASE_LR.*finite number.*got inf"),
    (["INPUT.PIXEL_STD", "[1e999, 0.2, 0.2]"], r"INPUT.PIXEL_STD.*element inf is not finite"),
])
def test_list_elements_and_non_finite_numbers_are_checked(opts, message):
    with pytest.raises(ConfigError, match=message):
        load_cfg(None, opts)


def test_int_widens_to_float_and_strings_stay_strings():
    cfg = load_cfg(None, ["SOLVER.BASE_LR", "1", "MODEL.DEVICE", "cuda:0", "OUTPUT_DIR", "123"], freeze=False)
    assert isinstance(cfg.SOLVER.BASE_LR, float) and cfg.MODEL.DEVICE == "cuda:0" and cfg.OUTPUT_DIR == "123"


@pytest.mark.parametrize("opts, key", [
    (["SOLVER.IMS_PER_BATCH", "-4"], "SOLVER.IMS_PER_BATCH"),
    (["SOLVER.IMS_PER_BATCH", "30", "DATALOADER.NUM_INSTANCE", "4"], "DATALOADER.NUM_INSTANCE"),
    (["TEST.METRIC", "manhattan"], "TEST.METRIC"),
    (["INPUT.SIZE_TRAIN", "[256]"], "INPUT.SIZE_TRAIN"),
    (["SOLVER.LOG_PERIOD", "0"], "SOLVER.LOG_PERIOD"),  # would divide by zero in the training loop
    (["DATASETS.TESTS", "[]"], "DATASETS.TESTS"),  # nothing to evaluate after training
    (["SOLVER.STEPS", "[90, 40]"], "SOLVER.STEPS"),
    (["INPUT.PIXEL_STD", "[0.2, 0.0, 0.2]"], "INPUT.PIXEL_STD"),
    (["MODEL.BACKBONE.LAYERS", "[1, 1, 1]"], "MODEL.BACKBONE.LAYERS"),
    (["TEST.RERANK.ENABLED", "True", "TEST.RERANK.K2", "30"], "TEST.RERANK.K2"),
])
def test_bad_values_are_rejected(opts, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_cfg(None, opts)


def test_unsafe_yaml_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yml").write_text(
        f"OUTPUT_DIR: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="safe"):
        load_cfg(tmp_path / "evil.yml")
    assert not marker.exists()


def test_override_values_are_literals_not_code():
    assert parse_override_value("[1, 2]") == [1, 2]
    assert parse_override_value("__import__('os').getcwd()") == "__import__('os').getcwd()"


def test_dump_and_dict_round_trip(tmp_path):
    cfg = load_cfg(None, ["SOLVER.MAX_EPOCHS", "3", "INPUT.SIZE_TEST", "[64, 32]"])
    dump_cfg(cfg, tmp_path / "config.yaml")
    again = load_cfg(tmp_path / "config.yaml")
    assert again == cfg
    assert cfg_from_dict(cfg_to_dict(cfg)) == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["SOLVER"]["MAX_EPOCHS"] == 3


def test_shipped_configs_load():
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parents[2].glob("configs/**/*.yml"))
    assert files
    for f in files:
        load_cfg(f)


REPO = Path(__file__).resolve().parents[2]


def test_get_cfg_merges_like_detectron2(tmp_path):
    """``get_cfg().merge_from_file`` follows _BASE_ (two levels here), and ``merge_from_list`` overrides."""
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/Market1501/mgn_circle.yml"))
    assert cfg.MODEL.META_ARCHITECTURE == "MGN"  # from Base/mgn_circle.yml
    assert cfg.MODEL.LOSSES.NAME == ["CrossEntropyLoss", "PairwiseCircleLoss"]  # from Base/resnet50_circle.yml
    assert cfg.OUTPUT_DIR == "output/market1501/mgn_circle"
    cfg.merge_from_list(["SOLVER.MAX_EPOCHS", "60", "MODEL.DEVICE", "cuda"])
    assert cfg.SOLVER.MAX_EPOCHS == 60 and cfg.MODEL.DEVICE == "cuda"
    cfg.validate()
    (tmp_path / "mine.yml").write_text(f"_BASE_: {REPO / 'configs/Market1501/mgn_circle.yml'}\n"
                                       f"SOLVER:\n  MAX_EPOCH: 60\n")
    with pytest.raises(ConfigError) as e:
        get_cfg().merge_from_file(tmp_path / "mine.yml")
    assert str(e.value).startswith(f"Unknown config key 'SOLVER.MAX_EPOCH' (in {tmp_path / 'mine.yml'}). "
                                   f"Did you mean: SOLVER.MAX_EPOCHS,")
    with pytest.raises(ConfigError, match=r"Unknown config key 'MODEL.HEADS.POOLING' \(on the command line\)\. "
                                          r"Did you mean: MODEL\.HEADS\.POOL"):
        get_cfg().merge_from_list(["MODEL.HEADS.POOLING", "gem"])


def test_yaml_exponent_numbers_are_floats_in_files_and_base_files(tmp_path):
    """PyYAML's YAML 1.1 rules read 1e-3 as a string; reid's loader reads it as YAML 1.2 and Python do."""
    (tmp_path / "base.yml").write_text("SOLVER:\n  ETA_MIN_LR: 1e-7\n  WEIGHT_DECAY: 5E-4\n")
    (tmp_path / "child.yml").write_text("_BASE_: base.yml\nSOLVER:\n  BASE_LR: 1e-3\n  GAMMA: .5\n"
                                        "INPUT:\n  PIXEL_STD: [2.5e-1, 2.5E-1, +1.0e-1]\n")
    cfg = load_cfg(tmp_path / "child.yml")
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.GAMMA, cfg.SOLVER.ETA_MIN_LR, cfg.SOLVER.WEIGHT_DECAY) == \
        (0.001, 0.5, 1e-7, 5e-4)
    assert cfg.INPUT.PIXEL_STD == [0.25, 0.25, 0.1]
    assert load_cfg(None, ["SOLVER.BASE_LR", "1e-3"]).SOLVER.BASE_LR == cfg.SOLVER.BASE_LR  # same as the CLI


def test_yaml_loader_keeps_other_scalars_and_refuses_python_tags(tmp_path):
    from reid.config.merge import ConfigLoader

    data = yaml.load("a: 1\nb: 1e\nc: '1e-3'\nd: 1_000\ne: .inf\nf: abc1e3\n", Loader=ConfigLoader)
    assert data == {"a": 1, "b": "1e", "c": "1e-3", "d": 1000, "e": float("inf"), "f": "abc1e3"}
    assert yaml.safe_load("a: 1e-3") == {"a": "1e-3"}  # PyYAML's own loader is untouched
    with pytest.raises(yaml.YAMLError):
        yaml.load("a: !!python/object/apply:os.getcwd []", Loader=ConfigLoader)


@pytest.mark.parametrize("key, suggested", [
    ("solver.max_epochs", "SOLVER.MAX_EPOCHS"),
    ("Solver.Base_LR", "SOLVER.BASE_LR"),
    ("model.heads.pool", "MODEL.HEADS.POOL"),
])
def test_a_key_in_the_wrong_case_gets_the_right_one_suggested(key, suggested):
    with pytest.raises(ConfigError, match=rf"Unknown config key '{re.escape(key)}' \(on the command line\)\. "
                                          rf"Did you mean: {re.escape(suggested)}[,?]"):
        load_cfg(None, [key, "3"])


def test_type_messages_use_the_right_article():
    with pytest.raises(ConfigError, match=r"'SOLVER\.MAX_EPOCHS' \(on the command line\) expects an int like 120, "
                                          r"got float 3\.5\."):
        load_cfg(None, ["SOLVER.MAX_EPOCHS", "3.5"])
    with pytest.raises(ConfigError, match=r"expects a float like 0\.00035"):
        load_cfg(None, ["SOLVER.BASE_LR", "fast"])


@pytest.mark.parametrize("opts", [["configs/x.yml"], ["SOLVER.MAX_EPOCHS", "3", "configs/x.YAML"],
                                  ["configs/x.yml", "SOLVER.MAX_EPOCHS", "3"]])
def test_a_config_file_among_the_overrides_suggests_config(opts):
    name = next(w for w in opts if w.startswith("configs/"))
    with pytest.raises(ConfigError, match=rf"^'{name}' stands where a config KEY is expected; to use it as the "
                                          rf"config file write --config {name} "):
        get_cfg().merge_from_list(opts)


def test_forgotten_config_flag_through_the_tool():
    from tests.cli.test_reliability_tools import _tool

    assert _tool("train.py", "configs/Synthetic/resnet50_circle.yml") == (
        "error: 'configs/Synthetic/resnet50_circle.yml' stands where a config KEY is expected; to use it as the "
        "config file write --config configs/Synthetic/resnet50_circle.yml (in Python: cfg.merge_from_file).")
