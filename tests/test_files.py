"""What a user has computed stays safe: changed inputs, two runs on one output, dead workers,
a full disk, duplicate config keys, and --overwrite of a training run."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2seq import config as config_module
from seq2seq import streaming
from seq2seq.config import ConfigError, DecodeOptions
from seq2seq.journal import Output, OutputError, OutputLock, ResumeError, journal_path
from seq2seq.streaming import translate_file
from seq2seq.translate import LoadSpec
from seq2seq.workers import FileJob

from .conftest import ROOT, toy_config
from .test_streaming import toy_lines


def test_a_duplicate_config_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  lr: 0.1\nmodel:\n  dropout: 0.2\ntrain:\n  max_steps: 5\n")
    with pytest.raises(ConfigError, match=r"x\.yaml:5: duplicate key 'train' \(first at line 1\)"):
        config_module.load(path)
    path.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"x\.yaml:3: duplicate key 'lr' \(first at line 2\)"):
        config_module.load(path)


def _interrupted(job: FileJob, monkeypatch, after_chunks: int = 1) -> None:
    """Run ``job`` until ``after_chunks`` chunks are on disk, then stop it as Ctrl-C would."""
    calls = []

    def stop_after_chunk():
        calls.append(1)
        if len(calls) >= after_chunks:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(streaming, "_give_back_memory", stop_after_chunk)
        with pytest.raises(KeyboardInterrupt):
            translate_file(job)
    assert journal_path(Path(job.output)).exists()


def _job(toy_checkpoint, tmp_path, **options) -> FileJob:
    source = tmp_path / "in.txt"
    if not source.exists():
        source.write_text("\n".join(toy_lines(40)) + "\n", encoding="utf-8")
    return FileJob(
        LoadSpec.of(toy_checkpoint, device="cpu"),
        str(source),
        str(tmp_path / "out.txt"),
        decode=DecodeOptions(beam=2),
        chunk_lines=10,
        **options,
    )


@pytest.mark.slow
def test_resume_refuses_an_input_changed_at_the_same_size(toy_checkpoint, tmp_path, monkeypatch):
    job = _job(toy_checkpoint, tmp_path)
    _interrupted(job, monkeypatch)
    source = tmp_path / "in.txt"
    stat = source.stat()
    text = source.read_text(encoding="utf-8")
    changed = text.replace("a", "b", 1) if "a" in text else "x" + text[1:]
    source.write_text(changed, encoding="utf-8")  # regenerated: same size, new mtime
    with pytest.raises(ResumeError, match="in.txt was modified"):
        translate_file(job, resume=True)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime ...
    with pytest.raises(ResumeError, match="SHA-256"):  # ... the lines read tell
        translate_file(job, resume=True)
    source.write_text(text, encoding="utf-8")
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert translate_file(job, resume=True) == 40  # the original input resumes


@pytest.mark.slow
def test_a_second_run_into_a_locked_output_is_refused(toy_checkpoint, tmp_path):
    job = _job(toy_checkpoint, tmp_path)
    lock = OutputLock(tmp_path / "out.txt")  # as a run in another process holds it
    try:
        with pytest.raises(OutputError, match="another seq2seq translate is writing it"):
            translate_file(job)
    finally:
        lock.release()
    assert translate_file(job) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


@pytest.mark.slow
def test_output_equal_to_input_or_attention_is_refused(toy_checkpoint, tmp_path):
    job = _job(toy_checkpoint, tmp_path)
    same_as_input = FileJob(job.load, job.input, job.input)
    with pytest.raises(OutputError, match="--input and --output are the same file"):
        translate_file(same_as_input)
    with pytest.raises(OutputError, match="--output and --attention are the same file"):
        translate_file(FileJob(job.load, job.input, job.output, attention=job.output))
    assert (tmp_path / "in.txt").read_text(encoding="utf-8").count("\n") == 40  # untouched


@pytest.mark.slow
def test_a_full_disk_keeps_the_journal_and_resumes(toy_checkpoint, tmp_path, monkeypatch):
    job = _job(toy_checkpoint, tmp_path)
    whole = FileJob(job.load, job.input, str(tmp_path / "whole.txt"), decode=job.decode)
    translate_file(whole)
    real_sync, calls = Output.sync, []

    def sync_until_full(self):
        calls.append(1)
        if len(calls) > 2:  # the second chunk does not fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_sync(self)

    with monkeypatch.context() as patch:
        patch.setattr(Output, "sync", sync_until_full)
        with pytest.raises(OutputError, match="no space left.*--resume"):
            translate_file(job)
    assert journal_path(tmp_path / "out.txt").exists() and not (tmp_path / "out.txt").exists()
    assert translate_file(job, resume=True) == 40
    assert (tmp_path / "out.txt").read_bytes() == (tmp_path / "whole.txt").read_bytes()


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_with_one_line_and_it_resumes(toy_checkpoint, tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("\n".join(toy_lines(3000, seed=4)) + "\n", encoding="utf-8")
    options = ["--model", str(toy_checkpoint), "--input", str(source), "--beam", "3",
               "--chunk-lines", "200", "--device", "cpu"]  # fmt: skip
    command = [sys.executable, "-m", "seq2seq", "translate", *options]
    whole = subprocess.run([*command, "--output", str(tmp_path / "whole.txt")], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    process = subprocess.Popen([*command, "--output", str(out), "--workers", "2"], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not journal_path(out).exists() or not _children(process.pid):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(_children(process.pid)[0], signal.SIGKILL)  # as the OOM killer would
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("seq2seq translate: error: a translation worker process died")
    assert "--resume" in last and "Traceback" not in stderr
    resumed = subprocess.run([*command, "--output", str(out), "--resume"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == (tmp_path / "whole.txt").read_bytes()


@pytest.mark.slow
def test_overwrite_removes_the_old_run_s_checkpoints(tmp_path):
    from seq2seq.train import train

    long = toy_config(max_steps=30, valid_every=10, keep_checkpoints=3)
    train(long, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").glob("step_*.pt")) == [
        "step_10.pt", "step_20.pt", "step_30.pt"
    ]  # fmt: skip
    short = toy_config(max_steps=8, valid_every=4, keep_checkpoints=3)
    train(short, tmp_path / "run", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").glob("step_*.pt")) == [
        "step_4.pt", "step_8.pt"
    ]  # fmt: skip
