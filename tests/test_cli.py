"""The ``seq2seq`` command, run as a user runs it."""

import subprocess
import sys

import pytest

from .conftest import ROOT


def run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_train_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = run(
        "train",
        "--config",
        "configs/toy.yaml",
        "--output-dir",
        str(out),
        "--set",
        "train.max_steps=20",
        "--set",
        "train.valid_every=10",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out / "best.pt")
    assert {"best.pt", "last.pt", "config.yaml", "train.log"} <= {p.name for p in out.iterdir()}
    assert "validation at step 20" in (out / "train.log").read_text()


def test_config_error_is_one_line(tmp_path):
    result = run(
        "train",
        "--config",
        "configs/toy.yaml",
        "--output-dir",
        str(tmp_path),
        "--set",
        "model.dropuot=0.1",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "seq2seq train: error: configs/toy.yaml (with --set): model.dropuot: "
        "unknown key (did you mean dropout?)"
    ]


def test_download_from_missing_folder_says_what_to_do(tmp_path):
    result = run(
        "download", "multi30k", "--dest", str(tmp_path / "d"), "--from", str(tmp_path / "nope")
    )
    assert result.returncode == 1
    assert "no such file" in result.stderr and "--from" in result.stderr


def test_download_without_network_says_what_to_do(tmp_path, monkeypatch):
    from seq2seq import download

    monkeypatch.setitem(
        download.CORPORA, "multi30k", ("http://127.0.0.1:9/nothing", ["train.de.gz"])
    )
    try:
        download.download("multi30k", tmp_path / "d", timeout=5)
    except download.DownloadError as error:
        assert "cannot download" in str(error) and "--from DIR" in str(error)
    else:
        raise AssertionError("expected a DownloadError")
    assert list((tmp_path / "d").iterdir()) == []  # no partial file left


def test_download_from_a_local_mirror(tmp_path):
    import gzip

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    from seq2seq.download import MULTI30K_FILES

    for name in MULTI30K_FILES:
        with gzip.open(mirror / name, "wt") as handle:
            handle.write("line\n")
    result = run("download", "multi30k", "--dest", str(tmp_path / "d"), "--from", str(mirror))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(MULTI30K_FILES)


def test_download_task_2_takes_the_monolingual_captions(tmp_path):
    import gzip

    from seq2seq.download import MULTI30K_TASK2_FILES

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in MULTI30K_TASK2_FILES:
        with gzip.open(mirror / name, "wt") as handle:
            handle.write("caption\n")
    dest = tmp_path / "t2"
    result = run("download", "multi30k", "--task", "2", "--dest", str(dest), "--from", str(mirror))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(MULTI30K_TASK2_FILES)
    assert len(MULTI30K_TASK2_FILES) == 10  # train.1..5, German and English
    result = run("download", "tatoeba_de_en", "--task", "2", "--dest", str(dest))
    assert result.returncode != 0 and "has no task 2" in result.stderr


@pytest.mark.slow
def test_quiet_keeps_stderr_to_warnings_but_the_log_file_complete(tmp_path):
    out = tmp_path / "run"
    result = run(
        "-q",
        "train",
        "--config",
        "configs/toy.yaml",
        "--output-dir",
        str(out),
        "--set",
        "train.max_steps=4",
        "--set",
        "train.valid_every=4",
    )
    assert result.returncode == 0, result.stderr
    assert "validation at step" not in result.stderr
    assert "validation at step 4" in (out / "train.log").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--hyp", "data/toy/test.tgt", "--ref", "data/toy/test.tgt", "--metrics", "blue"],
         "unknown metric 'blue'"),
        (["translate", "--model", "{model}", "--quantize", "int8", "--device", "cuda"], "device cuda"),
        (["translate", "--model", "{model}", "--device", "tpu"], "device 'tpu'"),
        (["translate", "--model", "{model}", "--input", "no/such/file.de"], "no/such/file.de: no such input file"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_without_a_traceback(toy_checkpoint, args, message):
    result = run(*[a.replace("{model}", str(toy_checkpoint)) for a in args])
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_closed_pipe_is_not_a_traceback(tmp_path, toy_checkpoint):
    source = tmp_path / "many.txt"
    source.write_text("a b c d e\n" * 20_000)
    shell = (
        f"{sys.executable} -m seq2seq translate --model {toy_checkpoint} --beam 1 --device cpu"
        f" --input {source} --chunk-lines 500 | head -n 1"
    )
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
