"""Translate files of any size: chunk by chunk, written as they finish, resumable, in parallel.

The input is read ``chunk_lines`` lines at a time; the Translator sorts and
batches each chunk, and its output lines are written in input order before the
next chunk is read. Memory therefore stays flat however long the file, and a
pipe sees lines arrive while the input is still being read.

Into a file, the outputs and a journal are written as journal.py describes:
after every chunk the outputs are fsynced, then the journal is replaced, so it
never claims bytes that are not on disk. ``resume`` checks the settings
(model, options, and the input's path, size and modification time), skips the
lines already done while checking their SHA-256 against the journal's,
truncates the partial files to the journal's sizes (dropping a chunk that was
being written when the process died) and goes on; at the end the partial files
are renamed to their final names and the journal removed. A file therefore
never exists under its final name before the run is complete, and a resumed
run keeps the finished chunks' bytes and writes the lines one that never
stopped would (the same tokens; a score as equal as two processes' rounding).
A full disk stops the run with the journal intact: free space, then resume.

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
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from itertools import islice
from pathlib import Path

from seq2seq.corpus import DataError, decode_stream, iter_lines
from seq2seq.journal import (
    FULL_DISK,
    Output,
    OutputError,
    OutputLock,
    ResumeError,
    journal_path,
    read_journal,
    write_journal,
)
from seq2seq.runtime.exported import read_manifest
from seq2seq.translation import identity_file, plot_attention
from seq2seq.workers import FileJob, InProcessDecoder, PoolDecoder, Rendered

__all__ = ["ResumeError", "count_lines", "journal_path", "translate_file"]

log = logging.getLogger(__name__)


def _settings(job: FileJob) -> dict:
    """Everything that decides the output bytes: a resumed run must match it."""
    model = hashlib.sha256()
    for path in job.load.model:
        with open(identity_file(path), "rb") as handle:
            while block := handle.read(1 << 20):
                model.update(block)
    settings = {
        "model": model.hexdigest(),
        "input": job.input,
        "attention": job.attention is not None,
        "decode": asdict(job.decode),
        "precision": job.load.precision,  # resolved: auto is what this machine chose
        "quantize": job.load.quantize,
        "shortlist": job.load.shortlist,
        "chunk_lines": job.chunk_lines,
    }
    if job.input != "-":
        source = Path(job.input)
        stat = source.stat()
        settings["input"] = [str(source.resolve()), stat.st_size, stat.st_mtime_ns]
    return settings


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
    job = replace(job, load=job.load.resolve())  # once, for this process and its workers
    _check_paths(job)
    if job.output == "-":
        if resume:
            raise ResumeError("--resume needs --output FILE: a translation to stdout cannot resume")
        return _translate(job, False, on_lines, None)
    lock = OutputLock(Path(job.output))
    try:
        return _translate(job, resume, on_lines, journal_path(Path(job.output)))
    finally:
        lock.release()


def _check_paths(job: FileJob) -> None:
    if job.load.exported:
        read_manifest(job.load.model[0])  # a one-line error for a folder that is not an export
    models = [(str(identity_file(m)), "checkpoint") for m in job.load.model]
    for name, what in models + [(job.input, "input")]:
        if name != "-" and not Path(name).is_file():
            raise DataError(f"{name}: no such {what} file")
    named = {"--input": job.input, "--output": job.output, "--attention": job.attention}
    files = {k: Path(v).resolve() for k, v in named.items() if v not in (None, "-")}
    for i, (first, path) in enumerate(files.items()):
        for other, same in list(files.items())[i + 1 :]:
            if path == same:
                raise OutputError(f"{first} and {other} are the same file ({path}); name another")


def _translate(job: FileJob, resume: bool, on_lines, journal: Path | None) -> int:
    settings = _settings(job)
    done, sizes, digest = 0, [None, None], None
    if journal is not None and journal.exists():
        if not resume:
            raise ResumeError(
                f"{job.output}: an interrupted translation of it is in {journal.name}: "
                f"add --resume to continue it, or delete {journal.name} to start over"
            )
        record = read_journal(journal, settings)
        done, sizes, digest = record["lines"], record["sizes"], record["digest"]
        log.info("resuming after line %d", done)
    elif resume:
        log.info("no interrupted translation of %s to resume; starting at line 1", job.output)
    lines, read = read_input(job.input), hashlib.sha256()
    if done:
        _skip(job.input, lines, done, digest, read)
    outputs = [Output(job.output, sizes[0])]
    if job.attention:
        outputs.append(Output(job.attention, sizes[1]))
    decoder = PoolDecoder(job) if job.workers > 1 else InProcessDecoder(job)
    try:
        done = _run(job, decoder, lines, (done, read), outputs, journal, settings, on_lines)
        for output in outputs:
            output.finish()
        if journal is not None:
            journal.unlink(missing_ok=True)
    except OSError as error:
        if error.errno not in FULL_DISK:
            raise
        raise OutputError(
            f"{job.output}: no space left on the device; the lines translated so far are kept: "
            "free some space, then run the same command with --resume"
        ) from None
    finally:
        decoder.close()
        for output in outputs:
            output.close()
    return done


def _skip(name: str, lines: Iterator[str], done: int, digest: str, read) -> None:
    """Read past the ``done`` lines already translated, checking they are the ones that were."""
    count = 0
    for line in islice(lines, done):
        read.update(line.encode("utf-8") + b"\n")
        count += 1
    if count < done:
        raise ResumeError(f"{name} has fewer than the {done} lines already translated")
    if read.hexdigest() != digest:
        raise ResumeError(
            f"--resume: the first {done} lines of {name} are not the ones the interrupted run "
            "translated (their SHA-256 differs); delete the journal and .partial file to start over"
        )


def _run(job, decoder, lines, position, outputs, journal, settings, on_lines) -> int:
    """The chunk loop: translate, write in order, sync, then record the progress."""
    done, read = position  # lines done, and the running SHA-256 of those lines
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
        for line in chunk:
            read.update(line.encode("utf-8") + b"\n")
        if journal is not None:
            record = {"settings": settings, "lines": done, "digest": read.hexdigest()}
            write_journal(journal, {**record, "sizes": sizes + [None] * (2 - len(sizes))})
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
