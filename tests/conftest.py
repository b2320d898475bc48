import dataclasses
import os
from pathlib import Path

import pytest
import torch

from seq2seq import config as config_module
from seq2seq.config import ModelConfig
from seq2seq.model import Seq2Seq

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_model() -> Seq2Seq:
    torch.manual_seed(0)
    config = ModelConfig(
        embedding_size=8,
        encoder_hidden_size=6,
        decoder_hidden_size=10,
        attention_size=7,
        decoder_layers=2,
        dropout=0.0,
    )
    return Seq2Seq.from_config(config, src_vocab_size=20, tgt_vocab_size=15).eval()


def toy_config(tmp_path: Path | None = None, **train_overrides) -> config_module.Config:
    """configs/toy.yaml with paths made absolute, so tests can run from any folder."""
    config = config_module.load(ROOT / "configs" / "toy.yaml")
    data = dataclasses.replace(
        config.data, train=str(ROOT / config.data.train), valid=str(ROOT / config.data.valid)
    )
    train = dataclasses.replace(config.train, **train_overrides)
    return dataclasses.replace(config, data=data, train=train)


@pytest.fixture(scope="session")
def toy_checkpoint(tmp_path_factory) -> Path:
    """configs/toy.yaml trained once per test session; its best.pt.

    ``SEQ2SEQ_TOY_CHECKPOINT`` names one trained before (.ci/run's second pass, under other
    CPU kernels, decodes with the first pass's model instead of training it again)."""
    from seq2seq.train import train

    trained = os.environ.get("SEQ2SEQ_TOY_CHECKPOINT")
    if trained:
        return Path(trained)
    return train(toy_config(), tmp_path_factory.mktemp("toy") / "run")


def pytest_collection_modifyitems(items):
    """Whatever needs the trained toy model is slow (it trains once per session)."""
    for item in items:
        if "toy_checkpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
