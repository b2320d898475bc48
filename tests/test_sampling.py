"""Sampling (sampling.py, ``--sample``): what is drawn, and that a line's draws are its own."""

import numpy as np
import pytest

from seq2seq.config import ConfigError, DecodeOptions
from seq2seq.sampling import choose, sentence_keys, uniforms
from seq2seq.translate import Translator
from seq2seq.translation import LoadSpec
from seq2seq.translators import load_translator

from .test_streaming import toy_lines

KEYS = sentence_keys(np.arange(20_000)[:, None] + 4, np.ones(20_000, dtype=np.int64), 0)


def distribution(rows: int, seed: int = 0) -> np.ndarray:
    """Random next-token log-probabilities (rows, 12), two of them barred (PAD, BOS)."""
    logits = np.random.default_rng(seed).normal(size=(rows, 12)) * 2
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    log_probs[:, :2] = -np.inf
    return log_probs.astype(np.float32)


def test_uniforms_are_uniform_and_keyed():
    u = uniforms(KEYS, 3)
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.median(u) - 0.5) < 0.01
    assert np.histogram(u, 10, (0, 1))[0].min() > 1800  # 2,000 per bin expected
    assert not np.array_equal(u, uniforms(KEYS, 4))  # each step its own draw
    assert len(np.unique(KEYS)) == len(KEYS)  # every sentence its own key
    src = np.array([[5, 6, 7, 0], [5, 6, 7, 9], [5, 6, 7, 8]])
    keys = sentence_keys(src, np.array([3, 3, 4]), 0)
    assert keys[0] == keys[1] != keys[2]  # padding is not part of a sentence
    assert sentence_keys(src, np.array([3, 3, 4]), 1)[0] != keys[0]  # the seed is


def test_draws_follow_the_distribution():
    log_probs = np.repeat(distribution(1), len(KEYS), 0)  # one distribution, many sentences
    drawn = choose(log_probs, KEYS, 0)
    counts = np.bincount(drawn, minlength=12) / len(KEYS)
    expected = np.exp(log_probs[0]) / np.exp(log_probs[0]).sum()  # without the barred ones
    assert np.abs(counts - expected).max() < 0.015  # 4 standard deviations at most
    assert counts[:2].sum() == 0  # barred tokens are never drawn


@pytest.mark.parametrize("temperature", [0.0, 1e-6])
def test_a_temperature_near_zero_is_the_argmax(temperature):
    log_probs = distribution(500)
    keys = KEYS[:500]
    assert np.array_equal(choose(log_probs, keys, 0, temperature), log_probs.argmax(-1))
    assert np.array_equal(choose(log_probs, keys, 0, 1.0, top_k=1), log_probs.argmax(-1))


def test_top_k_and_top_p_keep_to_their_sets():
    log_probs = np.repeat(distribution(1, seed=4), len(KEYS), 0)
    order = np.argsort(-log_probs[0])
    assert set(choose(log_probs, KEYS, 0, top_k=3)) == set(order[:3])
    probs = np.exp(log_probs[0][order])
    nucleus = order[: int(np.searchsorted(np.cumsum(probs), 0.8)) + 1]  # reaches 0.8
    assert set(choose(log_probs, KEYS, 0, top_p=0.8)) == set(nucleus)


def test_sampling_options_are_checked():
    with pytest.raises(ConfigError, match="n-best must be 1"):
        DecodeOptions(sample=True, beam=5, n_best=2)
    with pytest.raises(ConfigError, match="temperature"):
        DecodeOptions(sample=True, temperature=-1)
    with pytest.raises(ConfigError, match="top_p"):
        DecodeOptions(sample=True, top_p=0)


@pytest.mark.numerics
def test_sampled_translations_are_reproducible_and_their_own(toy_checkpoint):
    translator = Translator.from_checkpoint(toy_checkpoint, device="cpu", precision="fp32")
    lines = [line for line in toy_lines(60, seed=3) if line.strip()]
    options = DecodeOptions(sample=True, temperature=1.5, seed=7)
    drawn = translator.translate(lines, options)
    assert drawn == translator.translate(lines, options)  # the same seed, the same draws
    assert drawn == [translator.translate([line], options)[0] for line in lines]  # alone
    assert drawn[::-1] == translator.translate(lines[::-1], options)  # in any order
    other = translator.translate(lines, DecodeOptions(sample=True, temperature=1.5, seed=8))
    assert other != drawn
    greedy = translator.translate(lines, beam=1)
    assert translator.translate(lines, DecodeOptions(sample=True, temperature=1e-4)) == greedy


@pytest.mark.numerics
def test_the_runtime_samples_what_pytorch_samples(toy_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from seq2seq.export import export

    folder = export(toy_checkpoint, tmp_path / "export")
    lines = [line for line in toy_lines(40, seed=9) if line.strip()]
    options = DecodeOptions(sample=True, temperature=1.2, top_p=0.95, seed=3)
    pytorch = Translator.from_checkpoint(toy_checkpoint, device="cpu", precision="fp32")
    runtime = load_translator(LoadSpec.of(folder))
    assert runtime.translate(lines, options) == pytorch.translate(lines, options)
