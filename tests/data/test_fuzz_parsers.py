"""Property-based tests: whatever a file name, a split-list line, a CSV dataset file, a MOT gt.txt line or a
command-line override holds, the parsers either return a well-formed result or raise their documented error
(DatasetError, ConfigError), never anything else."""
import math
import os
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yacs.config import CfgNode

from reid.config import get_cfg, load_cfg
from reid.config.merge import _all_keys, parse_override_value
from reid.data.datasets import MSMT17, CsvDataset, ImageRecord, Market1501
from reid.data.prep.mot import parse_gt_line
from reid.utils.errors import ConfigError, DatasetError, ReIDError, _from_worker

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that reaches the interesting branches: digits (ASCII and not), separators, dots, slashes, spaces, NUL.
TRICKY = st.sampled_from(["0", "7", "0002", "-1", "_", "c", "s", "c1s1", ".jpg", ".JPG", ".png", "/", "../", "..",
                          " ", "\t", "\n", "\r\n", "\x00", "\u0663", "\u00b2", "9" * 12, "morning", "é", "\ud800"])
PIECES = st.lists(st.one_of(TRICKY, st.text(max_size=6)), max_size=12).map("".join)


# --------------------------------------------------------------------------------------------------------------
# Market-1501 file names


@FUZZ
@given(st.one_of(st.text(max_size=60), PIECES))
def test_market_name_parser_returns_none_or_a_record(name):
    parsed = Market1501.parse_name(name)
    assert parsed is None or (isinstance(parsed[0], int) and isinstance(parsed[1], int) and parsed[1] >= 0)


@FUZZ
@given(pid=st.integers(-1, 10**9 - 1), cam=st.integers(1, 10**9 - 1), seq=st.integers(0, 99),
       frame=st.integers(0, 10**6), box=st.integers(0, 99))
def test_market_names_in_the_scheme_round_trip(pid, cam, seq, frame, box):
    assert Market1501.parse_name(f"{pid:04d}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg") == (pid, cam - 1)


FILE_NAME = st.one_of(PIECES, st.text(min_size=1, max_size=30)).filter(
    lambda n: n not in ("", ".", "..") and "/" not in n and "\x00" not in n
    and len(n.encode("utf-8", "surrogatepass")) < 200)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FILE_NAME, max_size=6, unique=True))
def test_market_folder_with_any_file_names_parses_or_names_the_bad_ones(names):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "Market-1501"
        for split in ("bounding_box_train", "query", "bounding_box_test"):
            (folder / split).mkdir(parents=True)
        for name in names:
            try:
                (folder / "query" / name).write_bytes(b"x")
            except (OSError, UnicodeEncodeError):
                assume(False)  # a name this file system cannot hold
        cfg = get_cfg()
        try:
            Market1501(root, cfg)
        except DatasetError as e:
            message = str(e)
            bad = [n for n in names if os.path.splitext(n)[1].lower() in {".jpg", ".jpeg", ".png", ".bmp", ".gif",
                                                                           ".tif", ".tiff", ".webp"}
                   and Market1501.parse_name(n) is None]
            assert ("do not follow the Market-1501 naming" in message and repr(sorted(bad)[0]) in message) or \
                "No query images" in message or "No gallery images" in message


# --------------------------------------------------------------------------------------------------------------
# MSMT17 list lines and list files


@pytest.fixture(scope="module")
def msmt_images(tmp_path_factory):
    base = tmp_path_factory.mktemp("msmt") / "test"
    (base / "0002").mkdir(parents=True)
    (base / "0002" / "0002_000_02_0302afternoon_0008_0.jpg").write_bytes(b"x")
    return os.path.realpath(base)


LINE = st.one_of(
    st.text(max_size=80),
    PIECES,
    st.tuples(st.sampled_from(["", "0002/", "../", "/", "../../", "0002/../../", "./0002/"]),
              st.sampled_from(["0002_000_02_0302afternoon_0008_0.jpg", "0002_000_00_x_1_1.jpg", "a.jpg", ""]),
              st.sampled_from([" ", "\t", "  "]),
              st.one_of(st.integers(-5, 10**12).map(str),
                        st.sampled_from(["", "two", "\u0663", "\u00b2", "9" * 5000])),
              st.sampled_from(["", "\n", " extra", "\x00"])).map("".join),
)


@FUZZ
@given(line=LINE)
def test_msmt17_list_line_parser_returns_a_record_or_a_dataset_error(msmt_images, line):
    try:
        record = MSMT17.parse_line(line, msmt_images, "list_query.txt line 1")
    except DatasetError as e:
        assert str(e).startswith("list_query.txt line 1: ")
        return
    assert isinstance(record, ImageRecord) and record.camid >= 0 and record.pid >= 0
    assert os.path.commonpath([msmt_images, record.path]) == msmt_images and os.path.isfile(record.path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.one_of(st.binary(max_size=200), st.lists(LINE, max_size=5).map(lambda ls: "\n".join(ls).encode(
    "utf-8", "surrogatepass"))))
def test_msmt17_list_file_of_any_bytes_parses_or_names_file_and_line(msmt_images, content):
    with tempfile.TemporaryDirectory() as tmp:
        list_file = Path(tmp) / "list_query.txt"
        list_file.write_bytes(content)
        try:
            records = MSMT17._parse_list(MSMT17.__new__(MSMT17), list_file, Path(msmt_images))
        except DatasetError as e:
            assert f"{list_file} line " in str(e)
            return
        assert all(isinstance(r, ImageRecord) for r in records)


# --------------------------------------------------------------------------------------------------------------
# csv:FILE datasets (rows and whole files) and MOT gt.txt lines


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("csvset")
    (base / "a").mkdir()
    (base / "a" / "1.jpg").write_bytes(b"x")
    (base / "b.png").write_bytes(b"x")
    return Path(os.path.realpath(base))


CSV_FIELD = st.one_of(PIECES, st.text(max_size=12), st.sampled_from(
    ["", " ", "train", "query", "gallery", "Train ", "test", "0", "12", "-1", "1.5", "\u0663", "9" * 12, "a/1.jpg",
     "./a/1.jpg", "a/../a/1.jpg", "b.png", "a/2.jpg", "../a/1.jpg", "/etc/passwd", "a", "a/1.txt", "\x00"]))


@FUZZ
@given(fields=st.lists(CSV_FIELD, max_size=6))
def test_csv_row_parser_returns_a_row_or_a_dataset_error(csv_folder, fields):
    columns = {"path": 0, "pid": 1, "camid": 2, "split": 3}
    try:
        row = CsvDataset.parse_row(fields, columns, 4, str(csv_folder), "list.csv line 2")
    except DatasetError as e:
        assert str(e).startswith("list.csv line 2: ")
        return
    assert len(fields) == 4 and row.split in ("train", "query", "gallery") and row.name and row.camid >= -1
    real = os.path.realpath(row.path)
    assert os.path.commonpath([str(csv_folder), real]) == str(csv_folder) and os.path.isfile(real)


CSV_LINE = st.lists(CSV_FIELD, min_size=3, max_size=5).map(",".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(CSV_LINE, st.text(max_size=30)), max_size=5).map(
        lambda ls: "\n".join(["path,pid,camid,split", *ls]).encode("utf-8", "surrogatepass")),
    st.lists(CSV_LINE, max_size=4).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))))
def test_csv_file_of_any_bytes_parses_or_names_file_and_line(csv_folder, content):
    file = csv_folder / "list.csv"
    file.write_bytes(content)
    try:
        rows = CsvDataset.read(file)
    except DatasetError as e:
        assert str(e).startswith(f"{file} line ") or str(e).startswith(f"{file} is empty"), str(e)
        return
    assert all(isinstance(line, int) and line >= 2 for line, _ in rows)


GT_LINE = st.one_of(
    st.text(max_size=60),
    PIECES,
    st.lists(st.one_of(st.integers(-3, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                       st.sampled_from(["", " 1", "1e999", "nan", "0x10", "\u0663", "1_000"])),
             max_size=11).map(",".join),
)


@FUZZ
@given(line=GT_LINE)
def test_mot_gt_line_parser_returns_a_box_or_a_dataset_error(line):
    try:
        box = parse_gt_line(line, "gt.txt line 3")
    except DatasetError as e:
        assert str(e).startswith("gt.txt line 3: ")
        return
    assert box.frame >= 1 and box.width >= 0 and box.height >= 0
    assert all(math.isfinite(v) for v in (box.left, box.top, box.width, box.height))
    assert (box.visibility is None) == (len(line.strip().split(",")) != 9)


# --------------------------------------------------------------------------------------------------------------
# Command-line overrides


def _leaf_keys():
    cfg = get_cfg()

    def is_leaf(key):
        node = cfg
        for part in key.split("."):
            node = node[part]
        return not isinstance(node, CfgNode)

    return [k for k in _all_keys(cfg) if is_leaf(k)]


KEYS = _leaf_keys()
KEY = st.one_of(st.sampled_from(KEYS), st.sampled_from(["SOLVER", "MODEL.HEADS", "", ".", "SOLVER.", "keys"]),
                st.text(alphabet=string.ascii_uppercase + "._", max_size=25), st.text(max_size=10))
LITERAL = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    max_leaves=8,
)
VALUE = st.one_of(LITERAL.map(repr), st.text(max_size=30), PIECES,
                  st.sampled_from(["1e999", "-1e999", "nan", "inf", "-4", "0", "[256]", "[64, 32]", "[1, 1, 1, 1]",
                                   "['Synthetic']", "True", "None", "()", "{}", "((((((((((", "[" * 200, "1" * 5000,
                                   "__import__('os').system('true')", "lambda: 0", "b'x'", "1j", "{1, 2}"]))


@FUZZ
@given(st.lists(st.tuples(KEY, VALUE), max_size=4).map(lambda pairs: [w for p in pairs for w in p]),
       st.booleans())
def test_override_parser_accepts_or_raises_config_error(opts, drop_last):
    if drop_last and opts:
        opts = opts[:-1]  # an odd number of words
    try:
        cfg = load_cfg(None, opts)
    except ConfigError:
        return
    defaults = get_cfg()
    for key in KEYS:  # every accepted value has its default's type
        value, default = cfg, defaults
        for part in key.split("."):
            value, default = value[part], default[part]
        if isinstance(default, (list, tuple)):
            assert isinstance(value, (list, tuple))
        else:
            assert type(value) is type(default), (key, value)


@FUZZ
@given(st.one_of(st.text(max_size=100), VALUE))
def test_override_value_parser_never_raises(text):
    parse_override_value(text)


WORKER_MESSAGE = st.builds(
    lambda name, where, body: f"Caught {name} {where}.\nOriginal Traceback (most recent call last):\n{body}",
    st.sampled_from(["DatasetError", "X", ""]), st.text(max_size=20), st.text(max_size=200))


@FUZZ
@given(st.one_of(st.text(max_size=200), WORKER_MESSAGE))
def test_error_message_unwrapping_never_raises(message):
    assert isinstance(_from_worker(message), str)
    assert isinstance(str(ReIDError(message)), str)
