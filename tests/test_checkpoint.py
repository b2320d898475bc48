"""Checkpoint files: atomic saves, and refusal of anything that is not ours."""

import os

import pytest
import torch

from seq2seq import checkpoint
from seq2seq.checkpoint import CheckpointError


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path, toy_checkpoint):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(toy_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or another format"):
        checkpoint.load(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a seq2seq checkpoint"):
        checkpoint.load(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        checkpoint.load(tmp_path / "absent.pt")


def test_pickled_code_is_never_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "seq2seq-checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not (tmp_path / "pwned").exists()


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"step": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        checkpoint.save(path, {"step": 2})
    monkeypatch.undo()
    assert checkpoint.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left
