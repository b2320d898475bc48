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
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from seq2seq import config as config_module
from seq2seq.checkpoint import CheckpointError
from seq2seq.model import Seq2Seq
from seq2seq.tokenize import Preprocessing


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


def _lstm_scores(w: dict, weight_ih: str, weight_hh: str, bias_ih: str, bias_hh: str, size: int):
    rows = torch.cat([w[weight_ih], w[weight_hh], w[bias_ih][:, None], w[bias_hh][:, None]], 1)
    return rows.view(4, size, -1).pow(2).sum((0, 2)).sqrt()  # (size,)


def prune_payload(payload: dict, amount: float) -> dict:
    """A model-only checkpoint payload with ``amount`` of every kind of unit removed."""
    if not 0 <= amount < 1:
        raise PruneError(f"--amount must be in [0, 1), got {amount}")
    config = config_module.from_dict(payload["config"], where="checkpoint (stored config)")
    m = config.model
    if m.tie_embeddings:
        raise PruneError("pruning a model with tied embeddings is not supported")
    w = {name: tensor.detach().float() for name, tensor in payload["model"].items()}
    E, H, D, A = m.embedding_size, m.encoder_hidden_size, m.decoder_hidden_size, m.attention_size
    e2, h2, d2, a2 = (kept(n, amount) for n in (E, H, D, A))
    idx = _choose_units(w, m, e2, h2, d2)
    idx["attention"] = _top(
        torch.cat(
            [w["decoder.attention.key_proj.weight"], w["decoder.attention.query_proj.weight"]], 1
        ).norm(dim=1),
        a2,
    )
    pruned = _slice(w, m, idx, H, D)
    small = replace(
        m, embedding_size=e2, encoder_hidden_size=h2, decoder_hidden_size=d2, attention_size=a2
    )
    new_config = replace(config, model=small)
    model = Seq2Seq.from_config(small, len(payload["src_vocab"]), len(payload["tgt_vocab"]))
    model.load_state_dict(pruned)  # strict: every shape must match the smaller config
    dtypes = {name: t.dtype for name, t in payload["model"].items()}
    return {
        **{k: payload[k] for k in Preprocessing.KEYS},
        "config": config_module.to_dict(new_config),
        "model": {name: t.to(dtypes[name]) for name, t in model.state_dict().items()},
        "pruning": {"amount": amount, "criterion": "L2 norm of each unit's incoming weights"},
    }


def _choose_units(w: dict, m, e2: int, h2: int, d2: int) -> dict:
    idx = {
        "src_embedding": _top(w["encoder.embedding.weight"].norm(dim=0), e2),
        "tgt_embedding": _top(w["decoder.embedding.weight"].norm(dim=0), e2),
        "output_units": _top(w["decoder.combine.weight"].norm(dim=1), d2),  # o_t
    }
    H, D = m.encoder_hidden_size, m.decoder_hidden_size
    for layer in range(m.encoder_layers):
        for suffix in ("", "_reverse"):
            names = [
                f"encoder.rnn.{p}_l{layer}{suffix}"
                for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            idx[f"encoder{layer}{suffix}"] = _top(_lstm_scores(w, *names, H), h2)
    for layer in range(m.decoder_layers):
        names = [
            f"decoder.cells.{layer}.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        idx[f"decoder{layer}"] = _top(_lstm_scores(w, *names, D), d2)
    return idx


def _slice(w: dict, m, idx: dict, H: int, D: int) -> dict:
    """Every weight restricted to the kept units: rows they compute, columns they are read by."""
    out = dict(w)

    def take(name: str, rows: Tensor | None = None, columns: Tensor | None = None) -> None:
        if rows is not None:
            out[name] = out[name].index_select(0, rows)
        if columns is not None:
            out[name] = out[name].index_select(1, columns)

    E = m.embedding_size
    take("encoder.embedding.weight", columns=idx["src_embedding"])
    inputs = idx["src_embedding"]  # columns of layer 0's input
    for layer in range(m.encoder_layers):
        for suffix in ("", "_reverse"):
            units, name = idx[f"encoder{layer}{suffix}"], f"l{layer}{suffix}"
            take(f"encoder.rnn.weight_ih_{name}", _gates(units, H), inputs)
            take(f"encoder.rnn.weight_hh_{name}", _gates(units, H), units)
            take(f"encoder.rnn.bias_ih_{name}", _gates(units, H))
            take(f"encoder.rnn.bias_hh_{name}", _gates(units, H))
        inputs = torch.cat(
            [idx[f"encoder{layer}"], idx[f"encoder{layer}_reverse"] + H]
        )  # [fwd; bwd]
    annotations = inputs  # the top layer's 2H outputs h_j, and the final states the bridge reads
    top = idx[f"decoder{m.decoder_layers - 1}"]
    bridge_rows = torch.cat(
        [idx[f"decoder{layer}"] + layer * D for layer in range(m.decoder_layers)]
    )
    for name in ("bridge_h", "bridge_c"):
        take(f"decoder.{name}.weight", bridge_rows, annotations)
        take(f"decoder.{name}.bias", bridge_rows)
    take("decoder.embedding.weight", columns=idx["tgt_embedding"])
    inputs = torch.cat([idx["tgt_embedding"], idx["output_units"] + E])  # [emb(y); o_{t-1}]
    for layer in range(m.decoder_layers):
        units, name = idx[f"decoder{layer}"], f"decoder.cells.{layer}"
        take(f"{name}.weight_ih", _gates(units, D), inputs)
        take(f"{name}.weight_hh", _gates(units, D), units)
        take(f"{name}.bias_ih", _gates(units, D))
        take(f"{name}.bias_hh", _gates(units, D))
        inputs = units
    attention = idx["attention"]
    take("decoder.attention.key_proj.weight", attention, annotations)
    take("decoder.attention.query_proj.weight", attention, top)
    take("decoder.attention.query_proj.bias", attention)
    take("decoder.attention.v.weight", columns=attention)
    take("decoder.combine.weight", idx["output_units"], torch.cat([top, annotations + D]))
    take("decoder.output.weight", columns=idx["output_units"])
    return out


def parameter_count(payload: dict) -> int:
    return sum(t.numel() for t in payload["model"].values())
