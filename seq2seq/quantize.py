"""int8 arithmetic for decoding on the CPU: every matrix product of the decoder step, and the
encoder's keys. ``quantize_decoder`` turns a model's layers into their int8 versions;
decoding.py decides where they are used.

Weights are int8, symmetric per output row. Every quantized product reads
values bounded by construction, in (-1, 1): LSTM hidden states, tanh outputs
o_t and attention contexts (weighted means of encoder states). So activations
use one fixed scale, 7-bit unsigned over [-1, 1], and a translation never
depends on what else is in the batch (a per-batch dynamic scale would make it
depend). The product runs in oneDNN through PyTorch's own
``onednn::qlinear_pointwise`` (the op Inductor's x86 int8 path uses; no
quantized tensors, no deprecated API).

Why 7 bits: CPUs without AVX-512 VNNI multiply u8 x s8 pairs into int16
sums that saturate with full-range 8-bit activations (measured on an AVX2
AMD EPYC: max error 0.66 on outputs of scale 1.6, against 0.19 with 7 bits,
which is exact integer arithmetic). fbgemm's ``reduce_range`` does the same.

Measured alternatives on that CPU (one thread, 500 x 1024 x 2048): fp32
36 ms, this 18 ms, torch.ao dynamic (fbgemm, deprecated) 15 ms,
``torch._int_mm`` 2,500 ms, ``torch._weight_int8pack_mm`` 1,460 ms,
torchao 0.18 int8 dynamic 888 ms and weight-only 32 ms (scripts/bench_int8.py).

Once per sentence and so left in fp32: the encoder's bidirectional LSTM
(about 3% of beam-search time) and the bridge (its input c is unbounded).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.model import Seq2Seq

LEVELS = 127  # 7-bit activations; see the module docstring
SCALE, ZERO_POINT = 2 / LEVELS, 64  # [-1, 1] -> [0, 127]


OUTPUT_BLOCK = 16  # matrix kernels (oneDNN, MKL) block output rows by 16


def pad_rows(values: Tensor, rows: int, value: float = 0.0) -> Tensor:
    """``values`` (out, ...) with ``rows`` more rows of ``value`` at the end."""
    if rows == 0:
        return values
    return torch.cat([values, values.new_full((rows, *values.shape[1:]), value)])


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with int8 W (per row) and x quantized per call."""

    def __init__(self, quantized: Tensor, scales: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = quantized.shape
        self.register_buffer("quantized", quantized)  # (out, in) int8
        self.register_buffer("scales", scales)  # (out,)
        # oneDNN's kernels block the outputs by 16: an output layer of 3,963 rows (a
        # vocabulary) ran 20% slower than one of 3,968 on an AVX2 CPU. So the packed
        # weight gets zero rows up to a multiple of 16, cut off again after the product.
        pad = -self.out_features % OUTPUT_BLOCK
        self.register_buffer(
            "packed", torch.ops.onednn.qlinear_prepack(pad_rows(quantized, pad), None)
        )
        self.register_buffer("packed_scales", pad_rows(scales, pad, value=1.0))
        self.register_buffer("zero_points", torch.zeros(len(scales) + pad, dtype=torch.int32))
        self.register_buffer("bias", None if bias is None else pad_rows(bias.detach().float(), pad))

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None) -> Int8Linear:
        weight = weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,)
        return cls(torch.round(weight / scales[:, None]).to(torch.int8), scales, bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls.from_weight(linear.weight, linear.bias)

    def rows(self, ids: Tensor) -> Int8Linear:
        """This layer restricted to the outputs ``ids`` (a vocabulary shortlist)."""
        bias = None if self.bias is None else self.bias[: self.out_features][ids]
        return Int8Linear(self.quantized[ids].contiguous(), self.scales[ids], bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()  # (N, in)
        # One fixed scale for inputs in [-1, 1]: a row's result never depends on the other rows.
        quantized = torch.clamp(torch.round(x / SCALE) + ZERO_POINT, 0, LEVELS).to(torch.uint8)
        y = torch.ops.onednn.qlinear_pointwise(
            quantized,
            SCALE,
            ZERO_POINT,
            self.packed,
            self.packed_scales,
            self.zero_points,
            self.bias,
            1.0,
            0,
            torch.float32,
            "none",
            [],
            "",
        )  # (N, out + pad)
        return y[:, : self.out_features].reshape(*shape[:-1], self.out_features)


class Int8Layer:
    """A decoder layer's projection (input, previous h) -> gates, as one int8 product."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        self.linear = Int8Linear.from_weight(weight, bias)

    def __call__(self, x: Tensor, h: Tensor) -> Tensor:
        return self.linear(torch.cat([x, h.to(x.dtype)], dim=-1))  # (B, 4D)


class Int8Decoder(NamedTuple):
    """The int8 versions of the products of decoding; see ``quantize_decoder``."""

    projections: list[Int8Layer]  # per layer: (input, h) -> gates; layer 0's gates from
    #                               the embeddings stay an fp32 table lookup
    query: Int8Linear  # the attention's W s + b (reads h)
    combine: Int8Linear  # W_c (reads [h; context])
    key_proj: Int8Linear  # the attention's U (reads the encoder states)
    pre_output: Int8Linear | None  # tied embeddings: reads o_t
    output: Int8Linear | None  # reads o_t; None with tied embeddings, where the output layer
    #                            reads pre_output's unbounded result and stays fp32


@torch.no_grad()
def quantize_decoder(model: Seq2Seq) -> Int8Decoder:
    """Every product whose input is bounded in (-1, 1), as int8; the model is not changed."""
    decoder = model.decoder
    projections = [Int8Layer(weight, bias) for weight, bias in decoder.layer_weights()]
    attention = decoder.attention
    tied = decoder.pre_output is not None
    return Int8Decoder(
        projections,
        Int8Linear.from_linear(attention.query_proj),
        Int8Linear.from_linear(decoder.combine),
        Int8Linear.from_linear(attention.key_proj),
        Int8Linear.from_linear(decoder.pre_output) if tied else None,
        None if tied else Int8Linear.from_linear(decoder.output),
    )
