"""Reading corpora: UTF-8 text files (plain or gzip) and token-id stores.

One line reader (``iter_lines``/``decode_stream``) serves training, translation
and evaluation, so every invalid byte is reported as file:line. A
``TokenStore`` holds a corpus as flat token-id arrays, in memory or
memory-mapped from a folder written by ``seq2seq prepare`` (prepare.py).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from seq2seq.errors import UserError


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


def token_batches(
    lengths, indices, batch_tokens: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Group ``indices`` into batches of at most ``batch_tokens`` padded tokens.

    Sentences are sorted by length so a batch holds similar lengths and
    padding stays low. With ``rng`` the ties are broken at random and the
    batch order is shuffled (training); without, the order is by length.
    Works on arrays, so millions of sentences cost seconds, not minutes.
    """
    lengths, indices = np.asarray(lengths), np.asarray(indices, dtype=np.int64)
    if rng is None:
        order = indices[np.argsort(lengths[indices], kind="stable")]
    else:
        order = indices[np.lexsort((rng.random(len(indices)), lengths[indices]))]
    boundaries, count, longest = [], 0, 0
    for position, length in enumerate(lengths[order].tolist()):
        longest_if_added = max(longest, length)
        if count and longest_if_added * (count + 1) > batch_tokens:
            boundaries.append(position)
            count, longest_if_added = 0, length
        count += 1
        longest = longest_if_added
    batches = np.split(order, boundaries) if len(order) else []
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def decode_in_batches(sources: list[list[int]], batch_tokens: int, decode, on_batch=None) -> list:
    """``decode(indices)`` (a length-sorted batch of ``sources`` -> one result per sentence)
    over all of them; the results in input order, None for an empty source (never decoded).
    ``on_batch`` hears how many lines each batch finished (the empty ones at the end). Both
    backends batch through here: search.py with PyTorch batches, runtime/ with NumPy arrays."""
    results: list = [None] * len(sources)
    lengths = [len(s) for s in sources]
    nonempty = [i for i, length in enumerate(lengths) if length > 0]
    for indices in token_batches(lengths, nonempty, batch_tokens, rng=None):
        for i, result in zip(indices, decode(indices), strict=True):
            results[i] = result
        if on_batch is not None:
            on_batch(len(indices))
    if on_batch is not None and len(nonempty) < len(sources):
        on_batch(len(sources) - len(nonempty))
    return results


@dataclass
class Mixture:
    """Several training corpora in one store: which corpus each pair came from, and how
    often each corpus is drawn per epoch (its ``weight`` times its pairs: 0.5 a random half,
    2.5 every pair twice and a random half once more). OpenNMT-py's ``weight`` and fairseq's
    ``--upsample-primary`` are the same idea; this one is exact per epoch, not on average."""

    origin: np.ndarray  # (pairs,) the corpus of each pair
    weights: tuple[float, ...]  # per corpus

    def draw(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """This epoch's pairs (with repeats) from the kept ``indices``."""
        parts = []
        for corpus, weight in enumerate(self.weights):
            pool = indices[self.origin[indices] == corpus]
            whole, fraction = divmod(weight, 1.0)
            parts += [pool] * int(whole)
            extra = int(round(fraction * len(pool)))
            if extra:
                parts.append(np.sort(rng.choice(pool, extra, replace=False)))
        return np.concatenate(parts) if parts else indices[:0]
