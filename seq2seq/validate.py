"""Validation: teacher-forced loss and perplexity, and BLEU of greedy translations."""

from __future__ import annotations

import math

import torch

from seq2seq.data import TrainingData, collate
from seq2seq.metrics import bleu
from seq2seq.model import Seq2Seq
from seq2seq.search import decode_corpus, greedy
from seq2seq.step import token_loss_sum
from seq2seq.vocab import EOS


@torch.no_grad()
def validate(
    model: Seq2Seq,
    data: TrainingData,
    device: torch.device,
    batch_tokens: int,
    max_len_ratio: float,
    autocast_dtype: torch.dtype | None,
) -> dict:
    """Loss and perplexity (no label smoothing) and greedy BLEU on the validation set."""
    was_training = model.training
    model.eval()
    enabled = autocast_dtype is not None
    pairs = [
        i for i, (s, t) in enumerate(zip(data.valid_src, data.valid_tgt, strict=True)) if s and t
    ]
    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(pairs), 64):
        batch = collate(data.valid_src, data.valid_tgt, pairs[start : start + 64]).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=enabled):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
        total_loss += float(token_loss_sum(logits, batch.tgt_out, 0.0))
        total_tokens += batch.n_tokens
    hypotheses = decode_corpus(
        model, data.valid_src, batch_tokens, device, max_len_ratio, autocast_dtype
    )
    texts = [data.tgt_tokenizer.decode(data.tgt_vocab.decode(h.tokens)) for h in hypotheses]
    model.train(was_training)
    loss = total_loss / max(total_tokens, 1)
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 100.0)),
        "bleu": bleu(texts, data.valid_ref_lines).score,
        "hypotheses": texts,
    }


@torch.no_grad()
def attention_samples(
    model: Seq2Seq,
    data: TrainingData,
    count: int,
    device: torch.device,
    max_len_ratio: float,
    autocast_dtype: torch.dtype | None,
) -> list[tuple[list[str], list[str], list[list[float]]]]:
    """Greedy attention of the first ``count`` validation sentences.

    Each is (source tokens, output tokens + EOS, weights (N + 1, S) as lists);
    the same greedy search as validation, so the outputs match its samples.
    """
    indices = [i for i in range(min(count, len(data.valid_src))) if data.valid_src[i]]
    if not indices:
        return []
    was_training = model.training
    model.eval()
    batch = collate(data.valid_src, None, indices).to(device)
    enabled = autocast_dtype is not None
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=enabled):
        hypotheses = greedy(model, batch.src, batch.src_lengths, max_len_ratio, keep_attention=True)
    model.train(was_training)
    return [
        (
            data.src_vocab.decode(data.valid_src[i]),
            data.tgt_vocab.decode(h.tokens) + [EOS],
            h.attention.tolist(),
        )
        for i, h in zip(indices, hypotheses, strict=True)
    ]
