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
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import torch

from seq2seq import device as device_module
from seq2seq.config import DecodeOptions
from seq2seq.corpus import DataError, decode_stream, iter_lines
from seq2seq.errors import UserError
from seq2seq.translate import (
    Translation,
    Translator,
    attention_record,
    model_paths,
    plot_attention,
)

log = logging.getLogger(__name__)

JOURNAL_FORMAT = "seq2seq-translate-progress"
Rendered = tuple[str, str | None]  # one input line's output rows and attention record


class ResumeError(UserError, ValueError):
    """An interrupted translation cannot be continued as asked."""


@dataclass(frozen=True)
class FileJob:
    """What to translate, where to, and how."""

    model: str | tuple[str, ...]  # a checkpoint, or several: an ensemble
    input: str = "-"  # a text file (plain or .gz), or - for stdin
    output: str = "-"  # a file, or - for stdout
    attention: str | None = None  # JSON-lines file of attention matrices
    plot_dir: str | None = None  # heatmaps (PNG) of the first plot_count lines
    plot_count: int = 10
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    device: str = "auto"
    precision: str = "auto"
    quantize: str | None = None
    shortlist: bool = False  # the checkpoint's vocabulary shortlist
    chunk_lines: int = 10_000
    workers: int = 1

    @property
    def keep_attention(self) -> bool:
        return bool(self.attention or self.plot_dir)


def render(index: int, translation: Translation, n_best: int, attention: bool) -> Rendered:
    """The output rows of input line ``index`` (0-based): the text, or n-best TSV rows."""
    if n_best > 1:
        rows = [f"{index}\t{c.score:.4f}\t{c.text}\n" for c in translation.candidates]
        text = "".join(rows) or f"{index}\t0.0000\t\n"
    else:
        text = translation.text + "\n"
    record = attention_record(index, translation) if attention else None
    return text, (json.dumps(record, ensure_ascii=False) + "\n" if record else None)


def _translate_piece(
    translator: Translator, lines: list[str], indices: list[int], job: FileJob, on_batch=None
) -> list[Rendered]:
    translations = translator.translate_detailed(
        lines,
        job.decode,
        keep_attention=job.keep_attention,
        line_numbers=[i + 1 for i in indices],
        on_batch=on_batch,
    )
    n_best = job.decode.n_best
    return [
        render(i, t, n_best, job.keep_attention) for i, t in zip(indices, translations, strict=True)
    ]


class InProcessDecoder:
    """Decodes in this process with all its threads."""

    def __init__(self, job: FileJob):
        self.job = job
        self.translator = Translator.from_checkpoint(
            job.model, job.device, job.precision, job.quantize, job.shortlist
        )

    def map(self, lines: list[str], first: int, on_lines=None) -> list[Rendered]:
        indices = list(range(first, first + len(lines)))
        return _translate_piece(self.translator, lines, indices, self.job, on_lines)

    def close(self) -> None:
        pass


_worker_translator: Translator | None = None


def _init_worker(job: FileJob, devices, threads: int) -> None:
    """A spawned worker: its own start-up and its own copy of the model."""
    global _worker_translator
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    torch.set_num_threads(threads)
    device = devices.get() if devices is not None else job.device
    _worker_translator = Translator.from_checkpoint(
        job.model, device, job.precision, job.quantize, job.shortlist
    )


def _init_forked(threads: int) -> None:
    """A forked worker: the parent's model is already here (shared copy-on-write)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent's SIGTERM handler came along with the fork; Pool.terminate() must simply end us.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(threads)


def _work(task: tuple[FileJob, list[str], list[int]]) -> list[Rendered]:
    job, lines, indices = task
    return _translate_piece(_worker_translator, lines, indices, job)


def can_fork(job: FileJob, threads: int = 1) -> bool:
    """Fork the workers (one model load, no second start-up) on a Linux CPU; else spawn.

    Only for one thread per worker: GNU OpenMP cannot start a thread team in a
    child forked from a process that already had one (the child hangs), and a
    program calling ``translate_file`` may have used torch's threads before.
    """
    forks = sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
    return forks and threads == 1 and device_module.pick_device(job.device).type == "cpu"


class PoolDecoder:
    """Deals each chunk out to ``job.workers`` processes: a share of the cores, or one GPU each.

    On a Linux CPU with a core per worker the parent loads (and quantizes) the
    model once, then forks the workers: they share its weights copy-on-write
    and start in milliseconds. Otherwise each worker is spawned and loads its
    own copy (forking after CUDA, on macOS, or into multi-threaded workers is
    unsafe; see ``can_fork``).
    """

    def __init__(self, job: FileJob):
        self.job = job
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // job.workers)
        if can_fork(job, threads):
            global _worker_translator
            torch.set_num_threads(1)  # the worker's share; the loaded model keeps no threads
            _worker_translator = Translator.from_checkpoint(
                job.model, job.device, job.precision, job.quantize, job.shortlist
            )
            context = multiprocessing.get_context("fork")
            self.pool = context.Pool(job.workers, _init_forked, (threads,))
            return
        context = multiprocessing.get_context("spawn")
        gpus = torch.cuda.device_count() if job.device in ("auto", "cuda") else 0
        devices = None
        if gpus > 1:
            devices = context.Queue()
            for i in range(job.workers):
                devices.put(f"cuda:{i % gpus}")
        self.pool = context.Pool(job.workers, _init_worker, (job, devices, threads))

    def map(self, lines: list[str], first: int, on_lines=None) -> list[Rendered]:
        # Dealt by length, so every worker gets a similar share of long and short lines.
        order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
        pieces = [order[k :: self.job.workers] for k in range(self.job.workers)]
        tasks = [(self.job, [lines[i] for i in p], [first + i for i in p]) for p in pieces]
        merged: list[Rendered | None] = [None] * len(lines)
        for piece, rendered in zip(pieces, self.pool.map(_work, tasks), strict=True):
            for i, item in zip(piece, rendered, strict=True):
                merged[i] = item
        if on_lines is not None:
            on_lines(len(lines))
        return merged

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


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
