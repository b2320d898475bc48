"""Parallel data: read line-aligned files, filter, batch by tokens, collate.

Shapes: B batch, S source length, T target length (with EOS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from seq2seq.config import DataConfig
from seq2seq.corpus import DataError, Mixture, TokenStore, read_parallel, resolve, token_batches
from seq2seq.prepare import open_prepared
from seq2seq.tokenization import (
    Preprocessing,
    SentencePieceTokenizer,
    WithPreprocessing,
    build_tokenizers,
    mismatched,
)
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab

log = logging.getLogger(__name__)


def filter_pairs(
    src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_len: int
) -> tuple[np.ndarray, int, int]:
    """Indices of the pairs to train on, and how many were empty or too long."""
    empty = (src_lengths == 0) | (tgt_lengths == 0)
    long = ~empty & ((src_lengths > max_len) | (tgt_lengths > max_len))
    return np.flatnonzero(~empty & ~long), int(empty.sum()), int(long.sum())


@dataclass
class Batch:
    src: Tensor  # (B, S) token ids, PAD_ID after each sentence's end
    src_lengths: Tensor  # (B,) on the CPU, as pack_padded_sequence wants
    tgt_in: Tensor  # (B, T) BOS y1 .. yn, padded
    tgt_out: Tensor  # (B, T) y1 .. yn EOS, padded
    indices: list[int]  # positions of these sentences in the dataset
    n_tokens: int  # real target tokens (EOS included)

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.src.to(device, non_blocking=True),
            self.src_lengths,
            self.tgt_in.to(device, non_blocking=True),
            self.tgt_out.to(device, non_blocking=True),
            self.indices,
            self.n_tokens,
        )

    def pin_memory(self) -> Batch:
        """Page-locked copies (what a DataLoader's ``pin_memory`` calls), so ``to`` can overlap."""
        return Batch(
            self.src.pin_memory(),
            self.src_lengths,
            self.tgt_in.pin_memory(),
            self.tgt_out.pin_memory(),
            self.indices,
            self.n_tokens,
        )


def pad(sequences: list[list[int]]) -> Tensor:
    out = torch.full((len(sequences), max(len(s) for s in sequences)), PAD_ID, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return out


def collate(src: Sequence[list[int]], tgt: Sequence[list[int]] | None, indices) -> Batch:
    indices = [int(i) for i in indices]
    src_seqs = [src[i] for i in indices]
    src_lengths = torch.tensor([len(s) for s in src_seqs], dtype=torch.long)
    if tgt is None:
        empty = torch.zeros((len(indices), 0), dtype=torch.long)
        return Batch(pad(src_seqs), src_lengths, empty, empty, indices, 0)
    tgt_in = pad([[BOS_ID] + tgt[i] for i in indices])
    tgt_out = pad([tgt[i] + [EOS_ID] for i in indices])
    n_tokens = sum(len(tgt[i]) + 1 for i in indices)
    return Batch(pad(src_seqs), src_lengths, tgt_in, tgt_out, indices, n_tokens)


def epoch_batches(
    src: TokenStore,
    tgt: TokenStore,
    indices: np.ndarray,
    batch_tokens: int,
    seed: int,
    epoch: int,
    mixture: Mixture | None = None,
) -> list[np.ndarray]:
    """The training batches of one epoch: a pure function of (seed, epoch), so resuming can
    skip to any batch. With several corpora, ``mixture`` draws the epoch's pairs first."""
    lengths = np.maximum(src.lengths(), tgt.lengths()) + 1
    if mixture is not None:
        indices = mixture.draw(indices, np.random.default_rng([seed, epoch, 1]))
    return token_batches(lengths, indices, batch_tokens, np.random.default_rng([seed, epoch]))


@dataclass
class TrainingData(WithPreprocessing):
    """Everything training reads: tokenizers, vocabularies, and the corpora as ids."""

    preprocessing: Preprocessing
    train_src: TokenStore
    train_tgt: TokenStore
    train_indices: np.ndarray  # pairs that survived filtering
    valid_src: list[list[int]]
    valid_tgt: list[list[int]]
    valid_src_lines: list[str]  # raw text, for samples
    valid_ref_lines: list[str]  # raw references, for BLEU
    resegment: Resegmenter | None = None  # subword regularization: each epoch's own segmentation
    mixture: Mixture | None = None  # several corpora: each drawn at its weight per epoch


class Resegmenter:
    """Subword regularization: the training text segmented afresh for every epoch.

    ``epoch(seed, epoch)`` is a pure function of its arguments (as the batch
    order is), so resuming mid-epoch rebuilds the same batches. A draw that
    needs a piece outside the vocabulary (about 0.3% of Multi30k's lines at
    alpha 0.5) keeps the line's best segmentation rather than train on <unk>;
    pairs whose draw exceeds ``max_len`` sit out that epoch. Segmenting costs
    about 3 s per epoch for Multi30k's 2 x 29,000 lines, on one thread.
    """

    def __init__(self, lines, preprocessing: Preprocessing, config: DataConfig, best, indices):
        tokenizers = (preprocessing.src_tokenizer, preprocessing.tgt_tokenizer)
        if not all(isinstance(t, SentencePieceTokenizer) for t in tokenizers):
            raise DataError(
                "data.sentencepiece.sampling_alpha: subword sampling needs SentencePiece tokenizers, "
                f"but {config.vocab_from or 'the stored run'} has others; set it to 0"
            )
        self.sides = list(
            zip(
                tokenizers,
                (preprocessing.src_vocab, preprocessing.tgt_vocab),
                lines,
                best,
                strict=True,
            )
        )
        self.sampling, self.indices, self.max_len = config.sentencepiece, indices, config.max_len

    def epoch(self, seed: int, epoch: int) -> tuple[TokenStore, TokenStore, np.ndarray]:
        stores = []
        for side, (tokenizer, vocab, lines, best) in enumerate(self.sides):
            draw = int(np.random.default_rng([seed, epoch, side]).integers(2**31))
            pieces = tokenizer.sample_many(
                lines, self.sampling.sampling_alpha, self.sampling.sampling_nbest, draw
            )
            ids = [vocab.encode(p) for p in pieces]
            ids = [s if UNK_ID not in s else best[i] for i, s in enumerate(ids)]
            stores.append(TokenStore.from_lists(ids))
        src, tgt = stores
        fits = (src.lengths()[self.indices] <= self.max_len) & (
            tgt.lengths()[self.indices] <= self.max_len
        )
        log.info(
            "epoch %d: subword sampling gave %d target tokens; %d pairs over data.max_len sit out",
            epoch + 1, int(tgt.lengths()[self.indices].sum()), int((~fits).sum()),
        )  # fmt: skip
        return src, tgt, self.indices[fits]


def _suffixes(config: DataConfig) -> tuple[str, str]:
    return config.src_suffix or config.src_lang, config.tgt_suffix or config.tgt_lang


def corpus_files(config: DataConfig) -> dict[str, Path]:
    """The files training reads, by role, for data lineage (a prepared folder counts as one)."""
    src_suffix, tgt_suffix = _suffixes(config)
    files = {}
    if config.prepared:
        files["prepared"] = Path(config.prepared)
    else:
        corpora = config.corpora()
        for i, corpus in enumerate(corpora):
            name = "train" if len(corpora) == 1 else f"train[{i}]"
            files[f"{name}.src"] = resolve(corpus.prefix, src_suffix)
            files[f"{name}.tgt"] = resolve(corpus.prefix, tgt_suffix)
    files["valid.src"] = resolve(config.valid, src_suffix)
    files["valid.tgt"] = resolve(config.valid, tgt_suffix)
    return files


def build_training_data(
    config: DataConfig,
    stored: Preprocessing | None = None,
) -> TrainingData:
    """Read, tokenize and numericalize the corpora (or map a prepared folder).

    ``stored`` (tokenizers and vocabularies from a checkpoint) is reused when
    resuming, so ids mean the same as before; otherwise they are built here
    from the training data.
    """
    src_suffix, tgt_suffix = _suffixes(config)
    valid_src_lines, valid_ref_lines = read_parallel(
        resolve(config.valid, src_suffix), resolve(config.valid, tgt_suffix)
    )
    reader = _open_prepared if config.prepared else _read_text
    stored, train_src, train_tgt, source, lines, origin = reader(config, stored)
    src_vocab, tgt_vocab = stored.src_vocab, stored.tgt_vocab
    train_indices, empty, long = filter_pairs(
        train_src.lengths(), train_tgt.lengths(), config.max_len
    )
    log.info(
        "training pairs: %d read from %s, %d kept, %d empty and %d longer than %d tokens dropped",
        len(train_src),
        source,
        len(train_indices),
        empty,
        long,
        config.max_len,
    )
    log.info("vocabulary: %d source and %d target entries", len(src_vocab), len(tgt_vocab))
    if not len(train_indices):
        raise DataError(
            f"{source}: no training pair left after filtering "
            f"({empty} empty, {long} longer than data.max_len={config.max_len})"
        )
    resegment = None
    if config.sentencepiece.sampling_alpha:  # the config check ensures raw text (lines)
        resegment = Resegmenter(lines, stored, config, (train_src, train_tgt), train_indices)
    mixture = None if origin is None else _mixture(config, origin, train_indices)
    valid_src = [src_vocab.encode(t) for t in stored.src_tokenizer.encode_many(valid_src_lines)]
    valid_tgt = [tgt_vocab.encode(t) for t in stored.tgt_tokenizer.encode_many(valid_ref_lines)]
    return TrainingData(
        stored,
        train_src,
        train_tgt,
        train_indices,
        valid_src,
        valid_tgt,
        valid_src_lines,
        valid_ref_lines,
        resegment,
        mixture,
    )


def _mixture(config: DataConfig, origin: np.ndarray, kept: np.ndarray) -> Mixture:
    for i, corpus in enumerate(config.corpora()):
        log.info(
            "corpus %d (%s): %d pairs kept, drawn x%g per epoch%s",
            i, corpus.prefix, int((origin[kept] == i).sum()), corpus.weight,
            f", tagged {corpus.tag}" if corpus.tag else "",
        )  # fmt: skip
    return Mixture(origin, tuple(c.weight for c in config.corpora()))


def _open_prepared(config: DataConfig, stored: Preprocessing | None):
    """A prepared folder's id stores, and its tokenizers and vocabularies unless ``stored``
    (no raw text: that stays on disk)."""
    meta, train_src, train_tgt = open_prepared(config)
    if stored is None:
        stored = Preprocessing.from_data(meta)
    elif mismatched(stored.to_data(), meta, ("src_vocab", "tgt_vocab")):
        raise DataError(f"{config.prepared}: its vocabularies differ from the checkpoint's")
    return stored, train_src, train_tgt, config.prepared, None, None


def _read_text(config: DataConfig, stored: Preprocessing | None):
    """The training text tokenized and numericalized, with tokenizers and vocabularies built
    from it unless ``stored``; the raw lines come along for subword sampling. Several
    corpora are read into one store, each source sentence after its corpus's tag, and the
    corpus of each pair comes along (None for one corpus)."""
    src_suffix, tgt_suffix = _suffixes(config)
    corpora = config.corpora()
    src_lines, tgt_lines, origin, names = [], [], [], []
    for i, corpus in enumerate(corpora):
        path = resolve(corpus.prefix, src_suffix)
        src, tgt = read_parallel(path, resolve(corpus.prefix, tgt_suffix))
        if not src:
            raise DataError(f"{path}: the training set is empty")
        src_lines += src
        tgt_lines += tgt
        origin += [i] * len(src)
        names.append(str(path))
    if stored is None:
        src_tokenizer, tgt_tokenizer = build_tokenizers(config, src_lines, tgt_lines)
    else:
        src_tokenizer, tgt_tokenizer = stored.src_tokenizer, stored.tgt_tokenizer
    src_tokens = src_tokenizer.encode_many(src_lines)
    tgt_tokens = tgt_tokenizer.encode_many(tgt_lines)
    _tag(src_tokens, origin, corpora)
    if stored is None:
        stored = Preprocessing(
            src_tokenizer,
            tgt_tokenizer,
            Vocab.build(src_tokens, config.src_vocab_size, config.min_freq, config.tags()),
            Vocab.build(tgt_tokens, config.tgt_vocab_size, config.min_freq),
        )
    for tag in config.tags():
        if tag not in stored.src_vocab.ids:
            raise DataError(
                f"data.train: tag {tag} is not in the source vocabulary of "
                f"{config.vocab_from or 'the run being resumed'}; its vocabularies must have been "
                "built with this tag (or drop data.vocab_from)"
            )
    train_src = TokenStore.from_lists([stored.src_vocab.encode(t) for t in src_tokens])
    train_tgt = TokenStore.from_lists([stored.tgt_vocab.encode(t) for t in tgt_tokens])
    origins = np.array(origin, dtype=np.int32) if len(corpora) > 1 else None
    return stored, train_src, train_tgt, " + ".join(names), (src_lines, tgt_lines), origins


def _tag(src_tokens: list[list[str]], origin: list[int], corpora) -> None:
    """Put each tagged corpus's tag before its source sentences (in place)."""
    tags = [corpus.tag for corpus in corpora]
    if any(tags):
        for tokens, corpus in zip(src_tokens, origin, strict=True):
            if tags[corpus] is not None:
                tokens.insert(0, tags[corpus])


def batch_stream(
    data: TrainingData, batch_tokens: int, seed: int, epoch: int, start: int
) -> Iterator[tuple[tuple[int, int], Batch]]:
    """Endless training batches from (epoch, batch ``start``) on, each with the position after it."""
    return _batches(*_corpus(data), batch_tokens, seed, epoch, start)


def _corpus(data: TrainingData) -> tuple:
    """What the batches are drawn from (it travels to a DataLoader worker)."""
    return data.train_src, data.train_tgt, data.train_indices, data.resegment, data.mixture


def _batches(src, tgt, indices, resegment, mixture, batch_tokens, seed, epoch, start):
    while True:
        if resegment is not None:
            src, tgt, indices = resegment.epoch(seed, epoch)
        batches = epoch_batches(src, tgt, indices, batch_tokens, seed, epoch, mixture)
        for index in range(start, len(batches)):
            after = (epoch, index + 1) if index + 1 < len(batches) else (epoch + 1, 0)
            yield after, collate(src, tgt, batches[index])
        epoch, start = epoch + 1, 0


class _BatchStream(IterableDataset):
    """``batch_stream`` for a DataLoader worker; the id arrays (and any Resegmenter) travel to it."""

    def __init__(self, data: TrainingData, batch_tokens: int, seed: int, epoch: int, start: int):
        self.corpus = _corpus(data)
        self.start = (batch_tokens, seed, epoch, start)

    def __iter__(self):
        return _batches(*self.corpus, *self.start)


def worker_batch_stream(
    data: TrainingData, batch_tokens: int, seed: int, epoch: int, start: int, pin_memory: bool
) -> Iterator[tuple[tuple[int, int], Batch]]:
    """The batches of ``batch_stream``, in the same order, padded ahead by a worker process.

    For GPUs: collating leaves the training loop, and with ``pin_memory`` each
    batch arrives in page-locked memory so ``Batch.to`` copies asynchronously.
    One worker keeps the order, so exact resume is unchanged.
    """
    stream = _BatchStream(data, batch_tokens, seed, epoch, start)
    loader = DataLoader(
        stream,
        batch_size=None,
        collate_fn=_unchanged,  # the default would turn the position tuple into a list
        num_workers=1,
        pin_memory=pin_memory,
        prefetch_factor=8,
    )
    return iter(loader)


def _unchanged(item):
    return item
