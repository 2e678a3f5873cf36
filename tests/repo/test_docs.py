"""The documents a new user reads: the README stays the quick tour (at most 450 lines; the long pages are docs/ and
MODEL_ZOO.md), every relative link in them resolves, and the install name is the distribution's, which is not the
unrelated `reid` project on PyPI."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", REPO / "MODEL_ZOO.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 450


def test_the_readme_is_a_quick_tour_and_points_to_the_long_pages():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES, "move details into docs/ (README.md at most 450 lines)"
    for page in ("MODEL_ZOO.md", "docs/deployment.md", "docs/output_folders.md"):
        assert (REPO / page).is_file() and f"]({page}" in readme


def test_every_relative_link_of_the_documents_resolves():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            assert where.exists(), f"{page.name}: link {target!r} does not resolve"
            if anchor and where.suffix == ".md":  # GitHub's anchors: lower case, punctuation dropped, spaces -> -
                headings = re.findall(r"^#+ (.+)$", where.read_text(encoding="utf-8"), re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
                assert anchor in slugs, f"{page.name}: anchor {target!r} not among {sorted(slugs)}"


def test_the_distribution_name_is_not_the_taken_one_and_the_readme_says_how_to_install_it():
    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    name = re.search(r'^\s*name="([^"]+)"', setup, re.M).group(1)
    assert name == "reid-toolkit"  # `pip install reid` is "Re-identification model stack for appearance embeddings"
    assert 'find_packages(include=["reid", "reid.*"])' in setup  # the import name stays reid
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"**`{name}`**" in readme and "pip install reid`" in readme and f"pip show {name}" in readme
