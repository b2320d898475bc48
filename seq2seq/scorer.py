"""What search asks of a model: log-probabilities of the next token, one step at a time.

A scorer has two methods. ``start(src, src_lengths)`` encodes a batch and
returns a state; ``step(prev, state)`` feeds the previous tokens (B,) and
returns the next-token log-probabilities (B, V) in fp32, the new state and
the attention (B, S). A state has ``select(rows)`` (any rows, e.g. dropping
finished sentences) and ``reorder(rows)`` (rows of the same sentences, as
beams are reordered: the encoder outputs stay as they are).

- ``ModelScorer``: one model prepared for decoding (decoding.py), optionally
  with a vocabulary shortlist (the output layer computed only over the target
  tokens a batch can produce).
- ``Ensemble``: several models that share vocabularies; each step's
  log-probabilities are the mean of theirs.

Shapes: B batch (rows), S source length, D decoder size, V target vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from seq2seq.decoding import Decoding
from seq2seq.model import DecoderState, Encoded, Seq2Seq
from seq2seq.vocab import BOS_ID, PAD_ID


class State(Protocol):
    def select(self, rows: Tensor) -> State: ...
    def reorder(self, rows: Tensor) -> State: ...


class Scorer(Protocol):
    def start(self, src: Tensor, src_lengths: Tensor) -> State: ...
    def step(self, prev: Tensor, state: State) -> tuple[Tensor, State, Tensor]: ...


class OutputLayer(NamedTuple):
    """The output layer restricted to ``ids`` (sorted, specials first): (..., D) -> (..., V')."""

    ids: Tensor
    project: Callable[[Tensor], Tensor]


class ModelState(NamedTuple):
    decoder: DecoderState
    encoded: Encoded
    output: OutputLayer | None  # a shortlist's output layer, shared by all rows

    def select(self, rows: Tensor) -> ModelState:
        return ModelState(self.decoder.select(rows), self.encoded.select(rows), self.output)

    def reorder(self, rows: Tensor) -> ModelState:
        return ModelState(self.decoder.select(rows), self.encoded, self.output)


class ModelScorer:
    """One model. ``shortlist(src)`` (optional) gives the target ids a batch may produce.

    A plain ``Seq2Seq`` is prepared for fp32 decoding here; pass a ``Decoding``
    for int8 or to share one preparation between scorers.
    """

    def __init__(self, model: Seq2Seq | Decoding, shortlist=None):
        self.decoding = model if isinstance(model, Decoding) else Decoding(model)
        self.shortlist = shortlist

    def start(self, src: Tensor, src_lengths: Tensor) -> ModelState:
        decoding = self.decoding
        encoded = decoding.encode(src, src_lengths)
        output = None
        if self.shortlist is not None:
            ids = self.shortlist(src).to(src.device)  # (V',)
            output = OutputLayer(ids, decoding.output_rows(ids))
        return ModelState(decoding.init_state(encoded), encoded, output)

    def step(self, prev: Tensor, state: ModelState) -> tuple[Tensor, ModelState, Tensor]:
        decoding = self.decoding
        output, decoder_state, weights = decoding.step(prev, state.decoder, state.encoded)
        if state.output is None:
            log_probs = torch.log_softmax(decoding.logits(output).float(), dim=-1)  # (B, V)
        else:  # softmax over the shortlist; every other token gets probability 0
            logits = state.output.project(decoding.hidden(output)).float()  # (B, V')
            log_probs = logits.new_full((logits.size(0), decoding.vocab_size), float("-inf"))
            log_probs[:, state.output.ids] = torch.log_softmax(logits, dim=-1)  # (B, V)
        log_probs[:, PAD_ID] = float("-inf")  # never produced
        log_probs[:, BOS_ID] = float("-inf")
        return log_probs, ModelState(decoder_state, state.encoded, state.output), weights


class EnsembleState(NamedTuple):
    states: tuple

    def select(self, rows: Tensor) -> EnsembleState:
        return EnsembleState(tuple(s.select(rows) for s in self.states))

    def reorder(self, rows: Tensor) -> EnsembleState:
        return EnsembleState(tuple(s.reorder(rows) for s in self.states))


class Ensemble:
    """Models with one target vocabulary decoded as one: the mean of their log-probabilities.

    The attention returned is the mean of the models' attention.
    """

    def __init__(self, scorers: list[Scorer]):
        if not scorers:
            raise ValueError("an ensemble needs at least one model")
        self.scorers = scorers

    def start(self, src: Tensor, src_lengths: Tensor) -> EnsembleState:
        return EnsembleState(tuple(s.start(src, src_lengths) for s in self.scorers))

    def step(self, prev: Tensor, state: EnsembleState) -> tuple[Tensor, EnsembleState, Tensor]:
        steps = [s.step(prev, st) for s, st in zip(self.scorers, state.states, strict=True)]
        log_probs = torch.stack([lp for lp, _, _ in steps]).mean(0)  # (B, V)
        weights = torch.stack([w.float() for _, _, w in steps]).mean(0)  # (B, S)
        return log_probs, EnsembleState(tuple(st for _, st, _ in steps)), weights


def as_scorer(model: Seq2Seq | Decoding | Scorer) -> Scorer:
    """A model (plain or prepared) becomes a ``ModelScorer``; a scorer stays as it is."""
    return ModelScorer(model) if isinstance(model, (Seq2Seq, Decoding)) else model
