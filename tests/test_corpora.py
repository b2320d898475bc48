"""Several training corpora in one config: each drawn at its weight, tagged sources, exact resume."""

import dataclasses
import random
import re
from collections import Counter

import numpy as np
import pytest

from seq2seq import config as config_module
from seq2seq.config import ConfigError, CorpusConfig
from seq2seq.data import batch_stream, build_training_data, epoch_batches

from .conftest import ROOT, toy_config
from .test_data import write_pair

A_PAIRS, B_PAIRS = 120, 60


def letters(rng: random.Random, first: str) -> str:
    return " ".join([first] + rng.choices("abcdefghij", k=rng.randint(1, 6)))


def two_corpora(folder, weight_b: float = 0.5, tag: str | None = "<bt>"):
    """Corpus A (sources start with x) and corpus B (sources start with y), toy-like pairs."""
    rng = random.Random(0)
    prefixes = []
    for name, first, count in (("a", "x", A_PAIRS), ("b", "y", B_PAIRS)):
        src = [letters(rng, first) for _ in range(count)]
        tgt = [" ".join(reversed(s.split())) for s in src]
        prefixes.append(write_pair(folder, name, "\n".join(src) + "\n", "\n".join(tgt) + "\n"))
    corpora = [CorpusConfig(prefixes[0]), CorpusConfig(prefixes[1], weight_b, tag)]
    return dataclasses.replace(toy_config().data, train=corpora)


def corpus_of(data, pair: int) -> str:
    """Which corpus a pair came from, by its own text (x: A, y: B)."""
    tokens = [data.src_vocab.tokens[i] for i in data.train_src[pair]]
    return "a" if "x" in tokens else "b"


@pytest.mark.parametrize("weight_b", [0.5, 1.0, 2.5])
def test_each_corpus_is_drawn_at_its_weight_every_epoch(tmp_path, weight_b):
    data = build_training_data(two_corpora(tmp_path, weight_b))
    seen_b = Counter()
    for epoch in range(8):
        drawn = np.concatenate(
            epoch_batches(
                data.train_src, data.train_tgt, data.train_indices, 200, 1, epoch, data.mixture
            )
        )
        counts = Counter(corpus_of(data, int(i)) for i in drawn)
        assert counts["a"] == A_PAIRS  # weight 1: every pair once
        assert counts["b"] == round(weight_b * B_PAIRS)
        per_pair = Counter(int(i) for i in drawn if corpus_of(data, int(i)) == "b")
        assert set(per_pair.values()) <= {int(weight_b), int(weight_b) + 1}  # never more
        seen_b.update(per_pair)
    assert len(seen_b) == B_PAIRS  # a fraction is a fresh random draw each epoch


def test_a_tagged_corpus_starts_with_its_tag_and_no_other_does(tmp_path):
    data = build_training_data(two_corpora(tmp_path))
    tag = data.src_vocab.ids["<bt>"]
    assert tag == 4  # a special: right after <pad> <unk> <s> </s>, whatever its count
    for pair in data.train_indices:
        sentence = list(data.train_src[int(pair)])
        assert (sentence[0] == tag) == (corpus_of(data, int(pair)) == "b")
        assert tag not in sentence[1:]
    assert "<bt>" not in data.tgt_vocab.ids  # the target side is never tagged


def test_resume_with_several_corpora_continues_the_unbroken_stream(tmp_path):
    data = build_training_data(two_corpora(tmp_path, weight_b=1.5))
    per_epoch = len(
        epoch_batches(data.train_src, data.train_tgt, data.train_indices, 200, 1, 0, data.mixture)
    )
    unbroken = batch_stream(data, 200, 1, 0, 0)
    stream = [next(unbroken) for _ in range(per_epoch + 5)]  # into epoch 1
    position, _ = stream[per_epoch + 1]
    resumed = batch_stream(data, 200, 1, *position)
    continued = [next(resumed) for _ in range(3)]
    for (_, want), (_, got) in zip(stream[per_epoch + 2 :], continued, strict=True):
        assert want.indices == got.indices
    rebuilt = build_training_data(two_corpora(tmp_path, weight_b=1.5), data.preprocessing)
    again = batch_stream(rebuilt, 200, 1, 0, 0)
    assert all(next(again)[1].indices == b.indices for _, b in stream)


def test_the_list_is_read_from_yaml_and_checked(tmp_path):
    path = tmp_path / "c.yaml"
    base = (ROOT / "configs" / "toy.yaml").read_text()
    listing = (
        "  train:\n    - prefix: data/toy/train\n    - prefix: data/bt/x\n"
        '      weight: 0.5\n      tag: "<bt>"\n'
    )
    path.write_text(base.replace("  train: data/toy/train\n", listing))
    config = config_module.load(path)
    assert config.data.corpora()[1] == CorpusConfig("data/bt/x", 0.5, "<bt>")
    assert config.data.tags() == ["<bt>"]
    assert config_module.from_dict(config_module.to_dict(config)) == config  # checkpoints
    for bad, message in (
        ("      weight: 0\n", "weight: expected a number > 0"),
        ('      tag: "a b"\n', "tag: expected one token"),
        ('      tag: "</s>"\n', "tag: expected one token"),
        ("      wieght: 2\n", "unknown key (did you mean weight?)"),
    ):
        text = base.replace("  train: data/toy/train\n", "  train:\n    - prefix: p\n" + bad)
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            config_module.load(path)
    assert config_module.load(ROOT / "configs" / "toy.yaml").data.corpora() == [
        CorpusConfig("data/toy/train")
    ]


@pytest.mark.slow
def test_a_model_trains_on_two_corpora_and_translates_untagged(tmp_path):
    from seq2seq.train import train
    from seq2seq.translate import Translator

    config = toy_config(tmp_path, max_steps=60, valid_every=60)
    data = dataclasses.replace(two_corpora(tmp_path / "data"), valid=config.data.valid)
    best = train(dataclasses.replace(config, data=data), tmp_path / "run")
    translator = Translator.from_checkpoint(best, device="cpu")
    assert "<bt>" in translator.loaded.src_vocab.ids
    assert len(translator.translate(["x a b", "y c"], beam=2)) == 2


@pytest.mark.slow
def test_fine_tuning_on_a_tagged_corpus_adds_the_tag_and_keeps_every_stored_weight(tmp_path):
    import torch

    from seq2seq import checkpoint
    from seq2seq.run import build_run, follow_init_from
    from seq2seq.train import train

    config = toy_config(tmp_path, max_steps=2, valid_every=2)
    untagged = dataclasses.replace(two_corpora(tmp_path / "d", tag=None), valid=config.data.valid)
    base = train(dataclasses.replace(config, data=untagged), tmp_path / "base")
    stored = checkpoint.load(base)
    tagged = dataclasses.replace(two_corpora(tmp_path / "d"), valid=config.data.valid)
    tuning = dataclasses.replace(
        config, data=tagged, train=dataclasses.replace(config.train, init_from=str(base))
    )
    (tmp_path / "probe").mkdir()
    run = build_run(follow_init_from(tuning), tmp_path / "probe", False, torch.device("cpu"))
    old = len(stored["src_vocab"])
    assert run.data.src_vocab.tokens == stored["src_vocab"] + ["<bt>"]  # a new id, at the end
    assert run.data.tgt_vocab.tokens == stored["tgt_vocab"]
    for name, weight in run.model.state_dict().items():
        if name == "encoder.embedding.weight":
            assert torch.equal(weight[:old], stored["model"][name])
            assert weight[old:].abs().sum() > 0  # the tag's row: initialized, not zero
        else:
            assert torch.equal(weight, stored["model"][name])
    for pair in run.data.train_indices:
        sentence = list(run.data.train_src[int(pair)])
        assert (sentence[0] == old) == (corpus_of(run.data, int(pair)) == "b")
    run.tracker.finish()
    tuned = checkpoint.load(train(tuning, tmp_path / "tuned"))  # and it trains
    assert tuned["src_vocab"][-1] == "<bt>"
