"""Decoding: pure functions over the model's public API (encode, init_state, step, logits).

Shapes: B batch, S source length, N output length, V vocabulary size.
Every sentence in a batch is decoded independently of the others: its
limits come from its own source length and a finished sentence stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.data import collate, token_batches
from seq2seq.model import Seq2Seq
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids, EOS excluded
    log_prob: float  # sum of token log-probabilities (EOS included)
    score: float  # what hypotheses are ranked by: log_prob / length_penalty (beam search)
    attention: Tensor | None = None  # (N + 1, S) for this sentence, if asked for


def next_log_probs(model: Seq2Seq, output: Tensor) -> Tensor:
    """Log-probabilities of the next token (B, V) in fp32; padding and BOS are never produced."""
    log_probs = torch.log_softmax(model.decoder.logits(output).float(), dim=-1)  # (B, V)
    log_probs[:, PAD_ID] = float("-inf")
    log_probs[:, BOS_ID] = float("-inf")
    return log_probs


def max_lengths(src_lengths: Tensor, ratio: float, extra: int = 5) -> Tensor:
    """Output limit per sentence: ``ratio * source length + extra`` tokens before EOS."""
    return (src_lengths.float() * ratio).long() + extra  # (B,)


@torch.no_grad()
def greedy(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    max_len_ratio: float = 2.0,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """Pick the most probable token at each step until EOS or the length limit.

    A sentence that has ended leaves the batch, so it costs nothing afterwards.
    """
    device, batch = src.device, src.size(0)
    encoded = model.encode(src, src_lengths)
    state = model.decoder.init_state(encoded)
    limits = max_lengths(src_lengths, max_len_ratio).to(device)  # (B,)
    steps = int(limits.max()) + 1
    tokens = torch.full((batch, steps), EOS_ID, dtype=torch.long, device=device)  # (B, N)
    attention = torch.zeros((batch, steps, src.size(1)), device=device) if keep_attention else None
    scores = torch.zeros(batch, device=device)  # (B,)
    active = torch.arange(batch, device=device)  # (B',) sentences still decoding
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # (B',)
    for t in range(steps):
        output, state, weights = model.decoder.step(prev, state, encoded)
        log_probs = next_log_probs(model, output)  # (B', V)
        best_scores, best = log_probs.max(dim=-1)  # (B',)
        at_limit = limits[active] <= t  # there, EOS is the only option
        best = best.masked_fill(at_limit, EOS_ID)
        best_scores = torch.where(at_limit, log_probs[:, EOS_ID], best_scores)
        tokens[active, t] = best
        scores.index_add_(0, active, best_scores)
        if attention is not None:
            attention[active, t] = weights.float()
        ended = best == EOS_ID  # (B',)
        if bool(ended.any()):
            left = (~ended).nonzero().squeeze(1)  # (B'',)
            if left.numel() == 0:
                break
            active, best = active[left], best[left]
            state, encoded = state.select(left), encoded.select(left)
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


def length_penalty(length: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT's length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14); 0 turns it off."""
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    beam_size: int = 5,
    alpha: float = 0.6,
    n_best: int = 1,
    max_len_ratio: float = 2.0,
    min_len: int = 0,
    keep_attention: bool = False,
) -> list[list[Hypothesis]]:
    """Batched beam search: all sentences and their beams in one (B*K)-row tensor.

    Each step proposes 2K candidates per sentence; those ending in EOS among
    the top K are finished (scored by log-prob / length_penalty) and never
    extended, the best K others go on. A sentence stops once it holds K
    finished hypotheses or reaches its length limit, and leaves the batch, so
    its rows cost nothing afterwards. Returns, per sentence, the ``n_best``
    best hypotheses, best first.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be in [1, beam size {beam_size}], got {n_best}")
    device, batch, k = src.device, src.size(0), beam_size
    encoded = model.encode(src, src_lengths)
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K,) sentence of each row
    encoded = encoded.select(rows)
    state = model.decoder.init_state(encoded)
    limits = max_lengths(src_lengths, max_len_ratio).to(device)  # (B,)
    limit_list = limits.tolist()
    active = torch.arange(batch, device=device)  # (B',) original index of each sentence left
    scores = torch.full((batch, k), float("-inf"), device=device)  # (B', K)
    scores[:, 0] = 0.0  # all beams start equal: expand only the first
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)  # (B'*K,)
    history = torch.zeros((batch * k, 0), dtype=torch.long, device=device)  # (B'*K, t)
    attention_history = [] if keep_attention else None
    finished: list[list[tuple[float, float, Tensor, Tensor | None]]] = [[] for _ in range(batch)]
    t = 0
    while active.numel() > 0:
        output, state, weights = model.decoder.step(prev, state, encoded)
        log_probs = next_log_probs(model, output)  # (B'*K, V)
        vocab = log_probs.size(-1)
        if t < min_len:  # EOS is barred until min_len, but never past a sentence's own limit
            too_short = (limits[active] > t).repeat_interleave(k)  # (B'*K,)
            log_probs[too_short, EOS_ID] = float("-inf")
        at_limit = (limits[active] <= t).repeat_interleave(k)  # (B'*K,)
        if bool(at_limit.any()):  # only EOS may follow
            eos_column = log_probs[:, EOS_ID].clone()
            log_probs[at_limit] = float("-inf")
            log_probs[:, EOS_ID] = eos_column
        candidates = (scores.view(-1, 1) + log_probs).view(-1, k * vocab)  # (B', K*V)
        top_scores, top_ids = candidates.topk(2 * k, dim=-1)  # (B', 2K)
        origin = top_ids // vocab  # (B', 2K) beam each candidate extends
        token = top_ids % vocab  # (B', 2K)
        row_base = torch.arange(active.numel(), device=device).unsqueeze(1) * k  # (B', 1)
        source_rows = (row_base + origin).view(-1)  # (B'*2K,)
        is_eos = (token == EOS_ID) & torch.isfinite(top_scores)  # (B', 2K)
        is_eos[:, k:] = False  # only the top K may finish
        if keep_attention:
            attention_history = [a.index_select(0, source_rows) for a in attention_history]
            step_attention = weights.index_select(0, source_rows)  # (B'*2K, S)
        if bool(is_eos.any()):
            paths = history.index_select(0, source_rows).view(active.numel(), 2 * k, -1)
            for i, j in is_eos.nonzero().tolist():
                sentence = int(active[i])
                if len(finished[sentence]) >= k:
                    continue
                raw = float(top_scores[i, j])
                attention = None
                if keep_attention:
                    stacked = torch.stack(
                        attention_history + [step_attention], dim=1
                    )  # (B'*2K, t+1, S)
                    length = int(src_lengths[sentence])
                    attention = stacked[i * 2 * k + j, :, :length].cpu()
                normalized = raw / length_penalty(t + 1, alpha)
                finished[sentence].append((normalized, raw, paths[i, j].clone(), attention))
        # The best K candidates that did not end go on.
        alive_scores = top_scores.masked_fill(token == EOS_ID, float("-inf"))  # (B', 2K)
        keep_scores, keep_slots = alive_scores.topk(k, dim=-1)  # (B', K)
        keep_rows = source_rows.view(-1, 2 * k).gather(1, keep_slots).view(-1)  # (B'*K,)
        keep_tokens = token.gather(1, keep_slots).view(-1)  # (B'*K,)
        history = torch.cat([history.index_select(0, keep_rows), keep_tokens.unsqueeze(1)], dim=1)
        if keep_attention:
            flat_slots = (row_base * 2 + keep_slots).view(-1)  # positions in the B'*2K layout
            attention_history = [a.index_select(0, flat_slots) for a in attention_history]
            attention_history.append(step_attention.index_select(0, flat_slots))
        state = state.select(keep_rows)
        scores, prev = keep_scores, keep_tokens
        done = torch.tensor(
            [len(finished[s]) >= k or limit_list[s] <= t for s in active.tolist()], device=device
        )  # (B',)
        if bool(done.any()):
            left = (~done).nonzero().squeeze(1)  # (B'',)
            left_rows = (left.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)
            active, scores = active[left], scores[left]
            prev, history = prev[left_rows], history[left_rows]
            state, encoded = state.select(left_rows), encoded.select(left_rows)
            if keep_attention:
                attention_history = [a.index_select(0, left_rows) for a in attention_history]
        t += 1
    results = []
    for hypotheses in finished:
        hypotheses.sort(key=lambda h: -h[0])
        results.append(
            [
                Hypothesis(path.tolist(), raw, normalized, attn)
                for normalized, raw, path, attn in hypotheses[:n_best]
            ]
        )
    return results


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
    results: list[Hypothesis | None] = [None] * len(sources)
    lengths = [len(s) for s in sources]
    nonempty = [i for i, length in enumerate(lengths) if length > 0]
    for indices in token_batches(lengths, nonempty, batch_tokens, rng=None):
        batch = collate(sources, None, indices).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            hypotheses = greedy(model, batch.src, batch.src_lengths, max_len_ratio)
        for i, hypothesis in zip(indices, hypotheses, strict=True):
            results[i] = hypothesis
    return [h if h is not None else Hypothesis([], 0.0, 0.0) for h in results]
