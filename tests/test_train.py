"""Training end to end on the toy task: learning, exact resume, checkpoints, W&B."""

import dataclasses

import pytest
import torch

from seq2seq import checkpoint
from seq2seq.corpus import read_lines
from seq2seq.search import decode_corpus
from seq2seq.train import TrainingError, train

from . import wandb_files
from .conftest import ROOT, toy_config

pytestmark = pytest.mark.slow  # every test trains


def exact_match(best_path, split: str = "test") -> float:
    loaded = checkpoint.load_model(best_path)
    sources = read_lines(ROOT / "data" / "toy" / f"{split}.src")
    references = read_lines(ROOT / "data" / "toy" / f"{split}.tgt")
    ids = [loaded.src_vocab.encode(t) for t in loaded.src_tokenizer.encode_many(sources)]
    hypotheses = decode_corpus(loaded.model, ids, 2000, torch.device("cpu"))
    texts = [loaded.tgt_tokenizer.decode(loaded.tgt_vocab.decode(h.tokens)) for h in hypotheses]
    return sum(h == r for h, r in zip(texts, references, strict=True)) / len(references)


def test_toy_task_is_learned(toy_checkpoint):
    assert exact_match(toy_checkpoint) >= 0.95


def with_dropout(config, dropout: float):
    return dataclasses.replace(config, model=dataclasses.replace(config.model, dropout=dropout))


@pytest.mark.numerics
def test_resume_continues_exactly(tmp_path):
    # Dropout on, so the restored RNG state matters; 3 batches per step via accumulation
    # checks the position in the data is kept mid-epoch.
    steps = 12
    config = with_dropout(toy_config(valid_every=steps, batch_tokens=300, accumulate=3), 0.2)
    straight = dataclasses.replace(
        config, train=dataclasses.replace(config.train, max_steps=2 * steps)
    )
    first = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=steps))
    train(straight, tmp_path / "straight")
    train(first, tmp_path / "resumed")
    train(straight, tmp_path / "resumed", resume=True)
    a = checkpoint.load(tmp_path / "straight" / "last.pt")
    b = checkpoint.load(tmp_path / "resumed" / "last.pt")
    assert a["progress"]["step"] == b["progress"]["step"] == 2 * steps
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    scores = [
        [{k: v for k, v in e.items() if k != "minutes"} for e in run["progress"]["history"]]
        for run in (a, b)
    ]
    assert scores[0] == scores[1]


@pytest.mark.numerics
def test_resume_with_subword_sampling_continues_exactly(tmp_path):
    # Each epoch draws its own segmentation; the resumed run must draw the same ones.
    from .test_data import sampled_words_data

    words, _ = sampled_words_data(tmp_path / "data")
    config = toy_config(valid_every=6, batch_tokens=600, accumulate=3, max_steps=12)
    config = dataclasses.replace(config, data=dataclasses.replace(words, max_len=60))
    half = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=6))
    train(config, tmp_path / "straight")
    train(half, tmp_path / "resumed")
    train(config, tmp_path / "resumed", resume=True)
    a = checkpoint.load(tmp_path / "straight" / "last.pt")
    b = checkpoint.load(tmp_path / "resumed" / "last.pt")
    assert a["progress"]["epoch"] >= 1  # crossed into a second segmentation
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_checkpoint_is_plain_data(tmp_path):
    best = train(toy_config(max_steps=5, valid_every=5), tmp_path / "run")
    payload = torch.load(best, weights_only=True)  # never unpickles code
    assert payload["format"] == "seq2seq-checkpoint"
    assert payload["src_vocab"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    loaded = checkpoint.load_model(best)
    assert loaded.config.model == toy_config().model
    assert loaded.src_tokenizer.decode(loaded.src_tokenizer.encode("a b c")) == "a b c"
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert {"optimizer", "progress", "rng"} <= set(last)


def test_existing_run_is_not_overwritten(tmp_path):
    config = toy_config(max_steps=2, valid_every=2)
    train(config, tmp_path / "run")
    with pytest.raises(TrainingError, match="already holds a training run.*--resume.*--overwrite"):
        train(config, tmp_path / "run")
    with pytest.raises(TrainingError, match="last.pt does not exist"):
        train(config, tmp_path / "other", resume=True)
    train(config, tmp_path / "run", overwrite=True)


def test_resume_with_other_model_is_refused(tmp_path):
    config = toy_config(max_steps=2, valid_every=2)
    train(config, tmp_path / "run")
    with pytest.raises(TrainingError, match="model section of the config differs"):
        train(with_dropout(config, 0.3), tmp_path / "run", resume=True)


@pytest.mark.slow
def test_offline_wandb_run_records_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    config = toy_config(max_steps=10, valid_every=10, log_every=5)
    config = dataclasses.replace(config, wandb=dataclasses.replace(config.wandb, mode=None))
    train(config, tmp_path / "run")
    (run_file,) = wandb_files.run_files(tmp_path / "run")
    rows = wandb_files.history(run_file)
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["train/step"] for r in train_rows] == [5, 10]  # the x-axis is train/step
    assert all(r["train/tokens_per_s"] > 0 and r["train/lr"] > 0 for r in train_rows)
    valid = [r for r in rows if "valid/bleu" in r]
    assert valid and valid[0]["train/step"] == 10 and 0 <= valid[0]["valid/bleu"] <= 100
    assert any(key.startswith("valid/samples/") for r in rows for key in r)


@pytest.mark.numerics
def test_checkpoint_averaging(tmp_path):
    import subprocess
    import sys

    config = toy_config(max_steps=15, valid_every=5, keep_checkpoints=2)
    train(config, tmp_path / "run")
    kept = sorted(p.name for p in (tmp_path / "run").glob("step_*.pt"))
    assert kept == ["step_10.pt", "step_15.pt"]
    out = tmp_path / "avg.pt"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq",
            "average",
            "--run",
            str(tmp_path / "run"),
            "--last",
            "2",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    a, b = (checkpoint.load(tmp_path / "run" / name)["model"] for name in kept)
    averaged = checkpoint.load_model(out).model.state_dict()
    for name, tensor in averaged.items():
        assert torch.allclose(tensor, (a[name] + b[name]) / 2, atol=1e-6), name
