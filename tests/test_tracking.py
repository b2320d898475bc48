"""W&B mode resolution: offline without a key, never a login prompt without a terminal."""

import io

import pytest

from seq2seq.config import WandbConfig
from seq2seq.tracking import TrackingError, resolve_mode


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal


def test_offline_by_default_without_a_key(no_key):
    assert resolve_mode(WandbConfig()) == "offline"


def test_online_with_a_key(no_key, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(WandbConfig()) == "online"


def test_environment_and_config_choose(no_key, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(WandbConfig()) == "disabled"
    assert resolve_mode(WandbConfig(mode="offline")) == "offline"  # the config wins


def test_online_without_key_and_terminal_is_an_error_not_a_prompt(no_key):
    with pytest.raises(TrackingError, match="no API key.*WANDB_API_KEY"):
        resolve_mode(WandbConfig(mode="online"))
