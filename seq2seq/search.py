"""Decoding: pure functions over a scorer (scorer.py): a model, an ensemble, a shortlist.

Shapes: B batch, S source length, N output length, V vocabulary size.
Every sentence in a batch is decoded independently of the others: its
limits come from its own source length and a finished sentence stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.config import DecodeOptions
from seq2seq.corpus import decode_in_batches
from seq2seq.data import Batch, collate
from seq2seq.decoding import Decoding
from seq2seq.model import Seq2Seq
from seq2seq.sampling import choose, sentence_keys
from seq2seq.scorer import Scorer, State, as_scorer
from seq2seq.vocab import BOS_ID, EOS_ID


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids, EOS excluded
    log_prob: float  # sum of token log-probabilities (EOS included)
    score: float  # what hypotheses are ranked by: log_prob / length_penalty (beam search)
    attention: Tensor | None = None  # (N + 1, S) for this sentence, if asked for


def max_lengths(src_lengths: Tensor, ratio: float, extra: int = 5) -> Tensor:
    """Output limit per sentence: ``ratio * source length + extra`` tokens before EOS."""
    return (src_lengths.float() * ratio).long() + extra  # (B,)


@torch.no_grad()
def greedy(
    model: Seq2Seq | Decoding | Scorer,
    src: Tensor,
    src_lengths: Tensor,
    max_len_ratio: float = 2.0,
    keep_attention: bool = False,
    min_len: int = 0,
    pick: Callable[[Tensor, Tensor, int], Tensor] | None = None,
) -> list[Hypothesis]:
    """Pick the most probable token at each step until EOS or the length limit.

    The length rules are beam search's (``_limit_eos``), so beam 1 equals
    greedy. A sentence that has ended leaves the batch, so it costs nothing
    afterwards. ``pick(log_probs (B', V), active (B',), t) -> tokens (B',)``
    replaces the argmax (``sample`` draws with it).
    """
    scorer, device, batch = as_scorer(model), src.device, src.size(0)
    state = scorer.start(src, src_lengths)
    limits = max_lengths(src_lengths, max_len_ratio).to(device)  # (B,)
    steps = int(limits.max()) + 1
    tokens = torch.full((batch, steps), EOS_ID, dtype=torch.long, device=device)  # (B, N)
    attention = torch.zeros((batch, steps, src.size(1)), device=device) if keep_attention else None
    scores = torch.zeros(batch, device=device)  # (B,)
    active = torch.arange(batch, device=device)  # (B',) sentences still decoding
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # (B',)
    for t in range(steps):
        log_probs, state, weights = scorer.step(prev, state)  # (B', V)
        _limit_eos(log_probs, limits[active], t, min_len)
        if pick is None:
            best_scores, best = log_probs.max(dim=-1)  # (B',)
        else:
            best = pick(log_probs, active, t)  # (B',)
            best_scores = log_probs.gather(1, best.unsqueeze(1)).squeeze(1)
        tokens[active, t] = best
        scores.index_add_(0, active, best_scores)
        if attention is not None:
            attention[active, t] = weights.float()
        ended = best == EOS_ID  # (B',)
        if bool(ended.any()):
            left = (~ended).nonzero().squeeze(1)  # (B'',)
            if left.numel() == 0:
                break
            active, best, state = active[left], best[left], state.select(left)
        prev = best
    hypotheses = []
    for i, row in enumerate(tokens.tolist()):
        length = row.index(EOS_ID)
        weights = None
        if attention is not None:
            weights = attention[i, : length + 1, : int(src_lengths[i])].cpu()
        score = float(scores[i])
        hypotheses.append(Hypothesis(row[:length], score, score, weights))
    return hypotheses


@torch.no_grad()
def sample(
    model: Seq2Seq | Decoding | Scorer,
    src: Tensor,
    src_lengths: Tensor,
    options: DecodeOptions,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """Draw each token (``sampling.choose``: temperature, top-k, top-p) under greedy's length
    rules. A sentence's draws depend on the seed and its own source ids only (sampling.py),
    so its sample is the same in any batch; runtime/search.py draws the same way."""
    keys = sentence_keys(src.cpu().numpy(), src_lengths.cpu().numpy(), options.seed)  # (B,)

    def pick(log_probs: Tensor, active: Tensor, t: int) -> Tensor:
        rows = keys[active.cpu().numpy()]
        chosen = choose(
            log_probs.float().cpu().numpy(),
            rows,
            t,
            options.temperature,
            options.top_k,
            options.top_p,
        )
        return torch.from_numpy(chosen).to(log_probs.device)

    return greedy(
        model, src, src_lengths, options.max_len_ratio, keep_attention, options.min_len, pick
    )


def length_penalty(length: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT's length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14); 0 turns it off."""
    return ((5 + length) / 6) ** alpha


@dataclass
class _Beams:
    """The live hypotheses: K rows per sentence still decoding, flattened to (B'*K) rows."""

    active: Tensor  # (B',) original index of each sentence left
    scores: Tensor  # (B', K) summed log-probabilities
    prev: Tensor  # (B'*K,) last token of each row
    history: Tensor  # (B'*K, t) tokens so far
    state: State  # the scorer's, (B'*K) rows
    attention: list[Tensor] | None  # per step (B'*K, S), when kept

    def take(self, rows: Tensor, same_sentences: bool) -> None:
        """Keep ``rows`` (B''*K,), in that order: reordered beams, or fewer sentences."""
        self.prev, self.history = self.prev[rows], self.history[rows]
        self.state = self.state.reorder(rows) if same_sentences else self.state.select(rows)
        if self.attention is not None:
            self.attention = [a.index_select(0, rows) for a in self.attention]


@torch.no_grad()
def beam_search(
    model: Seq2Seq | Decoding | Scorer,
    src: Tensor,
    src_lengths: Tensor,
    options: DecodeOptions | None = None,
    keep_attention: bool = False,
    stop_early: bool = True,
) -> list[list[Hypothesis]]:
    """Batched beam search: all sentences and their beams in one (B*K)-row tensor.

    Each step proposes 2K candidates per sentence; those ending in EOS among
    the top K are finished (scored by log-prob / length_penalty) and never
    extended, the best K others go on. A sentence stops once it holds K
    finished hypotheses or reaches its length limit, and leaves the batch, so
    its rows cost nothing afterwards. With ``stop_early`` it also stops once
    no live beam can still reach its ``n_best`` best finished ones (the
    result is the same; see ``_done``). Returns, per sentence, the
    ``options.n_best`` best hypotheses, best first.
    """
    options = options or DecodeOptions()
    scorer, device, batch, k = as_scorer(model), src.device, src.size(0), options.beam
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K,) sentence of each row
    scores = torch.full((batch, k), float("-inf"), device=device)  # (B, K)
    scores[:, 0] = 0.0  # all beams start equal: expand only the first
    beams = _Beams(
        active=torch.arange(batch, device=device),
        scores=scores,
        prev=torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device),
        history=torch.zeros((batch * k, 0), dtype=torch.long, device=device),
        state=scorer.start(src, src_lengths).select(rows),
        attention=[] if keep_attention else None,
    )
    limits = max_lengths(src_lengths, options.max_len_ratio).to(device)  # (B,)
    limit_list = limits.tolist()
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    t = 0
    while beams.active.numel() > 0:
        log_probs, beams.state, weights = scorer.step(beams.prev, beams.state)  # (B'*K, V)
        _limit_eos(log_probs, limits[beams.active].repeat_interleave(k), t, options.min_len)
        vocab = log_probs.size(-1)
        candidates = (beams.scores.view(-1, 1) + log_probs).view(-1, k * vocab)  # (B', K*V)
        top_scores, top_ids = candidates.topk(2 * k, dim=-1)  # (B', 2K)
        token = top_ids % vocab  # (B', 2K)
        row_base = torch.arange(beams.active.numel(), device=device).unsqueeze(1) * k  # (B', 1)
        source_rows = row_base + top_ids // vocab  # (B', 2K) the row each candidate extends
        _finish(beams, finished, top_scores, token, source_rows, weights, t, options, src_lengths)
        _extend(beams, top_scores, token, source_rows, weights)
        done = _done(beams, finished, limits, limit_list, t, options, stop_early)
        if any(done):
            left = (~torch.tensor(done, device=device)).nonzero().squeeze(1)  # (B'',)
            beams.active, beams.scores = beams.active[left], beams.scores[left]
            beams.take((left.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1), False)
        t += 1
    for hypotheses in finished:
        hypotheses.sort(key=lambda h: -h.score)
    return [hypotheses[: options.n_best] for hypotheses in finished]


def _done(beams, finished, limits, limit_list, t, options, stop_early) -> list[bool]:
    """Per sentence left: K finished, at its length limit, or (``stop_early``) unbeatable.

    A live beam's log-probability only falls as it grows, and its length
    penalty is at most lp(limit + 1), so raw / lp(limit + 1) bounds its final
    score (scores are negative). Once the n-best finished hypotheses all score
    above every live beam's bound, nothing can change the result.
    """
    bounds = [float("inf")] * beams.active.numel()
    if stop_early:
        best_alive = beams.scores.max(dim=1).values  # (B',)
        lp = length_penalty(limits[beams.active].float() + 1, options.alpha)  # (B',)
        bounds = (best_alive / lp).tolist()
    done = []
    for i, s in enumerate(beams.active.tolist()):
        scores = sorted((h.score for h in finished[s]), reverse=True)
        beaten = len(scores) >= options.n_best and scores[options.n_best - 1] > bounds[i]
        done.append(len(scores) >= options.beam or limit_list[s] <= t or beaten)
    return done


def _limit_eos(log_probs: Tensor, limits: Tensor, t: int, min_len: int) -> None:
    """Bar EOS before ``min_len`` (never past a row's own limit); at the limit, only EOS may follow.

    ``log_probs`` (R, V) is changed in place; ``limits`` (R,) is each row's length limit.
    """
    if t < min_len:
        log_probs[limits > t, EOS_ID] = float("-inf")
    at_limit = limits <= t  # (R,)
    if bool(at_limit.any()):
        eos_column = log_probs[:, EOS_ID].clone()
        log_probs[at_limit] = float("-inf")
        log_probs[:, EOS_ID] = eos_column


def _finish(
    beams, finished, top_scores, token, source_rows, weights, t, options, src_lengths
) -> None:
    """Candidates among the top K that end in EOS become finished hypotheses of their sentence."""
    k = options.beam
    is_eos = (token == EOS_ID) & torch.isfinite(top_scores)  # (B', 2K)
    is_eos[:, k:] = False  # only the top K may finish
    if not bool(is_eos.any()):
        return
    penalty = length_penalty(t + 1, options.alpha)
    for i, j in is_eos.nonzero().tolist():
        sentence = int(beams.active[i])
        if len(finished[sentence]) >= k:
            continue
        row = int(source_rows[i, j])
        attention = None
        if beams.attention is not None:
            path = torch.stack([a[row] for a in beams.attention] + [weights[row]])  # (t+1, S)
            attention = path[:, : int(src_lengths[sentence])].float().cpu()
        raw = float(top_scores[i, j])
        hypothesis = Hypothesis(beams.history[row].tolist(), raw, raw / penalty, attention)
        finished[sentence].append(hypothesis)


def _extend(beams: _Beams, top_scores, token, source_rows, weights) -> None:
    """The best K candidates per sentence that did not end go on."""
    k = beams.scores.size(1)
    alive_scores = top_scores.masked_fill(token == EOS_ID, float("-inf"))  # (B', 2K)
    keep_scores, keep_slots = alive_scores.topk(k, dim=-1)  # (B', K)
    keep_rows = source_rows.gather(1, keep_slots).view(-1)  # (B'*K,)
    keep_tokens = token.gather(1, keep_slots).view(-1)  # (B'*K,)
    beams.take(keep_rows, same_sentences=True)
    beams.history = torch.cat([beams.history, keep_tokens.unsqueeze(1)], dim=1)  # (B'*K, t+1)
    if beams.attention is not None:
        beams.attention.append(weights.index_select(0, keep_rows))
    beams.scores, beams.prev = keep_scores, keep_tokens


def decode_batches(
    sources: list[list[int]],
    batch_tokens: int,
    device: torch.device,
    decode: Callable[[Batch], list],
    on_batch: Callable[[int], None] | None = None,
) -> list:
    """``decode`` (a batch -> one result per sentence) over ``sources`` in length-sorted
    batches (``corpus.decode_in_batches``), each collated onto ``device``."""
    return decode_in_batches(
        sources,
        batch_tokens,
        lambda indices: decode(collate(sources, None, indices).to(device)),
        on_batch,
    )


def decode_corpus(
    model: Seq2Seq,
    sources: list[list[int]],
    batch_tokens: int,
    device: torch.device,
    max_len_ratio: float = 2.0,
    autocast_dtype: torch.dtype | None = None,
) -> list[Hypothesis]:
    """Greedy-decode many sentences, batched by length; results in input order.

    An empty source gives an empty hypothesis without touching the model.
    """
    enabled = autocast_dtype is not None
    scorer = as_scorer(Decoding(model, autocast_dtype=autocast_dtype))  # this one set of weights

    def decode(batch: Batch) -> list[Hypothesis]:
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=enabled):
            return greedy(scorer, batch.src, batch.src_lengths, max_len_ratio)

    results = decode_batches(sources, batch_tokens, device, decode)
    return [h if h is not None else Hypothesis([], 0.0, 0.0) for h in results]
