"""Structured pruning: smaller matrices, the same function at amount 0, and fine-tuning after it."""

import dataclasses

import pytest
import torch

from seq2seq import checkpoint
from seq2seq import config as config_module
from seq2seq.config import Config, DataConfig, ModelConfig
from seq2seq.model import Seq2Seq
from seq2seq.prune import PruneError, kept, prune_payload
from seq2seq.train import train
from seq2seq.translate import Translator

from .conftest import toy_config

SIZES = ModelConfig(
    embedding_size=8,
    encoder_hidden_size=6,
    encoder_layers=2,
    decoder_hidden_size=10,
    decoder_layers=2,
    attention_size=7,
    dropout=0.0,
)


def payload_of(model_config: ModelConfig) -> dict:
    torch.manual_seed(0)
    model = Seq2Seq.from_config(model_config, src_vocab_size=20, tgt_vocab_size=15)
    config = Config(data=DataConfig(train="t", valid="v"), model=model_config)
    return {
        "config": config_module.to_dict(config),
        "src_tokenizer": {},
        "tgt_tokenizer": {},
        "src_vocab": [f"s{i}" for i in range(20)],
        "tgt_vocab": [f"t{i}" for i in range(15)],
        "model": model.state_dict(),
    }


def rebuild(payload: dict) -> Seq2Seq:
    config = config_module.from_dict(payload["config"])
    model = Seq2Seq.from_config(config.model, len(payload["src_vocab"]), len(payload["tgt_vocab"]))
    model.load_state_dict(payload["model"])
    return model.eval()


def logits(model: Seq2Seq) -> torch.Tensor:
    src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    tgt_in = torch.tensor([[2, 5, 6], [2, 7, 0]])
    with torch.no_grad():
        return model(src, torch.tensor([4, 2]), tgt_in)


@pytest.mark.numerics
def test_amount_zero_keeps_the_model_s_function():
    payload = payload_of(SIZES)
    torch.testing.assert_close(
        logits(rebuild(prune_payload(payload, 0.0))), logits(rebuild(payload))
    )


@pytest.mark.parametrize("amount", [0.25, 0.5, 0.75])
def test_every_kind_of_unit_shrinks_and_the_matrices_with_it(amount):
    payload = payload_of(SIZES)
    pruned = prune_payload(payload, amount)
    small = config_module.from_dict(pruned["config"]).model
    assert small.embedding_size == kept(8, amount) < 8
    assert small.encoder_hidden_size == kept(6, amount) < 6
    assert small.decoder_hidden_size == kept(10, amount) < 10
    assert small.attention_size == kept(7, amount) < 7
    before = sum(t.numel() for t in payload["model"].values())
    after = sum(t.numel() for t in pruned["model"].values())
    assert after < before
    assert logits(rebuild(pruned)).shape == (2, 3, 15)  # same vocabulary, runs end to end


def test_the_most_important_units_survive():
    payload = payload_of(SIZES)
    # Make attention unit 3 by far the largest: it must be among the kept ones.
    payload["model"]["decoder.attention.query_proj.weight"][3] *= 100
    pruned = prune_payload(payload, 0.75)  # keeps 2 of 7
    rows = pruned["model"]["decoder.attention.query_proj.weight"]
    assert rows.abs().max() > 0.5  # initial weights lie in [-0.1, 0.1]; only unit 3 is larger


def test_impossible_amounts_are_refused():
    for amount in (-0.1, 1.0, 1.5):
        with pytest.raises(PruneError, match="--amount"):
            prune_payload(payload_of(SIZES), amount)


@pytest.mark.slow
def test_a_pruned_checkpoint_loads_translates_and_fine_tunes(tmp_path):
    config = toy_config(max_steps=4, valid_every=4)
    train(config, tmp_path / "run")
    pruned = prune_payload(checkpoint.load(tmp_path / "run" / "best.pt"), 0.5)
    checkpoint.save(tmp_path / "pruned.pt", pruned)
    loaded = checkpoint.load(tmp_path / "pruned.pt")  # weights_only=True inside
    assert loaded["config"]["model"]["decoder_hidden_size"] == kept(
        config.model.decoder_hidden_size, 0.5
    )
    lines = ["a b c", "", "d e f g"]
    assert len(Translator.from_checkpoint(tmp_path / "pruned.pt", "cpu").translate(lines)) == 3
    fine_tune = toy_config(max_steps=2, valid_every=2)  # full sizes: init_from replaces them
    fine_tune = dataclasses.replace(
        fine_tune, train=dataclasses.replace(fine_tune.train, init_from=str(tmp_path / "pruned.pt"))
    )
    tuned = train(fine_tune, tmp_path / "tuned")
    fine = checkpoint.load(tuned)
    assert fine["config"]["model"] == loaded["config"]["model"]
    assert fine["src_vocab"] == loaded["src_vocab"]
