"""Vocabulary shortlists (as in Marian): the output layer only over tokens a batch can produce.

A lexical table, built once from the training data, lists for every source
token the ``per_source`` target tokens that co-occur with it most strongly
(Dice coefficient of sentence co-occurrence, 2 c(s, t) / (c(s) + c(t)), so
that frequent words do not crowd out the translations of rare ones). For a
batch, the shortlist is the union of its source tokens' lists, the
``frequent`` most frequent target tokens and the special symbols.

``seq2seq shortlist --model CKPT --output OUT.pt`` stores the table in a copy
of the checkpoint; ``translate --shortlist`` uses it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seq2seq import checkpoint
from seq2seq.corpus import TokenStore
from seq2seq.data import build_training_data
from seq2seq.errors import UserError
from seq2seq.vocab import SPECIALS


class ShortlistError(UserError, ValueError):
    """A checkpoint without a shortlist, or impossible shortlist sizes."""


def build_table(
    src: TokenStore,
    tgt: TokenStore,
    indices: np.ndarray,
    src_vocab_size: int,
    tgt_vocab_size: int,
    per_source: int = 50,
) -> dict:
    """The lexical table of the pairs ``indices``: (source vocab, per_source) target ids, -1 padded.

    Co-occurring (source, target) pairs are counted sparsely, so memory grows with
    the corpus's distinct pairs, not with the product of the vocabulary sizes.
    """
    if per_source < 1:
        raise ShortlistError(f"per_source must be >= 1, got {per_source}")
    keys, src_seen, tgt_seen = [], [], []  # per sentence: its pairs, its distinct tokens
    for i in indices.tolist():
        s = np.unique(src.ids[src.offsets[i] : src.offsets[i + 1]]).astype(np.int64)
        t = np.unique(tgt.ids[tgt.offsets[i] : tgt.offsets[i + 1]]).astype(np.int64)
        keys.append((s[:, None] * tgt_vocab_size + t[None, :]).ravel())
        src_seen.append(s)
        tgt_seen.append(t)
    pairs, together = np.unique(
        np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True
    )
    s, t = pairs // tgt_vocab_size, pairs % tgt_vocab_size
    src_df = _sentence_counts(src_seen, src_vocab_size)
    tgt_df = _sentence_counts(tgt_seen, tgt_vocab_size)
    dice = 2 * together / np.maximum(src_df[s] + tgt_df[t], 1)
    keep = t >= len(SPECIALS)  # specials are always in the shortlist anyway
    s, t, dice = s[keep], t[keep], dice[keep]
    order = np.lexsort((-dice, s))  # by source token, best partner first
    s, t = s[order], t[order]
    rank = np.arange(len(s)) - np.searchsorted(s, s, side="left")  # position within its source
    top = rank < per_source
    table = np.full((src_vocab_size, per_source), -1, dtype=np.int32)
    table[s[top], rank[top]] = t[top]
    return {
        "table": torch.from_numpy(table),
        "target_frequency": torch.from_numpy(tgt_df),
        "per_source": per_source,
    }


def _sentence_counts(seen: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """In how many sentences each token occurs, from each sentence's distinct tokens."""
    flat = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=vocab_size).astype(np.int64)


class Shortlist:
    """``shortlist(src)`` (B, S) -> the sorted target ids (V',) the batch may produce."""

    def __init__(self, data: dict, frequent: int = 100):
        self.table = data["table"].long()  # (Vs, K)
        order = data["target_frequency"].argsort(descending=True)
        self.always = torch.cat([torch.arange(len(SPECIALS)), order[:frequent]]).unique()

    def __call__(self, src: Tensor) -> Tensor:
        candidates = self.table[src.unique().cpu()].flatten()  # (U*K,)
        candidates = candidates[candidates >= 0]
        return torch.cat([self.always, candidates]).unique()  # sorted; specials first


def add_shortlist(
    model: str | Path, output: str | Path, train: str | None = None, per_source: int = 50
) -> str:
    """Write ``output``: the checkpoint ``model`` with the lexical table of its training data."""
    if Path(output).resolve() == Path(model).resolve():
        raise ShortlistError("--output must differ from --model (the original is kept)")
    payload = checkpoint.load(model)
    loaded = checkpoint.load_model(model, payload)
    data_config = loaded.config.data
    if train:
        data_config = dataclasses.replace(data_config, train=train, prepared=None)
    data = build_training_data(data_config, loaded.preprocessing)
    table = build_table(
        data.train_src,
        data.train_tgt,
        data.train_indices,
        len(loaded.src_vocab),
        len(loaded.tgt_vocab),
        per_source,
    )
    checkpoint.save(output, {**payload, "shortlist": table})
    filled = int((table["table"] >= 0).sum())
    return (
        f"lexical table of {len(data.train_indices)} pairs, {per_source} candidates for each of "
        f"{len(loaded.src_vocab)} source tokens ({filled} filled)"
    )
