"""Bad input, interruptions and numeric faults: clear errors, nothing lost."""

import dataclasses
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from seq2seq import checkpoint
from seq2seq.train import TrainingError, train

from .conftest import ROOT, toy_config


@pytest.mark.slow
def test_nan_steps_are_skipped_then_training_stops(tmp_path, monkeypatch):
    from seq2seq import step as step_module

    real = step_module.token_loss_sum
    calls = {"n": 0}

    def sometimes_nan(logits, tgt_out, smoothing):
        calls["n"] += 1
        loss = real(logits, tgt_out, smoothing)
        return loss * float("nan") if calls["n"] % 2 == 0 else loss

    monkeypatch.setattr(step_module, "token_loss_sum", sometimes_nan)
    train(toy_config(max_steps=6, valid_every=100), tmp_path / "run")
    payload = checkpoint.load(tmp_path / "run" / "last.pt")
    assert payload["progress"]["bad_steps"] > 0
    assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point())

    monkeypatch.setattr(step_module, "token_loss_sum", lambda *a: real(*a) * float("nan"))
    with pytest.raises(TrainingError, match="non-finite loss"):
        train(toy_config(max_steps=100, valid_every=100), tmp_path / "run2")
    assert not (tmp_path / "run2" / "best.pt").exists()


@pytest.mark.numerics
@pytest.mark.slow
def test_same_seed_same_validation_scores(tmp_path):
    config = dataclasses.replace(toy_config(max_steps=20, valid_every=10))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, dropout=0.2))
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    history = [checkpoint.load(tmp_path / r / "last.pt")["progress"]["history"] for r in "ab"]
    strip = [[{k: v for k, v in e.items() if k != "minutes"} for e in h] for h in history]
    assert strip[0] == strip[1]


def test_a_text_file_given_as_model_is_a_one_line_error(tmp_path):
    text = tmp_path / "text.pt"
    text.write_text("hello")
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", "--model", str(text)],
        input="a b\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "text.pt: not a readable seq2seq checkpoint" in result.stderr


def start_training(out, *extra) -> subprocess.Popen:
    args = [
        "--set",
        "train.max_steps=400",
        "--set",
        "train.valid_every=40",
        "--set",
        "model.dropout=0.1",
        "--set",
        "train.num_threads=1",
    ]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seq2seq",
            "-q",
            "train",
            "--config",
            "configs/toy.yaml",
            "--output-dir",
            str(out),
            *args,
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_kill_then_resume_matches_an_uninterrupted_run(tmp_path, how):
    killed = start_training(tmp_path / "killed")
    wait_for(tmp_path / "killed" / "last.pt", killed)  # the first checkpoint, at step 40
    if how == signal.SIGTERM:  # at a random moment: inside a step, a validation, a save
        time.sleep(random.Random().uniform(0, 1.0))
    killed.send_signal(how)
    assert killed.wait(timeout=60) == (-9 if how == signal.SIGKILL else 130)
    straight = start_training(tmp_path / "straight")
    assert straight.wait(timeout=300) == 0
    step = checkpoint.load(tmp_path / "killed" / "last.pt")["progress"]["step"]
    assert 0 < step < 400
    resumed = start_training(tmp_path / "killed", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a = checkpoint.load(tmp_path / "straight" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "killed" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_saves_and_prints_the_resume_command(tmp_path):
    process = start_training(tmp_path / "run")
    wait_for(tmp_path / "run" / "last.pt", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "--resume" in stderr and "Traceback" not in stderr
    assert checkpoint.load(tmp_path / "run" / "last.pt")["progress"]["step"] > 0


def test_interrupted_translation_leaves_no_output_file_but_keeps_its_chunks(
    tmp_path, toy_checkpoint
):
    source = tmp_path / "in.txt"
    source.write_text("a b c d e f g h i j k l\n" * 50_000)
    out = tmp_path / "out.txt"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seq2seq",
            "translate",
            "--model",
            str(toy_checkpoint),
            "--input",
            str(source),
            "--output",
            str(out),
            "--beam",
            "5",
            "--chunk-lines",
            "1000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A runner started in the background (nohup, &) passes SIGINT on ignored; undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Signal once the first chunk is on disk (its journal exists): by then every import is
    # done. A KeyboardInterrupt that lands inside an import's lock callback is dropped by
    # Python ("Exception ignored"), and start-up is slow under load.
    journal, deadline = tmp_path / ".out.txt.progress", time.monotonic() + 120
    while not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr
    assert not out.exists()  # finished chunks wait under a hidden name for --resume
    assert (tmp_path / ".out.txt.partial").exists()


def test_unusual_input_still_gives_one_line_each(toy_checkpoint):
    from seq2seq.translate import Translator

    lines = ["zzz qqq", "...", "12345", "🙂🙂", "a", "\t"]
    outputs = Translator.from_checkpoint(toy_checkpoint, "cpu").translate(lines, beam=3)
    assert len(outputs) == len(lines) and outputs[-1] == ""


@pytest.mark.slow
def test_resume_with_another_vocabulary_is_refused(tmp_path):
    config = toy_config(max_steps=2, valid_every=2)
    train(config, tmp_path / "run")
    other = dataclasses.replace(config, data=dataclasses.replace(config.data, src_vocab_size=10))
    with pytest.raises(TrainingError, match="data section of the config differs"):
        train(other, tmp_path / "run", resume=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beam", "0"], "--beam: expected an integer >= 1, got 0"),
        (["--beam", "2", "--n-best", "3"], "--n-best 3 exceeds --beam 2"),
    ],
)
def test_bad_translate_options(toy_checkpoint, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", "--model", str(toy_checkpoint), *args],
        input="a b\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode in (1, 2) and message in result.stderr
    assert "Traceback" not in result.stderr
