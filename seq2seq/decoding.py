"""The inference path: a trained model prepared once for decoding, in fp32 or int8.

Training runs the teacher-forced forward of model.py, where every input is
known in advance. Decoding runs one step at a time without gradients, and
``Decoding(model)`` prepares what makes those steps cheap, once:

- the first layer's embedding gates of every vocabulary entry, a (V, 4D)
  table looked up instead of a product per step;
- the step's products: the decoder's own weights, concatenated once, or
  (``quantize="int8"``) their int8 versions from quantize.py;
- the output layer padded with zero rows to a multiple of 16: matrix kernels
  block output rows by 16, and a vocabulary of 3,963 rows ran about 20%
  slower than one of 3,968 (AVX2 CPU, fp32 and int8 alike); the padded
  logits are cut off after the product.

The step's math is the model's own (``Decoder.step_with``), so decoding and
training cannot drift apart. A ``Decoding`` is a snapshot of the weights:
build a new one after they change (validation builds one per call).
scorer.py wraps it for search; the ONNX export exports its ``encode`` and
``step``.

Shapes: B batch, S source length, D decoder size, E embedding size,
V target vocabulary, V' a shortlist's size.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model import DecoderState, Encoded, Seq2Seq, StepLayers
from seq2seq.quantize import OUTPUT_BLOCK, pad_rows, quantize_decoder

QUANTIZE = (None, "int8")


class PaddedOutput:
    """An fp32 output layer (V, D') run with zero rows up to a multiple of ``OUTPUT_BLOCK``."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        self.weight, self.bias, self.out_features = weight, bias, weight.size(0)
        pad = -self.out_features % OUTPUT_BLOCK
        self.padded_weight = pad_rows(weight, pad)  # (V + pad, D')
        self.padded_bias = None if bias is None else pad_rows(bias, pad)

    def __call__(self, x: Tensor) -> Tensor:
        logits = F.linear(x, self.padded_weight, self.padded_bias)  # (..., V + pad)
        return logits[..., : self.out_features]  # (..., V)

    def rows(self, ids: Tensor) -> Callable[[Tensor], Tensor]:
        """The layer over the outputs ``ids`` only (a vocabulary shortlist): (..., D') -> (..., V')."""
        bias = None if self.bias is None else self.bias[ids]
        return partial(F.linear, weight=self.weight[ids], bias=bias)


class Decoding:
    """``model`` ready for decoding: ``encode``, ``init_state``, ``step``, ``logits``.

    ``autocast_dtype`` is the precision the decoding will run in (bf16 or
    fp16, or None for fp32): the embedding-gate table is computed in it, as
    every step's products are.
    """

    def __init__(
        self,
        model: Seq2Seq,
        quantize: str | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize must be int8 or None, got {quantize!r}")
        model.eval()
        self.model, self.quantize = model, quantize
        decoder = model.decoder
        device = decoder.output.weight.device
        with (
            torch.no_grad(),
            torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
        ):
            self.table = decoder.embedding_gate_table().float()  # (V, 4D)
            if quantize == "int8":
                int8 = quantize_decoder(model)
                self.layers = StepLayers(int8.projections, int8.query, int8.combine)
                self.key_proj, self.pre_output, self.output = (
                    int8.key_proj,
                    int8.pre_output,
                    int8.output,
                )
            else:
                self.layers = decoder.step_layers()
                self.key_proj, self.pre_output = decoder.attention.key_proj, decoder.pre_output
                self.output = None
            if self.output is None:  # fp32, or int8 with tied embeddings
                self.output = PaddedOutput(decoder.output.weight, decoder.output.bias)
        self.vocab_size = decoder.output.out_features

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """Source ids (B, S) and lengths (B,) -> what every step reads."""
        return self.model.encode(src, src_lengths, self.key_proj)

    def init_state(self, encoded: Encoded) -> DecoderState:
        return self.model.decoder.init_state(encoded)

    def step(
        self, prev: Tensor, state: DecoderState, encoded: Encoded
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """Previous tokens (B,) -> attentional output (B, D), new state, attention (B, S)."""
        gates = F.embedding(prev, self.table)  # (B, 4D)
        return self.model.decoder.step_with(self.layers, gates, state, encoded)

    def hidden(self, output: Tensor) -> Tensor:
        """What the output layer reads: o_t (B, D), or its projection (B, E) when tied."""
        return output if self.pre_output is None else self.pre_output(output)

    def logits(self, output: Tensor) -> Tensor:
        """Attentional outputs (..., D) -> logits (..., V)."""
        return self.output(self.hidden(output))

    def output_rows(self, ids: Tensor) -> Callable[[Tensor], Tensor]:
        """The output layer over ``ids`` only: ``hidden`` (..., D') -> logits (..., V')."""
        return self.output.rows(ids)
