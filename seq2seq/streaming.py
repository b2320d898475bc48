"""Translate files of any size: chunk by chunk, written as they finish, resumable, in parallel.

The input is read ``chunk_lines`` lines at a time; the Translator sorts and
batches each chunk, and its output lines are written in input order before the
next chunk is read. Memory therefore stays flat however long the file, and a
pipe sees lines arrive while the input is still being read.

Into a file, output goes to ``.NAME.partial`` beside it, with a journal
``.NAME.progress`` (JSON: lines done, the byte size of each output so far, and
the settings that decide those bytes). After every chunk the outputs are
fsynced, then the journal is replaced atomically, so the journal never claims
bytes that are not on disk. ``resume`` truncates the partial files to the
journal's sizes (dropping a chunk that was being written when the process
died), skips the lines already done and goes on; at the end the partial files
are renamed to their final names and the journal removed. A file therefore
never exists under its final name before the run is complete, and a resumed
run writes the same bytes as one that never stopped.

With ``workers > 1`` each chunk is dealt out to that many decoding processes
(the CPU cores split between them, or one GPU each) and put back in order.
"""

from __future__ import annotations

import ctypes
import functools
import gzip
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path

from seq2seq import device as device_module
from seq2seq.corpus import DataError, decode_stream, iter_lines
from seq2seq.errors import UserError
from seq2seq.translate import model_paths, plot_attention
from seq2seq.workers import FileJob, InProcessDecoder, PoolDecoder, Rendered

__all__ = ["FileJob", "ResumeError", "count_lines", "journal_path", "translate_file"]

log = logging.getLogger(__name__)

JOURNAL_FORMAT = "seq2seq-translate-progress"


class ResumeError(UserError, ValueError):
    """An interrupted translation cannot be continued as asked."""


class Output:
    """One output written chunk by chunk: stdout, or a file under a temporary name."""

    def __init__(self, name: str, resume_size: int | None = None):
        self.final = None if name == "-" else Path(name)
        if self.final is None:
            self.handle = sys.stdout.buffer
            return
        self.partial = self.final.with_name(f".{self.final.name}.partial")
        if resume_size is None:
            self.handle = open(self.partial, "wb")
            return
        if not self.partial.is_file() or self.partial.stat().st_size < resume_size:
            raise ResumeError(
                f"{self.partial}: missing or shorter than its journal says; "
                f"delete {self.partial.name} and {journal_path(self.final).name} to start over"
            )
        self.handle = open(self.partial, "r+b")
        self.handle.truncate(resume_size)  # drop what a killed run wrote after its last chunk
        self.handle.seek(resume_size)

    def write(self, text: str) -> None:
        self.handle.write(text.encode("utf-8"))

    def sync(self) -> int:
        """Flush to the disk; the byte size written so far."""
        self.handle.flush()
        if self.final is None:
            return 0
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def finish(self) -> None:
        self.sync()
        if self.final is not None:
            self.handle.close()
            os.replace(self.partial, self.final)

    def close(self) -> None:
        if self.final is not None and not self.handle.closed:
            self.handle.close()


def journal_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.progress")


def _write_journal(path: Path, settings: dict, lines: int, sizes: list[int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    record = {"format": JOURNAL_FORMAT, "settings": settings, "lines": lines, "sizes": sizes}
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _settings(job: FileJob) -> dict:
    """Everything that decides the output bytes: a resumed run must match it."""
    model = hashlib.sha256()
    for path in model_paths(job.model):
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                model.update(block)
    source = Path(job.input)
    device = device_module.pick_device(job.device)
    values = asdict(job)
    for name in ("output", "plot_dir", "plot_count", "workers", "device"):
        values.pop(name)
    values["model"] = model.hexdigest()
    values["attention"] = job.attention is not None
    values["precision"] = device_module.resolve_precision(job.precision, device)
    if job.input != "-":
        values["input"] = [str(source.resolve()), source.stat().st_size]
    return values


def _resume_point(journal: Path, settings: dict) -> tuple[int, list[int]]:
    """Lines done and output sizes of the interrupted run recorded in ``journal``."""
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
        assert record["format"] == JOURNAL_FORMAT
    except (OSError, ValueError, KeyError, AssertionError):
        raise ResumeError(f"{journal}: not a readable translation journal; delete it") from None
    differ = [k for k in settings if record["settings"].get(k) != settings[k]]
    if differ:
        raise ResumeError(
            f"--resume: the interrupted run used other settings ({', '.join(differ)} differ); "
            f"rerun it with the same model, input and options, or delete {journal.name} "
            "and its .partial file to start over"
        )
    return record["lines"], record["sizes"]


def read_input(name: str) -> Iterator[str]:
    return decode_stream(sys.stdin.buffer, "<stdin>") if name == "-" else iter_lines(name)


def count_lines(name: str) -> int | None:
    """Lines in a file (for a progress bar's ETA); None for stdin."""
    if name == "-":
        return None
    opener = gzip.open if name.endswith(".gz") else open
    with opener(name, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def translate_file(
    job: FileJob, resume: bool = False, on_lines: Callable[[int], None] | None = None
) -> int:
    """Translate ``job.input`` into ``job.output`` chunk by chunk; returns the lines translated."""
    if job.workers < 1 or job.chunk_lines < 1:
        raise ValueError("workers and chunk_lines must be >= 1")
    for name, what in [(m, "checkpoint") for m in model_paths(job.model)] + [(job.input, "input")]:
        if name != "-" and not Path(name).is_file():
            raise DataError(f"{name}: no such {what} file")
    journal = journal_path(Path(job.output)) if job.output != "-" else None
    if resume and journal is None:
        raise ResumeError("--resume needs --output FILE: a translation to stdout cannot resume")
    settings = _settings(job)
    done, sizes = 0, [None, None]
    if journal is not None and journal.exists():
        if not resume:
            raise ResumeError(
                f"{job.output}: an interrupted translation of it is in {journal.name}: "
                f"add --resume to continue it, or delete {journal.name} to start over"
            )
        done, sizes = _resume_point(journal, settings)
        log.info("resuming after line %d", done)
    elif resume:
        log.info("no interrupted translation of %s to resume; starting at line 1", job.output)
    lines = read_input(job.input)
    if done and sum(1 for _ in islice(lines, done)) < done:
        raise ResumeError(f"{job.input} has fewer than the {done} lines already translated")
    outputs = [Output(job.output, sizes[0])]
    if job.attention:
        outputs.append(Output(job.attention, sizes[1]))
    decoder = PoolDecoder(job) if job.workers > 1 else InProcessDecoder(job)
    try:
        done = _run(job, decoder, lines, done, outputs, journal, settings, on_lines)
        for output in outputs:
            output.finish()
        if journal is not None:
            journal.unlink(missing_ok=True)
    finally:
        decoder.close()
        for output in outputs:
            output.close()
    return done


def _run(job, decoder, lines, done, outputs, journal, settings, on_lines) -> int:
    """The chunk loop: translate, write in order, sync, then record the progress."""
    while chunk := list(islice(lines, job.chunk_lines)):
        start = time.perf_counter()
        rendered = decoder.map(chunk, done, on_lines)
        outputs[0].write("".join(text for text, _ in rendered))
        if job.attention:
            outputs[1].write("".join(record for _, record in rendered))
        if job.plot_dir and done < job.plot_count:
            _plot(job, rendered, done)
        sizes = [output.sync() for output in outputs]
        done += len(chunk)
        if journal is not None:
            _write_journal(journal, settings, done, sizes + [None] * (2 - len(sizes)))
        log.info(
            "%d lines translated (%.0f lines/s)", done, len(chunk) / (time.perf_counter() - start)
        )
        del chunk, rendered
        _give_back_memory()
    return done


def _give_back_memory() -> None:
    """Return the freed heap of a finished chunk to the OS (glibc keeps it otherwise).

    Without this the resident size creeps up chunk after chunk as the heap
    fragments, although nothing is kept; elsewhere than glibc it does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _plot(job: FileJob, rendered: list[Rendered], first: int) -> None:
    folder = Path(job.plot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (_, record) in enumerate(rendered[: job.plot_count - first]):
        data = json.loads(record)
        if data["output"]:
            plot_attention(data, folder / f"attention_{first + offset + 1:04d}.png")
