"""reid-mot2reid on MOT sequences generated here (synthetic pedestrians walking along known tracks): the crops are
exactly the ground-truth boxes that pass the filters, clipped to the frame; what is left out is counted by reason;
the split is by identity with queries spread over time; the output trains; bad input is one message, exit 1."""
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.cli.mot2reid import main as mot2reid_main
from reid.cli.parser import run_tool
from reid.cli.train import main as train_main
from reid.data.datasets import Market1501
from reid.data.prep.mot import Mot2ReidOptions, mot_to_reid
from reid.data.prep.mot_synthetic import CAR_TRACK, write_synthetic_mot
from reid.utils.errors import DatasetError

from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[2]
SIZE = (112, 192)


@pytest.fixture(scope="module")
def mot(tmp_path_factory):
    root = tmp_path_factory.mktemp("mot") / "sequences"
    rows = write_synthetic_mot(root, num_sequences=2, tracks_per_sequence=4, num_frames=16, size=SIZE, seed=3)
    return root, rows


def _clip(r):
    """The expected crop box of a ground-truth row (0-based, exclusive end) or None when nothing is left."""
    x0, y0 = max(0, r.left), max(0, r.top)
    x1, y1 = min(SIZE[1], r.left + r.width), min(SIZE[0], r.top + r.height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _crops(out: Path):
    """split folder -> [(pid, camera, frame, path)], read back with the Market-1501 parser's naming."""
    found = {}
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        found[sub] = []
        for name in sorted(os.listdir(out / sub)):
            pid, camid = Market1501.parse_name(name)
            found[sub].append((pid, camid + 1, int(name.split("_")[2]), out / sub / name))
    return found


def test_every_box_that_passes_is_cropped_exactly(mot, tmp_path):
    root, rows = mot
    opts = Mot2ReidOptions(stride=1, min_height=0, min_visibility=0.0, test_fraction=0.5, seed=0)
    summary = mot_to_reid(root, tmp_path / "out", opts, progress=False)
    people = [r for r in rows if r.track != CAR_TRACK]
    kept = [r for r in people if _clip(r) is not None]
    outside = len(people) - len(kept)
    assert outside > 0 and any(_clip(r) != (r.left, r.top, r.left + r.width, r.top + r.height) for r in kept)
    assert summary.skipped == {"marked not to evaluate (flag 0)": 2 * 16, "empty after clipping to the frame": outside}
    found = _crops(tmp_path / "out")
    assert sum(len(v) for v in found.values()) == len(kept) == sum(summary.crops.values())

    # Identity = (sequence, track); camera = sequence; every crop is the frame's pixels in the clipped box.
    identities = {}
    for line in (tmp_path / "out" / "identities.csv").read_text().splitlines()[1:]:
        pid, seq, track, cam = line.split(",")
        identities[int(pid)] = (seq, int(track), int(cam))
    assert sorted(identities.values()) == sorted({(r.sequence, r.track, int(r.sequence[-2:])) for r in kept})
    by_key = {(r.sequence, r.track, r.frame): r for r in kept}
    for pid, cam, frame, path in [c for v in found.values() for c in v]:
        seq, track, seq_cam = identities[pid]
        assert cam == seq_cam
        x0, y0, x1, y1 = _clip(by_key.pop((seq, track, frame)))
        crop = np.asarray(Image.open(path), dtype=np.float64)
        assert crop.shape[:2] == (y1 - y0, x1 - x0)
        frame_img = np.asarray(Image.open(root / seq / "img1" / f"{frame:06d}.jpg"), dtype=np.float64)
        assert np.abs(crop - frame_img[y0:y1, x0:x1]).mean() < 8.0  # JPEG re-encoding only
    assert not by_key


def test_filters_split_by_identity_and_queries_across_time(mot, tmp_path):
    root, rows = mot
    opts = Mot2ReidOptions(stride=3, min_height=40, min_visibility=0.5, test_fraction=0.5, seed=1)
    summary = mot_to_reid(root, tmp_path / "out", opts, progress=False)
    expected, kept = Counter(), defaultdict(list)
    for r in rows:  # the documented order of the filters, computed independently
        box = _clip(r)
        if r.flag == 0:
            expected["marked not to evaluate (flag 0)"] += 1
        elif (r.frame - 1) % 3:
            expected["between strided frames (--stride 3)"] += 1
        elif r.visibility < 0.5:
            expected["less visible than 0.5"] += 1
        elif box is None:
            expected["empty after clipping to the frame"] += 1
        elif box[3] - box[1] < 40:
            expected["lower than 40 px"] += 1
        else:
            kept[(r.sequence, r.track)].append(r.frame)
    assert summary.skipped == dict(expected)
    assert summary.identities == {"train": len(kept) - round(len(kept) / 2), "test": round(len(kept) / 2)}

    found = _crops(tmp_path / "out")
    frames = {sub: defaultdict(list) for sub in found}
    for sub, crops in found.items():
        for pid, _, frame, _ in crops:
            frames[sub][pid].append(frame)
    train, query, gallery = (frames[s] for s in ("bounding_box_train", "query", "bounding_box_test"))
    assert not set(train) & (set(query) | set(gallery))  # split by identity
    assert sorted(len(v) for v in list(train.values()) + [query.get(p, []) + gallery[p] for p in gallery]) == \
        sorted(len(v) for v in kept.values())
    for pid, track_frames in gallery.items():  # one query per test identity, from the middle of its track
        everything = sorted(track_frames + query.get(pid, []))
        if len(everything) > 1:
            assert query[pid] == [everything[len(everything) // 2]]
    again = mot_to_reid(root, tmp_path / "again", opts, progress=False)
    assert again.crops == summary.crops and sorted(os.listdir(tmp_path / "again" / "query")) == \
        sorted(os.listdir(tmp_path / "out" / "query"))  # deterministic under the seed


def test_output_trains_and_evaluates_across_time(mot, tmp_path, capsys, single_thread):
    root, _ = mot
    out = tmp_path / "reid"
    assert mot2reid_main(["--mot-root", str(root), "--output", str(out), "--stride", "2", "--min-height", "20",
                          "--min-visibility", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "Read 2 sequence(s): SYN-01 (camera 1), SYN-02 (camera 2)" in printed
    assert f"DATASETS.NAMES \"['Market1501:{out}']\"" in printed and "TEST.CROSS_CAMERA False" in printed
    manifest = json.loads((out / "mot2reid.json").read_text())
    assert manifest["options"]["stride"] == 2 and manifest["summary"]["crops"]["query"] > 0
    run = tmp_path / "run"
    assert train_main(["DATASETS.ROOT", str(tmp_path), "OUTPUT_DIR", str(run), *TINY_TRAINING,
                       "DATASETS.NAMES", "['Market1501:reid']", "DATASETS.TESTS", "['Market1501:reid']",
                       "TEST.CROSS_CAMERA", "False"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == "Market1501:reid" and metrics["protocol"] == "same-image removal"
    assert metrics["num_query"] == manifest["summary"]["crops"]["query"] and 0.0 < metrics["mAP"] <= 1.0


def test_duplicate_sequences_camera_mapping_and_classes(mot, tmp_path, capsys):
    root, _ = mot
    seqs = tmp_path / "seqs"
    shutil.copytree(root, seqs)
    shutil.copytree(seqs / "SYN-01", seqs / "SYN-01-copy")  # as MOT17 ships a sequence once per detector
    with open(seqs / "SYN-02" / "gt" / "gt.txt", "a") as f:
        f.write("1,77,10,10,30,60,1,2,1.0\n")  # a person on a vehicle (class 2)
    argv = ["--mot-root", str(seqs), "--output", str(tmp_path / "out"), "--stride", "1", "--min-height", "0",
            "--min-visibility", "0", "--camera", "SYN-01=2", "--camera", "SYN-02=2"]
    assert mot2reid_main(argv) == 0
    printed = capsys.readouterr().out
    assert "left out SYN-01-copy: same ground truth as SYN-01" in printed
    assert "SYN-01 (camera 2), SYN-02 (camera 2)" in printed and "1 not pedestrians (class != 1)" in printed
    assert {Market1501.parse_name(n)[1] for n in os.listdir(tmp_path / "out" / "query")} == {1}
    assert mot2reid_main(argv + ["--overwrite", "--all-classes"]) == 0
    assert "not pedestrians" not in capsys.readouterr().out


def _fails(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        run_tool(mot2reid_main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


def test_bad_input_is_one_message(mot, tmp_path, capsys):
    root, _ = mot
    seqs = tmp_path / "seqs"
    shutil.copytree(root / "SYN-01", seqs / "SYN-01")
    out = ["--output", str(tmp_path / "out")]
    os.remove(seqs / "SYN-01" / "gt" / "gt.txt")
    err = _fails(capsys, ["--mot-root", str(seqs), *out])
    assert f"has no ground truth '{seqs / 'SYN-01' / 'gt' / 'gt.txt'}'" in err and "gt/gt.txt" in err
    (seqs / "SYN-01" / "gt" / "gt.txt").write_text("1,1,10,10,20,40,1,1,1.0\n2,1,ten,10,20,40,1,1,1.0\n")
    assert f"{seqs / 'SYN-01' / 'gt' / 'gt.txt'} line 2: left 'ten' is not a number" in \
        _fails(capsys, ["--mot-root", str(seqs), *out])
    (seqs / "SYN-01" / "gt" / "gt.txt").write_text("1,1,10,10,20,40,1,1,1.0\n1,1,12,10,20,40,1,1,1.0\n")
    assert "line 2: track 1 has a second box in frame 1" in _fails(capsys, ["--mot-root", str(seqs), *out])
    assert "is not a folder" in _fails(capsys, ["--mot-root", str(tmp_path / "nowhere"), *out])
    assert "No MOT sequence in" in _fails(capsys, ["--mot-root", str(tmp_path), *out])
    assert "expected SEQ=N" in _fails(capsys, ["--mot-root", str(seqs), *out, "--camera", "SYN-01"])
    assert "--test-fraction must be in (0, 1]" in _fails(capsys, ["--mot-root", str(root), *out, "--test-fraction",
                                                                  "0"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    err = _fails(capsys, ["--mot-root", str(root), "--output", str(tmp_path / "mine")])
    assert "exists and was not written by mot2reid" in err and (tmp_path / "mine" / "keep.txt").exists()


def test_missing_gt_through_the_tool_script(tmp_path):
    (tmp_path / "SEQ" / "img1").mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "mot2reid.py"), "--mot-root", str(tmp_path),
                           "--output", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: MOT sequence '{tmp_path / 'SEQ'}' has no ground truth")


def test_synthetic_sequences_are_deterministic(tmp_path):
    a = write_synthetic_mot(tmp_path / "a", num_sequences=1, tracks_per_sequence=2, num_frames=3, size=(64, 96))
    b = write_synthetic_mot(tmp_path / "b", num_sequences=1, tracks_per_sequence=2, num_frames=3, size=(64, 96))
    assert a == b
    assert (tmp_path / "a" / "SYN-01" / "img1" / "000003.jpg").read_bytes() == \
        (tmp_path / "b" / "SYN-01" / "img1" / "000003.jpg").read_bytes()
    with pytest.raises(DatasetError, match="No box of"):
        mot_to_reid(tmp_path / "a", tmp_path / "out", Mot2ReidOptions(min_height=1000), progress=False)
