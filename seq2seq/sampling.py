"""Sampling the next token: temperature, top-k, top-p (nucleus), with reproducible draws.

A sentence's draws depend only on the seed, the sentence's own source ids and
the step: never on its batch, its position in the input, the number of
workers or the backend (search.py and runtime/search.py both sample through
``choose``). The random numbers are counter-based: splitmix64 (Steele, Lea
and Flood 2014) of (seed, sentence key, step), so no generator state travels
with a sentence; two equal source lines get equal samples for one seed.

``choose`` turns next-token log-probabilities into one token per row:
temperature T divides them (T = 0: the argmax, greedy search), top-k keeps
the K most probable tokens, top-p the smallest set whose probability reaches
p (Holtzman et al. 2020), and the token is drawn by inverting the cumulative
distribution at the row's uniform number. Barred tokens (probability 0:
padding, BOS, EOS before ``min_len``) are never drawn.

Shapes: B rows, S source length, V vocabulary.
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment
MASK = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: uint64 -> well-spread uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def sentence_keys(src: np.ndarray, lengths: np.ndarray, seed: int) -> np.ndarray:
    """A key per sentence (B,) uint64 from the seed and its source ids (B, S), padding excluded."""
    keys = np.full(src.shape[0], (seed * GOLDEN) & MASK, dtype=np.uint64)  # (B,)
    ids = src.astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(src.shape[1]):
            mixed = _mix(keys + ids[:, j] + np.uint64(GOLDEN))
            keys = np.where(j < lengths, mixed, keys)
    return keys


def uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """One number in [0, 1) per key (B,) for decoder step ``step``."""
    with np.errstate(over="ignore"):
        x = _mix(keys + np.uint64(((step + 1) * GOLDEN) & MASK))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def choose(
    log_probs: np.ndarray,
    keys: np.ndarray,
    step: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> np.ndarray:
    """One token per row (B,) drawn from ``log_probs`` (B, V) as the options say."""
    if temperature == 0:
        return log_probs.argmax(axis=-1)
    logits = log_probs.astype(np.float64) / temperature  # float64: a small T stays finite
    if 0 < top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k, None]  # (B, 1)
        logits = np.where(logits < kth, -np.inf, logits)
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)  # (B, V), 0 where barred
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p < 1:
        order = np.argsort(-probs, axis=-1, kind="stable")  # (B, V), most probable first
        sorted_probs = np.take_along_axis(probs, order, -1)
        before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of the more probable ones
        cut = np.zeros_like(probs)
        np.put_along_axis(cut, order, before >= top_p, -1)  # outside the nucleus
        probs = np.where(cut > 0, 0.0, probs)
    cdf = np.cumsum(probs, axis=-1)  # (B, V)
    threshold = uniforms(keys, step) * cdf[:, -1]  # (B,)
    token = (cdf <= threshold[:, None]).sum(axis=-1)  # the first index whose cdf passes it
    return np.minimum(token, log_probs.shape[-1] - 1)
