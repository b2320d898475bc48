"""The generated references: current, and complete (every config key and option has help)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _reference():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_pages_are_current_and_complete():
    done = subprocess.run(
        [sys.executable, "scripts/reference.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_every_config_key_and_option_is_in_the_pages():
    reference = _reference()
    config_page, cli_page = reference.config_page(), reference.cli_page()
    for prefix, cls in reference.SECTIONS:
        for key, *_ in reference.config_rows(prefix, cls):
            assert f"`{key}`" in config_page
    for _, parser in reference.subcommands():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue  # every command has -h
            for flag in action.option_strings:
                assert f"`{flag}`" in cli_page


def test_a_key_without_a_comment_is_reported(tmp_path, monkeypatch):
    (tmp_path / "fake_config.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass

            @dataclass(frozen=True)
            class FakeConfig:
                # explained above
                explained: int = 1
                commented: int = 2  # explained beside
                bare: int = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import fake_config

    reference = _reference()
    assert reference.field_help(fake_config.FakeConfig) == {
        "explained": "explained above",
        "commented": "explained beside",
        "bare": "",
    }
    assert reference.undocumented(
        [("fake", fake_config.FakeConfig)], [("x", argparse.ArgumentParser())]
    ) == ["fake.bare"]


def test_an_option_without_help_is_reported():
    parser = argparse.ArgumentParser()
    parser.add_argument("--documented", help="it says what it does")
    parser.add_argument("--bare")
    reference = _reference()
    section = [("data", reference.config_module.DataConfig)]
    assert reference.undocumented(section, [("seq2seq x", parser)]) == ["seq2seq x --bare"]
