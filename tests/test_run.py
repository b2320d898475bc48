"""A run's resume state: what ``last.pt`` holds and what resuming restores."""

from types import SimpleNamespace

import pytest
import torch

from seq2seq import checkpoint
from seq2seq.run import _build_trainable
from seq2seq.train import train

from .conftest import toy_config

CPU = torch.device("cpu")
VOCABS = SimpleNamespace(src_vocab=range(30), tgt_vocab=range(25))  # only their sizes are read


def test_fp16_loss_scale_is_restored_on_resume():
    config = toy_config()
    first = _build_trainable(config, VOCABS, CPU, "fp16", None)
    assert first.scaler.is_enabled()
    state = {
        "scale": 512.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 7,
    }
    payload = {
        "model": first.model.state_dict(),
        "optimizer": first.optimizer.state_dict(),
        "scaler": state,
        "rng": {"cpu": [torch.get_rng_state()], "cuda": [None]},
        "progress": {"step": 3},
    }
    resumed = _build_trainable(config, VOCABS, CPU, "fp16", payload)
    assert resumed.scaler.state_dict() == state


def test_without_fp16_there_is_no_scale_to_restore():
    trainable = _build_trainable(toy_config(), VOCABS, CPU, "fp32", None)
    assert not trainable.scaler.is_enabled() and trainable.scaler.state_dict() == {}


@pytest.mark.slow
def test_last_checkpoint_holds_the_whole_resume_state(tmp_path):
    train(toy_config(max_steps=2, valid_every=2), tmp_path / "run")
    payload = checkpoint.load(tmp_path / "run" / "last.pt")
    assert {"model", "optimizer", "scaler", "progress", "rng"} <= payload.keys()
    assert payload["progress"]["step"] == 2
    best = checkpoint.load(tmp_path / "run" / "best.pt")
    assert "optimizer" not in best and "progress" not in best  # translating needs none of it
