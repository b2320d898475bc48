"""Attentional encoder-decoder (Bahdanau, Cho, Bengio 2015) with input feeding (Luong et al. 2015).

Shapes: B batch, S source length, T target length, E embedding size,
H encoder hidden size per direction (outputs are 2H), D decoder hidden size,
A attention size, L decoder layers, V vocabulary size.

The decoder step: Bahdanau et al.'s additive attention over the current state,
Luong et al.'s attentional output (their eq. 5, no bias) and input feeding:

    s_t = LSTM([emb(y_{t-1}); o_{t-1}], s_{t-1})      input feeding of o_{t-1}
    a_t = softmax_j(v . tanh(W s_t + b + U h_j))       additive attention
    c_t = sum_j a_tj h_j
    o_t = tanh(W_c [s_t; c_t])                         attentional output
    logits_t = W_o o_t + b_o
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config import ModelConfig
from seq2seq.recurrence import Dropout, lstm_update, masked_bilstm
from seq2seq.vocab import PAD_ID
from seq2seq.weight_grads import LoopLinear


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Bool mask, True at real tokens: (B,) -> (B, max_len)."""
    positions = torch.arange(max_len, device=lengths.device)  # (max_len,)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, max_len)


class Encoded(NamedTuple):
    """What the decoder needs from the encoder, computed once per batch."""

    outputs: Tensor  # (B, S, 2H) the annotations h_j
    keys: Tensor  # (B, S, A) U h_j, projected once, not once per step
    mask: Tensor  # (B, S) True at real source tokens
    final: tuple[Tensor, Tensor]  # (B, 2H) each: last states, both directions, top layer

    def select(self, indices: Tensor) -> Encoded:
        """Reorder or repeat sentences (beam search)."""
        h, c = self.final
        return Encoded(
            self.outputs.index_select(0, indices),
            self.keys.index_select(0, indices),
            self.mask.index_select(0, indices),
            (h.index_select(0, indices), c.index_select(0, indices)),
        )


class DecoderState(NamedTuple):
    h: Tensor  # (L, B, D)
    c: Tensor  # (L, B, D)
    feed: Tensor  # (B, D) previous attentional output o_{t-1}

    def select(self, indices: Tensor) -> DecoderState:
        """Reorder or repeat hypotheses (beam search)."""
        return DecoderState(
            self.h.index_select(1, indices),
            self.c.index_select(1, indices),
            self.feed.index_select(0, indices),
        )


class StepLayers(NamedTuple):
    """The products of one decoder step; ``Decoder.step_layers`` gives the decoder's own."""

    projections: list[Callable[[Tensor, Tensor], Tensor]]  # per layer: (input, h) -> (B, 4D)
    query: Callable[[Tensor], Tensor]  # the attention's W s + b: (B, D) -> (B, A)
    combine: Callable[[Tensor], Tensor]  # W_c: (B, D + 2H) -> (B, D)


class LstmWeights(NamedTuple):
    """One LSTM layer's (and direction's) parameters, gates in PyTorch's order (i, f, g, o)."""

    weight_ih: Tensor  # (4H, input)
    weight_hh: Tensor  # (4H, H)
    bias_ih: Tensor  # (4H,)
    bias_hh: Tensor  # (4H,)

    @classmethod
    def of_cell(cls, cell: nn.LSTMCell) -> LstmWeights:
        return cls(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)


class Encoder(nn.Module):
    """Bidirectional LSTM over packed sequences, so padding never reaches the states."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        self.rnn = nn.LSTM(
            embedding_size,
            hidden_size,
            num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = Dropout(dropout)

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        if torch.is_grad_enabled():
            mask = length_mask(src_lengths.to(src.device), src.size(1))  # (B, S)
            return self.masked_forward(embedded, mask)
        packed = pack_padded_sequence(
            embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        packed_out, (h, c) = self.rnn(packed)  # h, c: (layers * 2, B, H)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        final_h = torch.cat([h[-2], h[-1]], dim=-1)  # (B, 2H) forward and backward, top layer
        final_c = torch.cat([c[-2], c[-1]], dim=-1)  # (B, 2H)
        return outputs, (final_h, final_c)  # (B, S, 2H)

    def masked_forward(
        self, embedded: Tensor, mask: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``forward``'s result step by step over the padded batch, for training
        (recurrence.masked_bilstm); the parameters are nn.LSTM's own."""
        return masked_bilstm(
            self.lstm, self.rnn.num_layers, self.hidden_size, embedded, mask,
            dropout=self.rnn.dropout if self.training else 0.0,
        )  # fmt: skip

    def lstm(self, layer: int, reverse: bool) -> LstmWeights:
        """The parameters of one layer and direction (nn.LSTM names them by both)."""
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return LstmWeights(*(getattr(self.rnn, name + suffix) for name in names))


class BahdanauAttention(nn.Module):
    """Additive attention, e_j = v . tanh(W s + b + U h_j) (Bahdanau et al. 2015, appendix A.1.2).

    Stateless: ``project_keys`` computes U h_j once per batch, ``forward``
    scores one query against those keys. The scores are computed as
    2 v . sigmoid(2 (W s + b + U h_j)), which is e_j + sum(v) since
    tanh(z) = 2 sigmoid(2z) - 1: a constant per query, so the softmax is the
    same. sigmoid costs a third of what tanh does on a CPU, and this (B, S, A)
    elementwise op is the largest of a decoder step.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int):
        super().__init__()
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False)  # U
        self.query_proj = nn.Linear(query_size, hidden_size)  # W (and the bias b)
        self.v = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, values: Tensor) -> Tensor:
        return project_keys(self.key_proj, values)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        return attend(self.query_proj, self.v, query, keys, values, mask)


def project_keys(key_proj: Callable[[Tensor], Tensor], values: Tensor) -> Tensor:
    """(B, S, 2H) -> (B, S, A): 2 U h_j, doubled once for the sigmoid form of the scores."""
    return key_proj(values) * 2


def attend(
    query_proj: Callable[[Tensor], Tensor],
    v: Callable[[Tensor], Tensor],
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    mask: Tensor,
) -> tuple[Tensor, Tensor]:
    """One query (B, Dq) against projected keys (B, S, A): context (B, 2H), weights (B, S).

    ``query_proj`` is W (with b) and ``v`` the score vector: the attention's own
    layers in training, their int8 versions in int8 decoding (decoding.py).
    """
    query = query_proj(query).unsqueeze(1) * 2  # (B, 1, A): 2 (W s + b)
    hidden = (query + keys).sigmoid_()  # (B, S, A); in place: one temporary less
    scores = v(hidden).squeeze(-1) * 2  # (B, S): e_j + sum(v)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1)  # (B, S) in fp32, exactly 0 at padding
    context = torch.bmm(weights.unsqueeze(1).to(values.dtype), values).squeeze(1)  # (B, 2H)
    return context, weights


def _upper_layer(cell: nn.LSTMCell) -> Callable[[Tensor, Tensor], Tensor]:
    def project(x: Tensor, h: Tensor) -> Tensor:
        return F.linear(x, cell.weight_ih, cell.bias_ih + cell.bias_hh) + F.linear(
            h, cell.weight_hh
        )

    return project


class Decoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        encoder_size: int,
        attention_size: int,
        dropout: float,
        tie_embeddings: bool,
    ):
        super().__init__()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        self.bridge_h = nn.Linear(encoder_size, num_layers * hidden_size)
        self.bridge_c = nn.Linear(encoder_size, num_layers * hidden_size)
        self.cells = nn.ModuleList(
            nn.LSTMCell(embedding_size + hidden_size if i == 0 else hidden_size, hidden_size)
            for i in range(num_layers)
        )
        self.attention = BahdanauAttention(hidden_size, encoder_size, attention_size)
        self.combine = nn.Linear(hidden_size + encoder_size, hidden_size, bias=False)  # W_c
        self.dropout = Dropout(dropout)
        # Tying needs the output layer's input to have the embedding's size.
        self.pre_output = nn.Linear(hidden_size, embedding_size) if tie_embeddings else None
        self.output = nn.Linear(embedding_size if tie_embeddings else hidden_size, vocab_size)
        if tie_embeddings:
            self.output.weight = self.embedding.weight

    def init_state(self, encoded: Encoded) -> DecoderState:
        """Bridge: s_0 = tanh(W_h [h_fwd; h_bwd]), c_0 = W_c [c_fwd; c_bwd], per layer."""
        final_h, final_c = encoded.final
        batch = final_h.size(0)
        h = torch.tanh(self.bridge_h(final_h)).view(batch, self.num_layers, -1)  # (B, L, D)
        c = self.bridge_c(final_c).view(batch, self.num_layers, -1)  # (B, L, D)
        feed = h.new_zeros(batch, self.hidden_size)  # (B, D)
        return DecoderState(h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous(), feed)

    def embedding_gates(self, prev: Tensor) -> Tensor:
        """The first LSTM layer's input gates from the embeddings: (..., ) ids -> (..., 4D).

        Teacher forcing knows all inputs in advance, so ``forward`` computes
        this for every step in one matrix product instead of T small ones.
        """
        cell = self.cells[0]
        embedded = self.dropout(self.embedding(prev))  # (..., E)
        weight = cell.weight_ih[:, : self.embedding.embedding_dim]  # (4D, E)
        return F.linear(embedded, weight, cell.bias_ih + cell.bias_hh)  # (..., 4D)

    def embedding_gate_table(self) -> Tensor:
        """``embedding_gates`` of every vocabulary entry without dropout (V, 4D): a decoder
        that knows no input in advance looks its gates up instead of multiplying."""
        cell = self.cells[0]
        weight = cell.weight_ih[:, : self.embedding.embedding_dim]  # (4D, E)
        return F.linear(self.embedding.weight, weight, cell.bias_ih + cell.bias_hh)  # (V, 4D)

    def layer_weights(self) -> list[tuple[Tensor, Tensor | None]]:
        """Per layer, the gate pre-activations besides the embedding's as one product over
        [input; previous h]: (weight (4D, in + D), bias or None). The input is o_{t-1} for
        layer 0 (whose bias is in the embedding gates), the layer below's h for the others."""
        layers = [(self.recurrent_weight(), None)]
        for cell in list(self.cells)[1:]:
            layers.append(
                (torch.cat([cell.weight_ih, cell.weight_hh], 1), cell.bias_ih + cell.bias_hh)
            )
        return layers

    def recurrent_weight(self) -> Tensor:
        """[W_feed W_hh] (4D, 2D): layer 0's feed and hidden-state products as one."""
        cell = self.cells[0]
        return torch.cat([cell.weight_ih[:, self.embedding.embedding_dim :], cell.weight_hh], 1)

    def projections(self) -> list[Callable[[Tensor, Tensor], Tensor]]:
        """Per layer, (input, its previous h) -> the gate pre-activations (B, 4D) besides the
        embedding's, in fp32: layer 0 as one product over [o_{t-1}; h] (``layer_weights``),
        the others as two."""
        recurrent = self.recurrent_weight()
        first = lambda feed, h: F.linear(torch.cat([feed, h.to(feed.dtype)], dim=-1), recurrent)  # noqa: E731
        return [first] + [_upper_layer(cell) for cell in list(self.cells)[1:]]

    def step_layers(self) -> StepLayers:
        """The products of a step, computed from this decoder's own weights."""
        return StepLayers(self.projections(), self.attention.query_proj, self.combine)

    def loop_layers(self) -> StepLayers:
        """``step_layers`` for a teacher-forced loop that backpropagates: the same products,
        each weight's gradient one product over all steps (weight_grads.py)."""
        recurrent = LoopLinear(self.recurrent_weight())
        first = lambda feed, h: recurrent(torch.cat([feed, h.to(feed.dtype)], dim=-1))  # noqa: E731
        projections = [first]
        for weight, bias in self.layer_weights()[1:]:
            upper = LoopLinear(weight, bias)
            projections.append(lambda x, h, upper=upper: upper(torch.cat([x, h.to(x.dtype)], -1)))
        query = self.attention.query_proj
        return StepLayers(
            projections, LoopLinear(query.weight, query.bias), LoopLinear(self.combine.weight)
        )

    def step_with(
        self, layers: StepLayers, embedding_gates: Tensor, state: DecoderState, encoded: Encoded
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """The step's math, given its embedding gates (B, 4D) and the products to use: the
        decoder's own (training) or decoding.py's (looked-up gates, int8)."""
        gates = embedding_gates + layers.projections[0](state.feed, state.h[0])  # (B, 4D)
        h, c = lstm_update(gates, state.c[0])  # (B, D) each
        new_h, new_c = [h], [c]
        for layer in range(1, self.num_layers):
            gates = layers.projections[layer](self.dropout(h), state.h[layer])  # (B, 4D)
            h, c = lstm_update(gates, state.c[layer])
            new_h.append(h)
            new_c.append(c)
        context, weights = attend(
            layers.query, self.attention.v, h, encoded.keys, encoded.outputs, encoded.mask
        )
        combined = layers.combine(torch.cat([h, context.to(h.dtype)], dim=-1))
        output = self.dropout(torch.tanh(combined))  # (B, D)
        return output, DecoderState(torch.stack(new_h), torch.stack(new_c), output), weights

    def step(
        self, prev: Tensor, state: DecoderState, encoded: Encoded
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """One training step (scheduled sampling): previous tokens (B,) -> attentional output
        (B, D), new state, attention (B, S). Decoding steps through decoding.py instead."""
        return self.step_with(self.step_layers(), self.embedding_gates(prev), state, encoded)

    def logits(self, outputs: Tensor) -> Tensor:
        """Attentional outputs (..., D) -> logits (..., V)."""
        if self.pre_output is not None:
            outputs = self.pre_output(outputs)  # (..., E)
        return self.output(outputs)

    def forward(self, tgt_in: Tensor, encoded: Encoded) -> Tensor:
        """Teacher-forced loop: (B, T) -> attentional outputs (B, T, D)."""
        state = self.init_state(encoded)
        embedding_gates = self.embedding_gates(tgt_in)  # (B, T, 4D), all steps at once
        # Weights concatenated (and cast) once per batch; their gradients summed once.
        layers = self.loop_layers() if torch.is_grad_enabled() else self.step_layers()
        outputs = []
        # unbind, not embedding_gates[:, t]: the backward of T views from one unbind is one
        # stack, where each indexed step's would fill a zero (B, T, 4D) tensor and add it in.
        for gates in embedding_gates.unbind(1):  # (B, 4D) per step
            output, state, _ = self.step_with(layers, gates, state, encoded)
            outputs.append(output)
        return torch.stack(outputs, dim=1)  # (B, T, D)


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def from_config(cls, config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
        encoder = Encoder(
            src_vocab_size,
            config.embedding_size,
            config.encoder_hidden_size,
            config.encoder_layers,
            config.dropout,
        )
        decoder = Decoder(
            tgt_vocab_size,
            config.embedding_size,
            config.decoder_hidden_size,
            config.decoder_layers,
            2 * config.encoder_hidden_size,
            config.attention_size,
            config.dropout,
            config.tie_embeddings,
        )
        model = cls(encoder, decoder)
        for parameter in model.parameters():  # OpenNMT-py's default for RNNs
            nn.init.uniform_(parameter, -0.1, 0.1)
        return model

    def encode(self, src: Tensor, src_lengths: Tensor, key_proj=None) -> Encoded:
        """The encoder's outputs, their attention keys (through ``key_proj``, the attention's
        own U unless decoding replaces it) and the source mask."""
        outputs, final = self.encoder(src, src_lengths)  # (B, S, 2H)
        keys = project_keys(key_proj or self.decoder.attention.key_proj, outputs)  # (B, S, A)
        mask = length_mask(src_lengths.to(src.device), src.size(1))  # (B, S)
        return Encoded(outputs, keys, mask, final)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V); the output layer runs once, after the loop."""
        outputs = self.decoder(tgt_in, self.encode(src, src_lengths))  # (B, T, D)
        return self.decoder.logits(outputs)  # (B, T, V)
