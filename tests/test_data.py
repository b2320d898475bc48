"""Reading, checking and batching parallel data."""

import gzip
import random

import numpy as np
import pytest
import torch

from seq2seq.corpus import DataError, read_lines, read_parallel, resolve
from seq2seq.data import collate, token_batches
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID


def test_reads_plain_gzip_and_windows_line_ends(tmp_path):
    (tmp_path / "a.de").write_bytes(b"eins\r\nzwei\r\n")
    with gzip.open(tmp_path / "b.de.gz", "wb") as handle:
        handle.write(b"drei\nvier")
    assert read_lines(tmp_path / "a.de") == ["eins", "zwei"]
    assert read_lines(resolve(str(tmp_path / "b"), "de")) == ["drei", "vier"]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"train\.de: no such file"):
        resolve(str(tmp_path / "train"), "de")


def test_invalid_utf8_names_file_and_line(tmp_path):
    (tmp_path / "x.de").write_bytes(b"gut\n\xff kaputt\n")
    with pytest.raises(DataError, match=r"x\.de:2: not valid UTF-8"):
        read_lines(tmp_path / "x.de")


def test_line_count_mismatch_names_both_files(tmp_path):
    (tmp_path / "x.de").write_text("a\nb\nc\n")
    (tmp_path / "x.en").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"x\.de has 3 lines but .*x\.en has 2"):
        read_parallel(tmp_path / "x.de", tmp_path / "x.en")


def test_token_batches_cover_everything_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(1, 40) for _ in range(500)]
    indices = [i for i in range(500) if i % 7]
    batches = token_batches(lengths, indices, 200, np.random.default_rng(3))
    assert sorted(int(i) for batch in batches for i in batch) == indices
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 200
    again = token_batches(lengths, indices, 200, np.random.default_rng(3))
    assert [b.tolist() for b in batches] == [b.tolist() for b in again]  # deterministic
    other = token_batches(lengths, indices, 200, np.random.default_rng(4))
    assert [b.tolist() for b in batches] != [b.tolist() for b in other]
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.1 * sum(lengths[i] for i in indices)  # bucketing keeps padding low


def test_collate_shifts_targets_and_pads():
    batch = collate([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], [0, 1])
    assert batch.src.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [3, 1]
    assert batch.tgt_in.tolist() == [[BOS_ID, 9, 10, PAD_ID], [BOS_ID, 11, 12, 13]]
    assert batch.tgt_out.tolist() == [[9, 10, EOS_ID, PAD_ID], [11, 12, 13, EOS_ID]]
    assert batch.n_tokens == 7


def test_worker_stream_gives_the_batches_of_the_plain_stream_across_epochs():
    # The GPU path pads in a DataLoader worker; on the CPU it must change nothing.
    from seq2seq.data import batch_stream, build_training_data, epoch_batches, worker_batch_stream

    from .conftest import toy_config

    data = build_training_data(toy_config().data)
    per_epoch = len(epoch_batches(data.train_src, data.train_tgt, data.train_indices, 300, 1, 0))
    start = (0, per_epoch - 2)  # two batches before the end of epoch 0
    plain = batch_stream(data, 300, 1, *start)
    worker = worker_batch_stream(data, 300, 1, *start, pin_memory=False)
    positions = []
    for _ in range(4):
        (position, a), (worker_position, b) = next(plain), next(worker)
        assert position == worker_position and a.indices == b.indices
        assert a.n_tokens == b.n_tokens and torch.equal(a.src_lengths, b.src_lengths)
        for name in ("src", "tgt_in", "tgt_out"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        positions.append(position)
    assert positions == [(0, per_epoch - 1), (1, 0), (1, 1), (1, 2)]
