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
    importlib.util.find_spec("mkdocs") is None and not os.environ.get("CI"),
    reason="needs the docs extra: pip install -e '.[docs]' (in CI this fails instead)",
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


def _documented_commands():
    """Every `seq2seq ...` command line in the pages' code blocks, continuations joined."""
    for page in PAGES:
        inside, pending = False, ""
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                inside, pending = not inside, ""
                continue
            if not inside:
                continue
            line = pending + line.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            for part in re.split(r"\s*(?:\||&&|;)\s*", line.split("  #")[0]):
                part = re.sub(r"^(?:\S+=\S+\s+)*(?:taskset -c \S+\s+)?", "", part)
                if part.startswith("seq2seq ") and "..." not in part:
                    yield page.relative_to(ROOT), part


def test_documented_commands_parse():
    """A command the docs show is one the parser accepts (placeholders are fine as values)."""
    import shlex

    from seq2seq.arguments import build_parser

    bad = []
    for page, command in _documented_commands():
        command = re.split(r"\s[<>]\s?", command)[0].strip().removesuffix("&")
        # a synopsis (`seq2seq train --config FILE [--resume ...]`): its required part
        words = shlex.split(re.sub(r"\[[^\]]*\]", "", command))[1:]
        try:
            build_parser().parse_args(words)
        except SystemExit:
            bad.append(f"{page}: {command}")
    assert not bad, "\n".join(bad)
