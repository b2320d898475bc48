"""Parallel data: read line-aligned files, filter, batch by tokens, collate.

Shapes: B batch, S source length, T target length (with EOS).
"""

from __future__ import annotations

import gzip
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.config import ConfigError, DataConfig
from seq2seq.tokenize import SpacyTokenizer, Tokenizer, train_sentencepiece
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID, Vocab

log = logging.getLogger(__name__)


class DataError(ValueError):
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
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    return decode_lines(raw, str(path))


def decode_lines(raw: bytes, name: str) -> list[str]:
    """Split UTF-8 bytes into lines; invalid UTF-8 is an error naming ``name`` and the line."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    decoded = []
    for number, line in enumerate(lines, start=1):
        try:
            decoded.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            raise DataError(
                f"{name}:{number}: not valid UTF-8 ({error.reason} at byte {error.start}); "
                "re-encode the file as UTF-8, e.g. with iconv"
            ) from None
    return decoded


def read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "parallel files must be line-aligned"
        )
    return src, tgt


def filter_pairs(
    src: list[list[int]], tgt: list[list[int]], max_len: int
) -> tuple[list[int], int, int]:
    """Indices of the pairs to train on, and how many were empty or too long."""
    kept, empty, long = [], 0, 0
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        if not s or not t:
            empty += 1
        elif len(s) > max_len or len(t) > max_len:
            long += 1
        else:
            kept.append(i)
    return kept, empty, long


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


def pad(sequences: list[list[int]]) -> Tensor:
    out = torch.full((len(sequences), max(len(s) for s in sequences)), PAD_ID, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return out


def collate(src: list[list[int]], tgt: list[list[int]] | None, indices: list[int]) -> Batch:
    src_seqs = [src[i] for i in indices]
    src_lengths = torch.tensor([len(s) for s in src_seqs], dtype=torch.long)
    if tgt is None:
        empty = torch.zeros((len(indices), 0), dtype=torch.long)
        return Batch(pad(src_seqs), src_lengths, empty, empty, indices, 0)
    tgt_in = pad([[BOS_ID] + tgt[i] for i in indices])
    tgt_out = pad([tgt[i] + [EOS_ID] for i in indices])
    n_tokens = sum(len(tgt[i]) + 1 for i in indices)
    return Batch(pad(src_seqs), src_lengths, tgt_in, tgt_out, indices, n_tokens)


def token_batches(
    lengths: list[int], indices: list[int], batch_tokens: int, rng: random.Random | None
) -> list[list[int]]:
    """Group ``indices`` into batches of at most ``batch_tokens`` padded tokens.

    Sentences are sorted by length so a batch holds similar lengths and
    padding stays low. With ``rng`` the ties are broken at random and the
    batch order is shuffled (training); without, the order is by length.
    """
    if rng is None:
        order = sorted(indices, key=lambda i: lengths[i])
    else:
        keys = {i: rng.random() for i in indices}
        order = sorted(indices, key=lambda i: (lengths[i], keys[i]))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and longest_if_added * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def epoch_batches(
    src: list[list[int]],
    tgt: list[list[int]],
    indices: list[int],
    batch_tokens: int,
    seed: int,
    epoch: int,
) -> list[list[int]]:
    """The training batches of one epoch: a pure function of (seed, epoch), so resuming can skip to any batch."""
    lengths = [max(len(s), len(t)) + 1 for s, t in zip(src, tgt, strict=True)]
    return token_batches(lengths, indices, batch_tokens, random.Random(seed * 100_003 + epoch))


@dataclass
class TrainingData:
    """Everything training reads: tokenizers, vocabularies, and the corpora as ids."""

    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocab
    tgt_vocab: Vocab
    train_src: list[list[int]]
    train_tgt: list[list[int]]
    train_indices: list[int]  # pairs that survived filtering
    valid_src: list[list[int]]
    valid_tgt: list[list[int]]
    valid_src_lines: list[str]  # raw text, for samples
    valid_ref_lines: list[str]  # raw references, for BLEU


def build_tokenizers(config: DataConfig, src_lines: list[str], tgt_lines: list[str]):
    if config.tokenizer == "spacy":
        tokenizers = []
        for key, lang in (("src_lang", config.src_lang), ("tgt_lang", config.tgt_lang)):
            try:
                tokenizers.append(SpacyTokenizer(lang, config.lowercase))
            except ValueError as error:
                raise ConfigError(f"data.{key}: {error}") from None
        return tuple(tokenizers)
    sp = config.sentencepiece
    options = dict(
        vocab_size=sp.vocab_size,
        model_type=sp.model_type,
        character_coverage=sp.character_coverage,
        lowercase=config.lowercase,
    )
    if sp.joint:
        joint = train_sentencepiece(src_lines + tgt_lines, **options)
        return joint, joint
    return train_sentencepiece(src_lines, **options), train_sentencepiece(tgt_lines, **options)


def build_training_data(
    config: DataConfig,
    stored: tuple[Tokenizer, Tokenizer, Vocab, Vocab] | None = None,
) -> TrainingData:
    """Read, tokenize and numericalize the corpora.

    ``stored`` (tokenizers and vocabularies from a checkpoint) is reused when
    resuming, so ids mean the same as before; otherwise they are built here
    from the training data.
    """
    src_suffix, tgt_suffix = (
        config.src_suffix or config.src_lang,
        config.tgt_suffix or config.tgt_lang,
    )
    train_src_path, train_tgt_path = (
        resolve(config.train, src_suffix),
        resolve(config.train, tgt_suffix),
    )
    valid_src_path, valid_tgt_path = (
        resolve(config.valid, src_suffix),
        resolve(config.valid, tgt_suffix),
    )
    src_lines, tgt_lines = read_parallel(train_src_path, train_tgt_path)
    valid_src_lines, valid_ref_lines = read_parallel(valid_src_path, valid_tgt_path)
    if not src_lines:
        raise DataError(f"{train_src_path}: the training set is empty")
    if stored is None:
        src_tokenizer, tgt_tokenizer = build_tokenizers(config, src_lines, tgt_lines)
    else:
        src_tokenizer, tgt_tokenizer, src_vocab, tgt_vocab = stored
    src_tokens = src_tokenizer.encode_many(src_lines)
    tgt_tokens = tgt_tokenizer.encode_many(tgt_lines)
    if stored is None:
        src_vocab = Vocab.build(src_tokens, config.src_vocab_size, config.min_freq)
        tgt_vocab = Vocab.build(tgt_tokens, config.tgt_vocab_size, config.min_freq)
    train_src = [src_vocab.encode(tokens) for tokens in src_tokens]
    train_tgt = [tgt_vocab.encode(tokens) for tokens in tgt_tokens]
    train_indices, empty, long = filter_pairs(train_src, train_tgt, config.max_len)
    log.info(
        "training pairs: %d read from %s, %d kept, %d empty and %d longer than %d tokens dropped",
        len(src_lines),
        train_src_path,
        len(train_indices),
        empty,
        long,
        config.max_len,
    )
    log.info("vocabulary: %d source and %d target entries", len(src_vocab), len(tgt_vocab))
    if not train_indices:
        raise DataError(
            f"{train_src_path}: no training pair left after filtering "
            f"({empty} empty, {long} longer than data.max_len={config.max_len})"
        )
    valid_src = [src_vocab.encode(t) for t in src_tokenizer.encode_many(valid_src_lines)]
    valid_tgt = [tgt_vocab.encode(t) for t in tgt_tokenizer.encode_many(valid_ref_lines)]
    return TrainingData(
        src_tokenizer,
        tgt_tokenizer,
        src_vocab,
        tgt_vocab,
        train_src,
        train_tgt,
        train_indices,
        valid_src,
        valid_tgt,
        valid_src_lines,
        valid_ref_lines,
    )
