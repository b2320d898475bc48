"""Reading, checking and batching parallel data."""

import dataclasses
import gzip
import random

import numpy as np
import pytest
import torch

from seq2seq.corpus import DataError, read_lines, read_parallel, resolve
from seq2seq.data import build_training_data, collate, token_batches
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID

from .conftest import toy_config


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


def sampled_words_data(folder, alpha: float = 0.1):
    """Made-up words of made-up syllables: text with many ways to segment it."""
    from seq2seq.config import SentencePieceConfig

    rng = random.Random(5)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "be"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(300)]
    for name, count in (("train", 400), ("valid", 20)):
        sentences = [rng.choices(words, k=rng.randint(2, 8)) for _ in range(count)]
        src = "\n".join(" ".join(s) for s in sentences) + "\n"
        write_pair(folder, name, src, "\n".join(" ".join(s[::-1]) for s in sentences) + "\n")
    config = dataclasses.replace(
        toy_config().data, train=str(folder / "train"), valid=str(folder / "valid"),
        tokenizer="sentencepiece", sentencepiece=SentencePieceConfig(vocab_size=50, sampling_alpha=alpha),
    )  # fmt: skip
    return config, build_training_data(config)


def test_subword_sampling_draws_a_reversible_segmentation_per_epoch_from_the_seed(tmp_path):
    from seq2seq.vocab import UNK_ID

    config, data = sampled_words_data(tmp_path)
    first, again, later = (data.resegment.epoch(1, e) for e in (0, 0, 1))
    assert np.array_equal(first[0].ids, again[0].ids) and np.array_equal(first[1].ids, again[1].ids)
    assert not np.array_equal(first[0].ids, later[0].ids)  # each epoch draws anew
    assert not np.array_equal(first[0].ids, data.train_src.ids)  # not the best segmentation
    assert UNK_ID not in first[0].ids and UNK_ID not in first[1].ids  # only vocabulary pieces
    src_lines, tgt_lines = read_parallel(resolve(config.train, "src"), resolve(config.train, "tgt"))
    for i in range(0, len(src_lines), 97):  # the text is unchanged, only its segmentation
        for store, vocab, tokenizer, lines in (
            (first[0], data.src_vocab, data.src_tokenizer, src_lines),
            (first[1], data.tgt_vocab, data.tgt_tokenizer, tgt_lines),
        ):
            assert tokenizer.decode([vocab.tokens[t] for t in store[i]]) == lines[i]
    kept = first[2]
    assert (first[0].lengths()[kept] <= config.max_len).all()


def test_subword_sampling_resumes_mid_epoch_with_the_batches_of_an_unbroken_run(tmp_path):
    from seq2seq.data import batch_stream, epoch_batches

    _, data = sampled_words_data(tmp_path)
    src, tgt, indices = data.resegment.epoch(1, 1)
    per_epoch = len(epoch_batches(*data.resegment.epoch(1, 0), 300, 1, 0))  # sampled epoch 0
    unbroken = batch_stream(data, 300, 1, 0, 0)
    for _ in range(per_epoch + 3):  # into epoch 1
        position, expected = next(unbroken)
    assert position[0] == 1
    resumed = batch_stream(data, 300, 1, position[0], position[1] - 1)
    _, batch = next(resumed)
    assert batch.indices == expected.indices and torch.equal(batch.src, expected.src)
    assert all(
        src[i] == batch.src[row, : len(src[i])].tolist() for row, i in enumerate(batch.indices)
    )


def write_pair(folder, name: str, src: str | bytes, tgt: str | bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, text in (("src", src), ("tgt", tgt)):
        path = folder / f"{name}.{suffix}"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(folder / name)


def toy_data(train_prefix: str):
    """configs/toy.yaml's data section, training on ``train_prefix``."""
    return dataclasses.replace(toy_config().data, train=train_prefix)


def test_training_data_with_unequal_sides_is_refused(tmp_path):
    prefix = write_pair(tmp_path / "d", "train", "a b\nc d\n", "b a\n")
    with pytest.raises(DataError, match=r"train\.src has 2 lines but .*train\.tgt has 1"):
        build_training_data(toy_data(prefix))


def test_invalid_utf8_in_training_data_names_the_line(tmp_path):
    prefix = write_pair(tmp_path / "d", "train", b"a b\n\xc3\x28 c\n", "b a\nc d\n")
    with pytest.raises(DataError, match=r"train\.src:2: not valid UTF-8"):
        build_training_data(toy_data(prefix))


def test_empty_whitespace_crlf_and_huge_lines_are_filtered(tmp_path, caplog):
    lines_src = ["a b c", "", "   ", "x " * 50_000, "d e"] * 20
    lines_tgt = ["c b a", "q", "r", "y", "e d"] * 20
    prefix = write_pair(
        tmp_path / "d", "train", "\r\n".join(lines_src) + "\r\n", "\n".join(lines_tgt)
    )
    caplog.set_level("INFO", logger="seq2seq")
    data = build_training_data(toy_data(prefix))
    assert len(data.train_indices) == 40
    assert all(data.train_src[i] and data.train_tgt[i] for i in data.train_indices)
    assert "100 read" in caplog.text and "40 kept, 40 empty and 20 longer" in caplog.text


def test_nothing_left_after_filtering(tmp_path):
    prefix = write_pair(tmp_path / "d", "train", "\n \n", "a\nb\n")
    with pytest.raises(DataError, match="no training pair left after filtering"):
        build_training_data(toy_data(prefix))


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "folder.de").mkdir()
    with pytest.raises(DataError, match=r"folder\.de: cannot read"):
        read_lines(tmp_path / "folder.de")
