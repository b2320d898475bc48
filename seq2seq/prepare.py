"""``seq2seq prepare``: tokenize and numericalize a training corpus once, for corpora of any size.

The corpus is streamed in chunks (memory does not grow with it); spaCy
tokenization is spread over a process pool, SentencePiece ids come straight
from C++. Per side it writes ``ids.npy`` (all token ids, back to back) and
``offsets.npy`` (where each sentence starts), plus ``meta.pt`` with the
tokenizers and vocabularies. Training then maps these files instead of reading
text: it starts in seconds and keeps memory flat however large the corpus.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from seq2seq.config import DataConfig
from seq2seq.corpus import DataError, TokenStore, iter_lines, resolve
from seq2seq.tokenization import (
    Preprocessing,
    SentencePieceTokenizer,
    Tokenizer,
    build_tokenizers,
    from_data,
)
from seq2seq.vocab import UNK_ID, Vocab

log = logging.getLogger(__name__)

FORMAT = "seq2seq-prepared"


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
        return Vocab.from_counts(
            dict(zip(self.tokens(), self.counts.tolist(), strict=True)), max_size, min_freq
        )

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
    if not isinstance(config.train, str):
        raise DataError(
            "data.train: seq2seq prepare takes one corpus (a path prefix), not a list; "
            "train from the list of text corpora instead"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    suffixes = (config.src_suffix or config.src_lang, config.tgt_suffix or config.tgt_lang)
    paths = [resolve(config.train, suffix) for suffix in suffixes]
    # Tokenizer training (SentencePiece) reads a bounded sample: the first 2M lines per side.
    samples = [list(islice(iter_lines(path), 2_000_000)) for path in paths]
    tokenizers = build_tokenizers(config, samples[0], samples[1])
    del samples
    sides = [_Numericalizer(tokenizer) for tokenizer in tokenizers]
    pairs = _numericalize(paths, sides, workers, chunk_lines)
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
        **Preprocessing(*tokenizers, *vocabs).to_data(),
        "pairs": pairs,
    }
    torch.save(meta, out / "meta.pt")
    return {
        "pairs": pairs,
        "src_vocab": len(vocabs[0]),
        "tgt_vocab": len(vocabs[1]),
        "folder": str(out),
    }


def _numericalize(
    paths: list[Path], sides: list[_Numericalizer], workers: int, chunk_lines: int
) -> int:
    """Stream both files chunk by chunk into ``sides``; returns the pairs read."""
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
                return pairs
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
