"""The documentation: the site builds with warnings as errors, and reads as a reference."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="needs the docs extra: pip install -e '.[docs]'",
)
def test_site_builds_strictly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").exists()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_speak_of_the_toolkit_not_of_work_sessions(page):
    """Results name a machine, a commit and a date; never "an earlier session"."""
    text = page.read_text(encoding="utf-8")
    hits = [
        line
        for line in text.splitlines()
        if re.search(r"\bsessions?\b", line, re.IGNORECASE) and "InferenceSession" not in line
    ]
    assert not hits, hits


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail into docs/"
