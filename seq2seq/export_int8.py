"""int8 for an export: the decoder step's four weight products (``Gemm``) in 8-bit integers.

onnxruntime's static quantization (``quantize_static``): weights int8 per
output row, activations uint8 with one fixed scale per tensor, found by
calibration. Fixed scales keep a sentence's translation independent of what
else is in its batch; a dynamic (per call) scale would not. What the products
read is bounded by construction (LSTM states, tanh outputs o_t, attention
contexts: all in (-1, 1); quantize.py says why that suits int8), so the
calibration needs no corpus: the fp32 export decodes ``CALIBRATION`` random
sources of the model's own vocabulary and the ranges come from its states.
The attention's two products (scores against v, the context's weighted sum)
stay fp32: one of them reads the attention weights, which are not weights.

``reduce_range`` (7-bit activations) because CPUs without AVX-512 VNNI sum
u8 x s8 pairs in int16, which saturates with full-range 8-bit values (the
reason quantize.py uses 7 bits, measured on an AVX2 AMD EPYC).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seq2seq.runtime.exported import ExportedModel
from seq2seq.runtime.search import greedy
from seq2seq.vocab import SPECIALS

CALIBRATION = 64  # sources decoded to calibrate the activation ranges
STEP_FILE = "decoder_step.onnx"


class _StepInputs:
    """onnxruntime's CalibrationDataReader: the step inputs of a greedy decoding, recorded."""

    def __init__(self, model: ExportedModel, src_vocab_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.feeds: list[dict] = []
        recorder = _Recorder(model, self.feeds)
        for _ in range(CALIBRATION // 16):  # batches of 16 sources of 4 to 30 tokens
            lengths = rng.integers(4, 31, size=16)  # (B,)
            src = rng.integers(len(SPECIALS), src_vocab_size, size=(16, int(lengths.max())))
            src[np.arange(src.shape[1])[None, :] >= lengths[:, None]] = 0  # PAD
            greedy(recorder, src.astype(np.int64), lengths.astype(np.int64))
        self._next = iter(self.feeds)

    def get_next(self) -> dict | None:
        return next(self._next, None)


class _Recorder:
    """An ``ExportedModel`` that keeps every step's inputs (for calibration)."""

    def __init__(self, model: ExportedModel, feeds: list):
        self.model, self.feeds = model, feeds

    def start(self, src, src_lengths):
        return self.model.start(src, src_lengths)

    def step(self, prev, state):
        self.feeds.append(self.model.step_feeds(prev, state))
        return self.model.step(prev, state)


def quantize_step(folder: Path, loaded) -> None:
    """Replace ``folder``'s decoder step by its int8 version (the encoder stays fp32)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32 = folder / STEP_FILE
    reader = _StepInputs(ExportedModel(folder, threads=None, check=False), len(loaded.src_vocab))
    int8 = folder / "decoder_step.int8.onnx"
    quantize_static(
        str(fp32),
        str(int8),
        reader,
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=["Gemm"],
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    int8.replace(fp32)
