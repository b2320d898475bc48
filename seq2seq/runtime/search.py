"""Greedy and beam search in NumPy over an exported model: search.py's rules, array for array.

The PyTorch search (search.py) and this one must choose the same tokens:
tests/test_runtime.py runs both on the same model and inputs and compares
tokens and scores (the conformance test; the tolerance is stated there). The
rules are the same, line for line: the length limit ``ratio * source length
+ 5``, EOS barred before ``min_len`` and forced at the limit, GNMT's length
penalty, 2K candidates per step of which the top K may finish, a finished
sentence leaving the batch, and the early stop once no live beam can still
win (search.py's ``_done`` explains the bound).

A model here has ``start(src, lengths) -> state`` and ``step(prev, state) ->
(log_probs (B, V) float32, state, attention (B, S))``; a state has
``select(rows)`` and ``reorder(rows)`` (exported.py).

Shapes: B batch, S source length, N output length, V vocabulary, K beam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seq2seq.config import DecodeOptions
from seq2seq.sampling import choose, sentence_keys
from seq2seq.vocab import BOS_ID, EOS_ID


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids, EOS excluded
    log_prob: float  # sum of token log-probabilities (EOS included)
    score: float  # log_prob / length_penalty (beam search)
    attention: np.ndarray | None = None  # (N + 1, S) for this sentence, if asked for


def max_lengths(src_lengths: np.ndarray, ratio: float, extra: int = 5) -> np.ndarray:
    """Output limit per sentence: ``ratio * source length + extra`` tokens before EOS."""
    return (src_lengths.astype(np.float32) * np.float32(ratio)).astype(np.int64) + extra  # (B,)


def length_penalty(length, alpha: float):
    """GNMT's ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14); 0 turns it off."""
    return ((5 + length) / 6) ** alpha


def limit_eos(log_probs: np.ndarray, limits: np.ndarray, t: int, min_len: int) -> None:
    """Bar EOS before ``min_len`` (never past a row's own limit); at the limit, only EOS."""
    if t < min_len:
        log_probs[limits > t, EOS_ID] = -np.inf
    at_limit = limits <= t  # (R,)
    if at_limit.any():
        eos_column = log_probs[:, EOS_ID].copy()
        log_probs[at_limit] = -np.inf
        log_probs[:, EOS_ID] = eos_column


def greedy(model, src, src_lengths, max_len_ratio=2.0, keep_attention=False, min_len=0, pick=None):
    """The most probable token at each step until EOS or the length limit; beam 1's rules.
    ``pick(log_probs, active, t)`` replaces the argmax (``sample``)."""
    batch = src.shape[0]
    state = model.start(src, src_lengths)
    limits = max_lengths(src_lengths, max_len_ratio)  # (B,)
    steps = int(limits.max()) + 1
    tokens = np.full((batch, steps), EOS_ID, dtype=np.int64)  # (B, N)
    attention = np.zeros((batch, steps, src.shape[1]), np.float32) if keep_attention else None
    scores = np.zeros(batch, dtype=np.float32)  # (B,)
    active = np.arange(batch)  # (B',) sentences still decoding
    prev = np.full(batch, BOS_ID, dtype=np.int64)  # (B',)
    for t in range(steps):
        log_probs, state, weights = model.step(prev, state)  # (B', V)
        limit_eos(log_probs, limits[active], t, min_len)
        best = log_probs.argmax(axis=-1) if pick is None else pick(log_probs, active, t)  # (B',)
        tokens[active, t] = best
        scores[active] += log_probs[np.arange(best.size), best]
        if attention is not None:
            attention[active, t] = weights
        ended = best == EOS_ID  # (B',)
        if ended.any():
            left = np.flatnonzero(~ended)  # (B'',)
            if left.size == 0:
                break
            active, best, state = active[left], best[left], state.select(left)
        prev = best
    hypotheses = []
    for i, row in enumerate(tokens.tolist()):
        length = row.index(EOS_ID)
        weights = None if attention is None else attention[i, : length + 1, : src_lengths[i]]
        score = float(scores[i])
        hypotheses.append(Hypothesis(row[:length], score, score, weights))
    return hypotheses


def sample(model, src, src_lengths, options: DecodeOptions, keep_attention=False):
    """search.py's ``sample``: draws through ``sampling.choose``, greedy's length rules."""
    keys = sentence_keys(src, src_lengths, options.seed)  # (B,)

    def pick(log_probs, active, t):
        return choose(log_probs, keys[active], t, options.temperature, options.top_k, options.top_p)

    return greedy(
        model, src, src_lengths, options.max_len_ratio, keep_attention, options.min_len, pick
    )


def top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row, largest first: values and indices (R, k)."""
    ids = np.argpartition(-values, k - 1, axis=-1)[:, :k]  # (R, k), unordered
    picked = np.take_along_axis(values, ids, axis=-1)
    order = np.argsort(-picked, axis=-1, kind="stable")
    return np.take_along_axis(picked, order, -1), np.take_along_axis(ids, order, -1)


@dataclass
class _Beams:
    """The live hypotheses: K rows per sentence still decoding, flattened to (B'*K) rows."""

    active: np.ndarray  # (B',) original index of each sentence left
    scores: np.ndarray  # (B', K) summed log-probabilities
    prev: np.ndarray  # (B'*K,) last token of each row
    history: np.ndarray  # (B'*K, t) tokens so far
    state: object  # the model's, (B'*K) rows
    attention: list | None  # per step (B'*K, S), when kept

    def take(self, rows: np.ndarray, same_sentences: bool) -> None:
        self.prev, self.history = self.prev[rows], self.history[rows]
        self.state = self.state.reorder(rows) if same_sentences else self.state.select(rows)
        if self.attention is not None:
            self.attention = [a[rows] for a in self.attention]


def beam_search(model, src, src_lengths, options=None, keep_attention=False, stop_early=True):
    """Batched beam search (search.py's ``beam_search``): per sentence, the n-best, best first."""
    options = options or DecodeOptions()
    batch, k = src.shape[0], options.beam
    scores = np.full((batch, k), -np.inf, dtype=np.float32)  # (B, K)
    scores[:, 0] = 0.0  # all beams start equal: expand only the first
    beams = _Beams(
        active=np.arange(batch),
        scores=scores,
        prev=np.full(batch * k, BOS_ID, dtype=np.int64),
        history=np.zeros((batch * k, 0), dtype=np.int64),
        state=model.start(src, src_lengths).select(np.repeat(np.arange(batch), k)),
        attention=[] if keep_attention else None,
    )
    limits = max_lengths(src_lengths, options.max_len_ratio)  # (B,)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    t = 0
    while beams.active.size > 0:
        log_probs, beams.state, weights = model.step(beams.prev, beams.state)  # (B'*K, V)
        limit_eos(log_probs, np.repeat(limits[beams.active], k), t, options.min_len)
        vocab = log_probs.shape[-1]
        candidates = (beams.scores.reshape(-1, 1) + log_probs).reshape(-1, k * vocab)
        top_scores, top_ids = top_k(candidates, 2 * k)  # (B', 2K)
        token = top_ids % vocab  # (B', 2K)
        source_rows = np.arange(beams.active.size)[:, None] * k + top_ids // vocab  # (B', 2K)
        _finish(beams, finished, top_scores, token, source_rows, weights, t, options, src_lengths)
        _extend(beams, top_scores, token, source_rows, weights)
        done = _done(beams, finished, limits, t, options, stop_early)
        if done.any():
            left = np.flatnonzero(~done)  # (B'',)
            beams.active, beams.scores = beams.active[left], beams.scores[left]
            beams.take((left[:, None] * k + np.arange(k)).reshape(-1), False)
        t += 1
    for hypotheses in finished:
        hypotheses.sort(key=lambda h: -h.score)
    return [hypotheses[: options.n_best] for hypotheses in finished]


def _done(beams, finished, limits, t, options, stop_early) -> np.ndarray:
    """Per sentence left: K finished, at its length limit, or (``stop_early``) unbeatable."""
    bounds = np.full(beams.active.size, np.inf, dtype=np.float32)
    if stop_early:
        lp = length_penalty(limits[beams.active].astype(np.float32) + 1, options.alpha)
        bounds = beams.scores.max(axis=1) / lp.astype(np.float32)  # (B',)
    done = np.zeros(beams.active.size, dtype=bool)
    for i, s in enumerate(beams.active.tolist()):
        scores = sorted((h.score for h in finished[s]), reverse=True)
        beaten = len(scores) >= options.n_best and scores[options.n_best - 1] > bounds[i]
        done[i] = len(scores) >= options.beam or limits[s] <= t or beaten
    return done


def _finish(beams, finished, top_scores, token, source_rows, weights, t, options, src_lengths):
    """Candidates among the top K that end in EOS become finished hypotheses of their sentence."""
    k = options.beam
    is_eos = (token == EOS_ID) & np.isfinite(top_scores)  # (B', 2K)
    is_eos[:, k:] = False  # only the top K may finish
    if not is_eos.any():
        return
    penalty = length_penalty(t + 1, options.alpha)
    for i, j in zip(*np.nonzero(is_eos), strict=True):
        sentence = int(beams.active[i])
        if len(finished[sentence]) >= k:
            continue
        row = int(source_rows[i, j])
        attention = None
        if beams.attention is not None:
            path = np.stack([a[row] for a in beams.attention] + [weights[row]])  # (t+1, S)
            attention = path[:, : int(src_lengths[sentence])]
        raw = float(top_scores[i, j])
        finished[sentence].append(
            Hypothesis(beams.history[row].tolist(), raw, raw / penalty, attention)
        )


def _extend(beams: _Beams, top_scores, token, source_rows, weights) -> None:
    """The best K candidates per sentence that did not end go on."""
    k = beams.scores.shape[1]
    alive_scores = np.where(token == EOS_ID, -np.inf, top_scores).astype(np.float32)  # (B', 2K)
    keep_scores, keep_slots = top_k(alive_scores, k)  # (B', K)
    keep_rows = np.take_along_axis(source_rows, keep_slots, 1).reshape(-1)  # (B'*K,)
    keep_tokens = np.take_along_axis(token, keep_slots, 1).reshape(-1)  # (B'*K,)
    beams.take(keep_rows, same_sentences=True)
    beams.history = np.concatenate([beams.history, keep_tokens[:, None]], axis=1)  # (B'*K, t+1)
    if beams.attention is not None:
        beams.attention.append(weights[keep_rows])
    beams.scores, beams.prev = keep_scores, keep_tokens
