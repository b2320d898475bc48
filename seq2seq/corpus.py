"""Corpora as flat token-id arrays, in memory or memory-mapped from a prepared folder.

``seq2seq prepare`` tokenizes and numericalizes a training corpus once,
streaming it in chunks (so memory does not grow with the corpus), and writes
per side ``ids.npy`` (all token ids, back to back) and ``offsets.npy`` (where
each sentence starts). Training then maps these files instead of reading text:
it starts in seconds and keeps memory flat however large the corpus.
"""

from __future__ import annotations

import gzip
import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from seq2seq.config import DataConfig
from seq2seq.errors import UserError
from seq2seq.tokenize import SentencePieceTokenizer, Tokenizer, build_tokenizers, from_data
from seq2seq.vocab import SPECIALS, UNK_ID, Vocab

log = logging.getLogger(__name__)

FORMAT = "seq2seq-prepared"


class DataError(UserError, ValueError):
    """A data file is missing, unreadable, malformed or does not match its pair."""


def resolve(prefix: str, suffix: str) -> Path:
    """``{prefix}.{suffix}`` or, if only that exists, ``{prefix}.{suffix}.gz``."""
    plain = Path(f"{prefix}.{suffix}")
    gz = Path(f"{prefix}.{suffix}.gz")
    if plain.exists():
        return plain
    if gz.exists():
        return gz
    raise DataError(
        f"{plain}: no such file (nor {gz.name}); check the path in the config"
        " or fetch the corpus first, e.g. `seq2seq download multi30k`"
    )


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file, plain or gzip; line ends (``\\n``, ``\\r\\n``) removed."""
    return list(iter_lines(path))


def iter_lines(path: str | Path) -> Iterator[str]:
    """Stream a UTF-8 text file (plain or gzip) line by line, with the file and line in errors."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            yield from decode_stream(handle, str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None


def decode_stream(handle: BinaryIO, name: str) -> Iterator[str]:
    """The lines of a binary stream (a file, stdin) as text; invalid UTF-8 names ``name`` and the line.

    Only ``\\n`` ends a line (and a ``\\r`` before it is dropped), so line N here is
    line N for every other line-oriented tool.
    """
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise DataError(
                f"{name}:{number}: not valid UTF-8 ({error.reason} at byte {error.start}); "
                "re-encode the file as UTF-8, e.g. with iconv"
            ) from None


def read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "parallel files must be line-aligned"
        )
    return src, tgt


class TokenStore(Sequence):
    """A read-only list of token-id lists: ``store[i]`` is sentence i."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray):
        self.ids, self.offsets = ids, offsets  # offsets[i]:offsets[i + 1] is sentence i

    @classmethod
    def from_lists(cls, sequences: list[list[int]]) -> TokenStore:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((i for s in sequences for i in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        return self.ids[self.offsets[i] : self.offsets[i + 1]].tolist()

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def save(self, prefix: Path) -> None:
        np.save(f"{prefix}.ids.npy", self.ids)
        np.save(f"{prefix}.offsets.npy", self.offsets)

    @classmethod
    def open(cls, prefix: Path) -> TokenStore:
        """Memory-map a saved store: pages are read from disk as batches need them."""
        return cls(
            np.load(f"{prefix}.ids.npy", mmap_mode="r"),
            np.load(f"{prefix}.offsets.npy", mmap_mode="r"),
        )


def _chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(islice(lines, size)):
        yield chunk


_worker_tokenizer: Tokenizer | None = None


def _init_worker(data: dict) -> None:
    global _worker_tokenizer
    _worker_tokenizer = from_data(data)


def _tokenize_chunk(lines: list[str]) -> list[list[str]]:
    return _worker_tokenizer.encode_many(lines)


class _Numericalizer:
    """Token ids of one side, counted as they come; final vocabulary ids assigned at the end."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.fast = isinstance(tokenizer, SentencePieceTokenizer)  # piece ids straight from C++
        self.provisional: dict[str, int] = {}
        self.counts = np.zeros(0, dtype=np.int64)
        self.chunks: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def add(self, sequences: list[list[int]]) -> None:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        ids = np.fromiter(
            (i for s in sequences for i in s), dtype=np.int32, count=int(lengths.sum())
        )
        counts = np.bincount(ids, minlength=len(self.counts))
        counts[: len(self.counts)] += self.counts
        self.counts, self.chunks, self.lengths = (
            counts,
            self.chunks + [ids],
            self.lengths + [lengths],
        )

    def add_tokens(self, sentences: list[list[str]]) -> None:
        ids = self.provisional
        self.add([[ids.setdefault(token, len(ids)) for token in tokens] for tokens in sentences])

    def tokens(self) -> list[str]:
        if self.fast:
            return [self.tokenizer.piece(i) for i in range(len(self.counts))]
        return sorted(self.provisional, key=self.provisional.__getitem__)

    def build_vocab(self, max_size: int, min_freq: int) -> Vocab:
        """As ``Vocab.build`` would from the same tokens: by count, ties alphabetical."""
        counts = dict(zip(self.tokens(), self.counts.tolist(), strict=True))
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(
            (t for t, c in counts.items() if c >= max(min_freq, 1)), key=lambda t: (-counts[t], t)
        )
        return Vocab(list(SPECIALS) + ranked[: max_size - len(SPECIALS)])

    def store(self, vocab: Vocab) -> TokenStore:
        lookup = np.full(len(self.counts), UNK_ID, dtype=np.int32)
        for position, token in enumerate(self.tokens()):
            lookup[position] = vocab.ids.get(token, UNK_ID)
        dtype = np.uint16 if len(vocab) <= np.iinfo(np.uint16).max else np.int32
        ids = (
            lookup[np.concatenate(self.chunks)].astype(dtype) if self.chunks else np.zeros(0, dtype)
        )
        offsets = np.zeros(sum(len(x) for x in self.lengths) + 1, dtype=np.int64)
        if self.lengths:
            np.cumsum(np.concatenate(self.lengths), out=offsets[1:])
        return TokenStore(ids, offsets)


def prepare(
    config: DataConfig, out: str | Path, workers: int = 2, chunk_lines: int = 100_000
) -> dict:
    """Tokenize and numericalize the training corpus of ``config`` into ``out``; returns a summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    suffixes = (config.src_suffix or config.src_lang, config.tgt_suffix or config.tgt_lang)
    paths = [resolve(config.train, suffix) for suffix in suffixes]
    # Tokenizer training (SentencePiece) reads a bounded sample: the first 2M lines per side.
    samples = [list(islice(iter_lines(path), 2_000_000)) for path in paths]
    tokenizers = build_tokenizers(config, samples[0], samples[1])
    del samples
    sides = [_Numericalizer(tokenizer) for tokenizer in tokenizers]
    pools = [
        None
        if side.fast
        else multiprocessing.get_context("fork").Pool(
            workers, _init_worker, (side.tokenizer.to_data(),)
        )
        for side in sides
    ]
    pairs = 0
    try:
        streams = [_chunks(iter_lines(path), chunk_lines) for path in paths]
        while True:
            chunks = [next(stream, None) for stream in streams]
            if chunks[0] is None and chunks[1] is None:
                break
            if chunks[0] is None or chunks[1] is None or len(chunks[0]) != len(chunks[1]):
                raise DataError(
                    f"{paths[0]} and {paths[1]} have different line counts: parallel files must be line-aligned"
                )
            for side, pool, lines in zip(sides, pools, chunks, strict=True):
                if side.fast:
                    side.add(side.tokenizer.encode_ids_many(lines))
                else:  # spaCy: one slice per worker process
                    parts = [lines[i : i + 5000] for i in range(0, len(lines), 5000)]
                    side.add_tokens([t for part in pool.map(_tokenize_chunk, parts) for t in part])
            pairs += len(chunks[0])
            log.info("prepare: %d pairs tokenized", pairs)
    finally:
        for pool in pools:
            if pool is not None:
                pool.close()
    if pairs == 0:
        raise DataError(f"{paths[0]}: the training set is empty")
    vocabs = [
        sides[0].build_vocab(config.src_vocab_size, config.min_freq),
        sides[1].build_vocab(config.tgt_vocab_size, config.min_freq),
    ]
    for name, side, vocab in zip(("src", "tgt"), sides, vocabs, strict=True):
        side.store(vocab).save(out / f"train.{name}")
    meta = {
        "format": FORMAT,
        "data_config": prepared_key(config),
        "src_tokenizer": tokenizers[0].to_data(),
        "tgt_tokenizer": tokenizers[1].to_data(),
        "src_vocab": vocabs[0].tokens,
        "tgt_vocab": vocabs[1].tokens,
        "pairs": pairs,
    }
    torch.save(meta, out / "meta.pt")
    return {
        "pairs": pairs,
        "src_vocab": len(vocabs[0]),
        "tgt_vocab": len(vocabs[1]),
        "folder": str(out),
    }


def prepared_key(config: DataConfig) -> dict:
    """The settings a prepared folder depends on (everything but the folder itself and validation)."""
    values = asdict(config)
    values.pop("prepared", None)
    values.pop("valid", None)
    values.pop("max_len", None)  # filtering happens when training reads the folder
    return values


def open_prepared(config: DataConfig) -> tuple[dict, TokenStore, TokenStore]:
    """The meta data and memory-mapped stores of ``config.prepared``, checked against ``config``."""
    folder = Path(config.prepared)
    try:
        meta = torch.load(folder / "meta.pt", weights_only=True)
    except FileNotFoundError:
        raise DataError(
            f"{folder}: no meta.pt; run `seq2seq prepare --config ... --output {folder}` first"
        ) from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{folder}/meta.pt: not a seq2seq prepared corpus")
    if meta["data_config"] != prepared_key(config):
        raise DataError(
            f"{folder}: prepared with other data settings than this config; prepare it again"
        )
    return meta, TokenStore.open(folder / "train.src"), TokenStore.open(folder / "train.tgt")
