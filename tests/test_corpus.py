"""`seq2seq prepare`: the memory-mapped corpus holds exactly what in-memory loading builds."""

import dataclasses

import numpy as np
import pytest

from seq2seq.config import SentencePieceConfig
from seq2seq.corpus import DataError, TokenStore
from seq2seq.data import build_training_data
from seq2seq.prepare import prepare
from seq2seq.train import train

from .conftest import toy_config


def test_token_store_roundtrip(tmp_path):
    store = TokenStore.from_lists([[5, 6, 7], [], [8]])
    assert len(store) == 3 and store[0] == [5, 6, 7] and store[1] == [] and store[2] == [8]
    assert store.lengths().tolist() == [3, 0, 1]
    store.save(tmp_path / "x")
    mapped = TokenStore.open(tmp_path / "x")
    assert [mapped[i] for i in range(3)] == [[5, 6, 7], [], [8]]


@pytest.mark.parametrize("tokenizer", ["spacy", "sentencepiece"])
def test_prepared_equals_in_memory(tmp_path, tokenizer):
    config = toy_config()
    data_config = dataclasses.replace(
        config.data, tokenizer=tokenizer, sentencepiece=SentencePieceConfig(vocab_size=40)
    )
    summary = prepare(data_config, tmp_path / "prepared", workers=2, chunk_lines=1000)
    assert summary["pairs"] == 6000
    in_memory = build_training_data(data_config)
    mapped = build_training_data(
        dataclasses.replace(data_config, prepared=str(tmp_path / "prepared"))
    )
    assert mapped.src_vocab == in_memory.src_vocab and mapped.tgt_vocab == in_memory.tgt_vocab
    for i in (0, 1, 2999, 5999):
        assert mapped.train_src[i] == in_memory.train_src[i]
        assert mapped.train_tgt[i] == in_memory.train_tgt[i]
    assert np.array_equal(mapped.train_indices, in_memory.train_indices)


def test_training_from_a_prepared_folder(tmp_path):
    config = toy_config(max_steps=4, valid_every=4)
    prepare(config.data, tmp_path / "prepared")
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, prepared=str(tmp_path / "prepared"))
    )
    assert train(config, tmp_path / "run").exists()


def test_prepared_folder_from_other_settings_is_refused(tmp_path):
    config = toy_config()
    prepare(config.data, tmp_path / "prepared")
    other = dataclasses.replace(config.data, lowercase=True, prepared=str(tmp_path / "prepared"))
    with pytest.raises(DataError, match="prepared with other data settings"):
        build_training_data(other)
    with pytest.raises(DataError, match="no meta.pt"):
        build_training_data(dataclasses.replace(config.data, prepared=str(tmp_path / "nothing")))
