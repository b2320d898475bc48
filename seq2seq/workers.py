"""Who decodes a chunk of lines: this process, or a pool of worker processes.

``InProcessDecoder`` uses this process and all its threads. ``PoolDecoder``
deals each chunk out to ``workers`` processes, sorted by length so that each
gets a similar share, and puts the results back in input order. On a Linux CPU
with one core per worker the workers are forked after the model is loaded
once; otherwise each is spawned and loads its own copy (see ``can_fork``).
Both return each line rendered as its output rows and attention record.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass, field, replace

from seq2seq.config import DecodeOptions
from seq2seq.errors import UserError
from seq2seq.translation import LoadSpec, Translation, attention_record
from seq2seq.translators import load_translator, set_threads

Rendered = tuple[str, str | None]  # one input line's output rows and attention record


class WorkerDied(UserError, RuntimeError):
    """A decoding process ended without its results (killed by a signal)."""


@dataclass(frozen=True)
class FileJob:
    """What to translate, where to, and how (``load`` resolved: see ``LoadSpec.resolve``)."""

    load: LoadSpec  # the checkpoint(s), device, precision, int8, shortlist
    input: str = "-"  # a text file (plain or .gz), or - for stdin
    output: str = "-"  # a file, or - for stdout
    attention: str | None = None  # JSON-lines file of attention matrices
    plot_dir: str | None = None  # heatmaps (PNG) of the first plot_count lines
    plot_count: int = 10
    decode: DecodeOptions = field(default_factory=DecodeOptions)
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
    translator, lines: list[str], indices: list[int], job: FileJob, on_batch=None
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
        self.translator = load_translator(job.load)

    def map(self, lines: list[str], first: int, on_lines=None) -> list[Rendered]:
        indices = list(range(first, first + len(lines)))
        return _translate_piece(self.translator, lines, indices, self.job, on_lines)

    def close(self) -> None:
        pass


_worker_translator = None  # a Translator or a RuntimeTranslator


def _init_worker(job: FileJob, devices, threads: int) -> None:
    """A spawned worker: its own start-up and its own copy of the model."""
    global _worker_translator
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    spec = job.load if devices is None else replace(job.load, device=devices.get())
    _worker_translator = load_translator(spec, threads)


def _init_forked(spec: LoadSpec, threads: int) -> None:
    """A forked worker: the parent's model is already here (shared copy-on-write)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent's SIGTERM handler came along with the fork; close() terminates us and must simply end us.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    set_threads(spec, threads)


def _work(task: tuple[FileJob, list[str], list[int]]) -> list[Rendered]:
    job, lines, indices = task
    return _translate_piece(_worker_translator, lines, indices, job)


def can_fork(job: FileJob, threads: int = 1) -> bool:
    """Fork the workers (one model load, no second start-up) on a Linux CPU; else spawn.

    Only for one thread per worker: GNU OpenMP cannot start a thread team in a
    child forked from a process that already had one (the child hangs), and a
    program calling ``translate_file`` may have used torch's threads before.
    """
    import multiprocessing  # here, not at the top: one process needs none (start-up time)

    forks = sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
    return forks and threads == 1 and job.load.device == "cpu"


class PoolDecoder:
    """Deals each chunk out to ``job.workers`` processes: a share of the cores, or one GPU each.

    On a Linux CPU with a core per worker the parent loads (and quantizes) the
    model once, then forks the workers: they share its weights copy-on-write
    and start in milliseconds. Otherwise each worker is spawned and loads its
    own copy (forking after CUDA, on macOS, or into multi-threaded workers is
    unsafe; see ``can_fork``).
    """

    def __init__(self, job: FileJob):
        import multiprocessing

        self.job = job
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // job.workers)
        if can_fork(job, threads):
            global _worker_translator
            # One thread: the worker's share (a PyTorch model keeps no threads of its own;
            # an export's sessions are made with one).
            _worker_translator = load_translator(job.load, threads=1)
            context = multiprocessing.get_context("fork")
            self.pool = _pool(job.workers, context, _init_forked, (job.load, threads))
            return
        context = multiprocessing.get_context("spawn")
        gpus = _gpu_count() if job.load.device == "cuda" else 0  # auto or cuda
        devices = None
        if gpus > 1:
            devices = context.Queue()
            for i in range(job.workers):
                devices.put(f"cuda:{i % gpus}")
        self.pool = _pool(job.workers, context, _init_worker, (job, devices, threads))

    def map(self, lines: list[str], first: int, on_lines=None) -> list[Rendered]:
        from concurrent.futures.process import BrokenProcessPool  # a pool's: not at start-up

        # Dealt by length, so every worker gets a similar share of long and short lines.
        order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
        pieces = [order[k :: self.job.workers] for k in range(self.job.workers)]
        tasks = [(self.job, [lines[i] for i in p], [first + i for i in p]) for p in pieces]
        merged: list[Rendered | None] = [None] * len(lines)
        try:
            results = list(self.pool.map(_work, tasks))
        except BrokenProcessPool:
            raise WorkerDied(
                "a translation worker process died (killed by a signal: the OOM killer, if "
                "memory ran out; then use fewer --workers or a smaller --batch-tokens); the "
                "finished chunks are kept: run the same command with --resume"
            ) from None
        for piece, rendered in zip(pieces, results, strict=True):
            for i, item in zip(piece, rendered, strict=True):
                merged[i] = item
        if on_lines is not None:
            on_lines(len(lines))
        return merged

    def close(self) -> None:
        """Stop at once (Ctrl-C must not wait for a chunk): cancel, then end the workers."""
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # the executor has no terminate() before Python 3.14
            process.terminate()
        for process in processes:
            process.join(timeout=10)


def _gpu_count() -> int:
    import torch  # only a checkpoint's spec names cuda

    return torch.cuda.device_count()


def _pool(workers: int, context, initializer, initargs):
    """A process pool that notices a dead worker: ``multiprocessing.Pool`` would replace it
    and wait forever for its lost task (CPython bpo-22393); this one raises BrokenProcessPool."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, context, initializer=initializer, initargs=initargs)
