"""The two commands the README starts with: `make demo` and `make test` install the README's set-up once (a stamp
guards it), then run the main job / the suite; CI installs the same (`make peers`) from a clean clone and runs the README's
test command. Checked as dry runs."""
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = "python -m pip install -r requirements.txt -e ."

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _dry_run(target: str, stamps: Path) -> list:
    proc = subprocess.run(["make", "-n", "-C", str(REPO), target, f"STAMPS={stamps}"], capture_output=True, text=True,
                          timeout=60, check=True)
    return [line for line in proc.stdout.splitlines() if not line.startswith("make")]


def test_make_installs_the_readme_setup_once_then_runs_the_job(tmp_path):
    fresh = _dry_run("test", tmp_path)
    assert fresh[0] == SETUP and fresh[-1] == "python -m pytest"
    assert "python -m pip install -r requirements-peers.txt" in fresh
    assert _dry_run("demo", tmp_path)[-1].startswith("python tools/train.py --config "
                                                     "configs/Synthetic/resnet50_circle.yml")
    newer = time.time() + 10  # stamps newer than every requirement file: the set-up is done
    for stamp in ("setup", "peers"):
        (tmp_path / stamp).touch()
        os.utime(tmp_path / stamp, (newer, newer))
    assert _dry_run("test", tmp_path) == ["python -m pytest"]


def test_readme_heads_with_the_two_commands_and_ci_runs_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make demo", "make test"]
    assert f"```bash\n{SETUP}\n```" in readme  # the individual commands stay documented
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    test_command = re.search(r"## Tests\n\n```bash\n(.*?)\n```", readme).group(1)
    assert test_command == "python -m pytest"
    commands = [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["make peers", f"REID_REQUIRE_PEERS=1 {test_command}"]


def test_make_peers_installs_the_setup_then_the_peers(tmp_path):
    fresh = _dry_run("peers", tmp_path)
    assert fresh[0] == SETUP and "python -m pip install -r requirements-peers.txt" in fresh
    assert "python -m pip install --no-deps --no-build-isolation fastreid==1.4.0 torchreid==0.2.5" in fresh
    assert "python -m pytest" not in fresh
