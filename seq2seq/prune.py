"""Structured pruning: remove whole hidden units, so every matrix really shrinks.

``seq2seq prune --model CKPT --amount 0.5 --output OUT.pt`` keeps the most
important ``1 - amount`` of each kind of unit and writes a smaller, ordinary
checkpoint; fine-tune it with ``seq2seq train --config ... --init-from OUT.pt``.

What is pruned, each to the same fraction (the config has one size per kind):
embedding dimensions (E, chosen separately for the source and target
embeddings), encoder LSTM units (H, per layer and direction), decoder LSTM
units (D, per layer), attentional-output units o_t (D) and attention units (A).
Vocabularies are kept.

Importance: the L2 norm of the weights that compute a unit (for an LSTM unit
its four gate rows in the input and recurrent matrices, with biases; for an
attention unit its rows in W and U; for an embedding dimension its column over
the vocabulary). The least important units are removed with every weight that
reads from them. Magnitude criteria of this kind are the usual baseline for
structured pruning (e.g. Li et al. 2017); fine-tuning recovers most of the loss.

The weights are read from the model's modules and written into a smaller
model's (``Seq2Seq`` and ``Encoder.lstm`` name them), never by state-dict key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from seq2seq import config as config_module
from seq2seq.checkpoint import CheckpointError
from seq2seq.model import LstmWeights, Seq2Seq
from seq2seq.tokenization import Preprocessing


class PruneError(CheckpointError):
    """A pruning amount or a model that cannot be pruned."""


def kept(size: int, amount: float) -> int:
    return max(1, math.floor(size * (1 - amount) + 0.5))


def _top(scores: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` largest scores, in their original order."""
    return scores.topk(count).indices.sort().values


def _gates(units: Tensor, size: int) -> Tensor:
    """Rows of the four LSTM gates (i, f, g, o) of ``units`` in a (4 * size, ...) matrix."""
    return torch.cat([units + gate * size for gate in range(4)])


def _lstm_scores(w: LstmWeights, size: int) -> Tensor:
    rows = torch.cat([w.weight_ih, w.weight_hh, w.bias_ih[:, None], w.bias_hh[:, None]], 1)
    return rows.view(4, size, -1).pow(2).sum((0, 2)).sqrt()  # (size,)


def _rebuild(payload: dict, model_config) -> Seq2Seq:
    model = Seq2Seq.from_config(model_config, len(payload["src_vocab"]), len(payload["tgt_vocab"]))
    model.load_state_dict({name: t.float() for name, t in payload["model"].items()})
    return model


@torch.no_grad()
def prune_payload(payload: dict, amount: float) -> dict:
    """A model-only checkpoint payload with ``amount`` of every kind of unit removed."""
    if not 0 <= amount < 1:
        raise PruneError(f"--amount must be in [0, 1), got {amount}")
    config = config_module.from_dict(payload["config"], where="checkpoint (stored config)")
    m = config.model
    if m.tie_embeddings:
        raise PruneError("pruning a model with tied embeddings is not supported")
    big = _rebuild(payload, m)
    E, H, D, A = m.embedding_size, m.encoder_hidden_size, m.decoder_hidden_size, m.attention_size
    e2, h2, d2, a2 = (kept(n, amount) for n in (E, H, D, A))
    idx = _choose_units(big, e2, h2, d2, a2)
    small_config = replace(
        m, embedding_size=e2, encoder_hidden_size=h2, decoder_hidden_size=d2, attention_size=a2
    )
    small = Seq2Seq.from_config(small_config, len(payload["src_vocab"]), len(payload["tgt_vocab"]))
    _copy_kept(big, small, idx, H, D)
    dtypes = {name: t.dtype for name, t in payload["model"].items()}
    return {
        **{k: payload[k] for k in Preprocessing.KEYS},
        "config": config_module.to_dict(replace(config, model=small_config)),
        "model": {name: t.to(dtypes[name]) for name, t in small.state_dict().items()},
        "pruning": {"amount": amount, "criterion": "L2 norm of each unit's incoming weights"},
    }


def _choose_units(model: Seq2Seq, e2: int, h2: int, d2: int, a2: int) -> dict:
    encoder, decoder = model.encoder, model.decoder
    attention = decoder.attention
    idx = {
        "src_embedding": _top(encoder.embedding.weight.norm(dim=0), e2),
        "tgt_embedding": _top(decoder.embedding.weight.norm(dim=0), e2),
        "output_units": _top(decoder.combine.weight.norm(dim=1), d2),  # o_t
        "attention": _top(
            torch.cat([attention.key_proj.weight, attention.query_proj.weight], 1).norm(dim=1), a2
        ),
    }
    for layer in range(encoder.rnn.num_layers):
        for reverse in (False, True):
            weights = encoder.lstm(layer, reverse)
            idx[("encoder", layer, reverse)] = _top(_lstm_scores(weights, encoder.hidden_size), h2)
    for layer, cell in enumerate(decoder.cells):
        idx[("decoder", layer)] = _top(
            _lstm_scores(LstmWeights.of_cell(cell), cell.hidden_size), d2
        )
    return idx


Get = Callable[[Seq2Seq], Tensor]


def _copy_kept(big: Seq2Seq, small: Seq2Seq, idx: dict, H: int, D: int) -> None:
    """Every weight of ``small``: ``big``'s restricted to the kept units, the rows they compute
    and the columns they are read by."""

    written = set()

    def take(get: Get, rows: Tensor | None = None, columns: Tensor | None = None) -> None:
        value = get(big)
        if rows is not None:
            value = value.index_select(0, rows)
        if columns is not None:
            value = value.index_select(1, columns)
        target = get(small)
        assert target.shape == value.shape, (target.shape, value.shape)
        target.copy_(value)
        written.add(id(target))

    def lstm(
        take_weights: Callable[[Seq2Seq], LstmWeights], units: Tensor, inputs: Tensor, size: int
    ):
        rows = _gates(units, size)
        take(lambda m: take_weights(m).weight_ih, rows, inputs)
        take(lambda m: take_weights(m).weight_hh, rows, units)
        take(lambda m: take_weights(m).bias_ih, rows)
        take(lambda m: take_weights(m).bias_hh, rows)

    take(lambda m: m.encoder.embedding.weight, columns=idx["src_embedding"])
    inputs = idx["src_embedding"]  # columns of layer 0's input
    for layer in range(big.encoder.rnn.num_layers):
        for reverse in (False, True):
            weights = lambda m, layer=layer, reverse=reverse: m.encoder.lstm(layer, reverse)  # noqa: E731
            lstm(weights, idx[("encoder", layer, reverse)], inputs, H)
        inputs = torch.cat([idx[("encoder", layer, False)], idx[("encoder", layer, True)] + H])
    annotations = inputs  # the top layer's 2H outputs h_j, and the final states the bridge reads
    layers = len(big.decoder.cells)
    top = idx[("decoder", layers - 1)]
    bridge_rows = torch.cat([idx[("decoder", layer)] + layer * D for layer in range(layers)])
    take(lambda m: m.decoder.bridge_h.weight, bridge_rows, annotations)
    take(lambda m: m.decoder.bridge_h.bias, bridge_rows)
    take(lambda m: m.decoder.bridge_c.weight, bridge_rows, annotations)
    take(lambda m: m.decoder.bridge_c.bias, bridge_rows)
    take(lambda m: m.decoder.embedding.weight, columns=idx["tgt_embedding"])
    inputs = torch.cat(
        [idx["tgt_embedding"], idx["output_units"] + big.decoder.embedding.embedding_dim]
    )
    for layer in range(layers):  # layer 0 reads [emb(y); o_{t-1}], the others the layer below
        weights = lambda m, layer=layer: LstmWeights.of_cell(m.decoder.cells[layer])  # noqa: E731
        lstm(weights, idx[("decoder", layer)], inputs, D)
        inputs = idx[("decoder", layer)]
    attention = idx["attention"]
    take(lambda m: m.decoder.attention.key_proj.weight, attention, annotations)
    take(lambda m: m.decoder.attention.query_proj.weight, attention, top)
    take(lambda m: m.decoder.attention.query_proj.bias, attention)
    take(lambda m: m.decoder.attention.v.weight, columns=attention)
    take(lambda m: m.decoder.combine.weight, idx["output_units"], torch.cat([top, annotations + D]))
    take(lambda m: m.decoder.output.weight, columns=idx["output_units"])
    take(lambda m: m.decoder.output.bias)
    assert written == {id(p) for p in small.parameters()}, "a parameter was left unpruned"


def parameter_count(payload: dict) -> int:
    return sum(t.numel() for t in payload["model"].values())
