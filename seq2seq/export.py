"""``seq2seq export``: a checkpoint as two ONNX graphs and plain files, for runtime/ (no torch).

What is exported is what decoding.py prepares for decoding, so the graphs
compute what ``seq2seq translate`` computes:

- ``encoder.onnx``: ``Decoding.encode`` and ``init_state``: the BiLSTM over
  the source, the attention keys U h_j (doubled for the sigmoid form of the
  scores, model.py) and the bridge to the decoder's first state.
- ``decoder_step.onnx``: ``Decoding.step`` and the output layer: the looked-up
  embedding gates, input feeding, the LSTM layers, Bahdanau attention, the
  attentional output, the logits and their log-softmax.

Exporters: the step goes through PyTorch's recommended exporter,
``torch.onnx.export(..., dynamo=True)`` (torch.export, then onnxscript). The
encoder cannot yet: torch.export does not trace ``pack_padded_sequence``,
whose batch sizes depend on the data (torch 2.13), and packing is what keeps
padding out of the BiLSTM's states. So the encoder goes through the
TorchScript exporter (``dynamo=False``), which turns the packed LSTM into
ONNX's own ``LSTM`` operator with ``sequence_lens``: the same states, exact.
Both graphs pass ``onnx.checker`` and are compared with PyTorch in the tests.

int8 (``--quantize int8``): onnxruntime's static quantization of the step's
matrix products (``MatMul`` -> int8 with fixed activation scales, calibrated
here on the model's own decoding of synthetic sources): fixed scales keep a
sentence's translation independent of its batch, which a per-call dynamic
scale would not. The encoder stays fp32 (it runs once per sentence).

Not exported yet (refused with a message): ensembles and vocabulary shortlists.

Shapes: B batch, S source length, L decoder layers, D decoder size, V vocabulary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from seq2seq import __version__, checkpoint
from seq2seq.config import DecodeOptions
from seq2seq.decoding import Decoding
from seq2seq.errors import UserError
from seq2seq.model import DecoderState, Encoded
from seq2seq.translation import MANIFEST

log = logging.getLogger(__name__)

FORMAT = 1  # runtime/exported.py reads formats up to its own
OPSET = 18
ENCODER_INPUTS, ENCODER_OUTPUTS = ["src", "lengths"], ["outputs", "keys", "h", "c"]
STEP_INPUTS = ["prev", "h", "c", "feed", "outputs", "keys", "mask"]
STEP_OUTPUTS = ["log_probs", "h_out", "c_out", "feed_out", "attention"]


class ExportFailed(UserError, RuntimeError):
    """The output folder or the model cannot be exported."""


class EncoderGraph(nn.Module):
    """(src (B, S), lengths (B,)) -> outputs (B, S, 2H), keys (B, S, A), h, c (L, B, D)."""

    def __init__(self, decoding: Decoding):
        super().__init__()
        self.decoding, self.model = decoding, decoding.model  # the model: its parameters

    def forward(self, src: Tensor, lengths: Tensor):
        encoded = self.decoding.encode(src, lengths)
        state = self.decoding.init_state(encoded)
        return encoded.outputs, encoded.keys, state.h, state.c


class StepGraph(nn.Module):
    """One decoder step: previous tokens (B,) and state -> log-probabilities (B, V), new state
    (h, c (L, B, D), o_t (B, D)) and attention (B, S)."""

    def __init__(self, decoding: Decoding):
        super().__init__()
        self.decoding, self.model = decoding, decoding.model

    def forward(self, prev, h, c, feed, outputs, keys, mask):
        encoded = Encoded(outputs, keys, mask, (h[0], c[0]))  # final: unused by a step
        output, state, weights = self.decoding.step(prev, DecoderState(h, c, feed), encoded)
        log_probs = torch.log_softmax(self.decoding.logits(output).float(), dim=-1)  # (B, V)
        return log_probs, state.h, state.c, state.feed, weights


def example_inputs(decoding: Decoding) -> tuple[tuple, tuple]:
    """Inputs to trace with: two sentences of different lengths, the longer one second (so
    the encoder's sorting by length is traced as a real reordering)."""
    src = torch.tensor([[4, 5, 0], [4, 5, 6]])  # (2, 3)
    lengths = torch.tensor([2, 3])
    encoded = decoding.encode(src, lengths)
    state = decoding.init_state(encoded)
    prev = torch.tensor([1, 1])
    step = (prev, state.h, state.c, state.feed, encoded.outputs, encoded.keys, encoded.mask)
    return (src, lengths), step


@contextlib.contextmanager
def quiet_exporters():
    """The exporters' notes (deprecations, tracer and optimizer passes, C++ shape-inference
    warnings about prim::PackPadded, which ONNX's LSTM handles) are not the user's concern:
    their Python warnings and logs are muted, and C++ stderr goes to /dev/null meanwhile.
    Errors still raise."""
    disabled = logging.root.manager.disable
    saved = os.dup(2)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as null:
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # onnxscript's passes, onnxruntime's quantizer
            sys.stderr.flush()
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        logging.disable(disabled)


def export_graphs(decoding: Decoding, folder: Path) -> None:
    """Write encoder.onnx and decoder_step.onnx into ``folder`` and check both."""
    import onnx

    encoder_args, step_args = example_inputs(decoding)
    with torch.no_grad(), quiet_exporters():
        torch.onnx.export(
            EncoderGraph(decoding).eval(),
            encoder_args,
            str(folder / "encoder.onnx"),
            input_names=ENCODER_INPUTS,
            output_names=ENCODER_OUTPUTS,
            dynamic_axes={
                "src": {0: "batch", 1: "src_len"},
                "lengths": {0: "batch"},
                "outputs": {0: "batch", 1: "src_len"},
                "keys": {0: "batch", 1: "src_len"},
                "h": {1: "batch"},
                "c": {1: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,  # see the module docstring
        )
        batch, src_len = torch.export.Dim("batch"), torch.export.Dim("src_len")
        by_row, by_layer_row = {0: batch}, {1: batch}
        by_row_and_source = {0: batch, 1: src_len}
        torch.onnx.export(
            StepGraph(decoding).eval(),
            step_args,
            str(folder / "decoder_step.onnx"),
            input_names=STEP_INPUTS,
            output_names=STEP_OUTPUTS,
            dynamic_shapes={
                "prev": by_row,
                "h": by_layer_row,
                "c": by_layer_row,
                "feed": by_row,
                "outputs": by_row_and_source,
                "keys": by_row_and_source,
                "mask": by_row_and_source,
            },
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    for name in ("encoder.onnx", "decoder_step.onnx"):
        onnx.checker.check_model(str(folder / name), full_check=True)


def write_preprocessing(loaded, folder: Path) -> None:
    """Vocabularies and tokenizers as plain files: JSON, and SentencePiece's own model files."""
    vocab = {"src": loaded.src_vocab.tokens, "tgt": loaded.tgt_vocab.tokens}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    settings, written = {}, {}
    for side in ("src", "tgt"):
        data = getattr(loaded, f"{side}_tokenizer").to_data()
        if data["kind"] == "sentencepiece":
            proto = data.pop("model")
            name = written.get(proto) or f"{side}.spm"  # a joint model: one file
            if proto not in written:
                (folder / name).write_bytes(proto)
                written[proto] = name
            data["model"] = name
        settings[side] = data
    (folder / "tokenizers.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")


def export(
    model: str | Path,
    output: str | Path,
    quantize: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export the checkpoint ``model`` into the folder ``output`` (written whole or not at all)."""
    from seq2seq.runtime.exported import file_digest  # numpy only: the digests' one definition

    output = Path(output)
    if quantize not in (None, "int8"):
        raise ExportFailed(f"--quantize must be int8 (or left out), got {quantize!r}")
    if output.exists() and not overwrite:
        raise ExportFailed(f"{output} exists; choose another --output, or add --overwrite")
    loaded = checkpoint.load_model(model)
    if loaded.shortlist is not None:
        log.warning(
            "%s: its vocabulary shortlist is not exported (the full output layer is)", model
        )
    decoding = Decoding(loaded.model)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.parent / f".{output.name}.partial-{os.getpid()}"  # renamed when complete
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        export_graphs(decoding, work)
        if quantize == "int8":
            from seq2seq.export_int8 import quantize_step

            with quiet_exporters():
                quantize_step(work, loaded)
        write_preprocessing(loaded, work)
        limits = {
            "max_src_len": 2 * loaded.config.data.max_len,
            "defaults": asdict(DecodeOptions()),
        }
        (work / "decoding.json").write_text(json.dumps(limits, indent=1), encoding="utf-8")
        files = {
            p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)}
            for p in sorted(work.iterdir())
        }
        manifest = {
            "format": FORMAT,
            "source": {"checkpoint": Path(model).name, "sha256": file_digest(Path(model))},
            "opset": OPSET,
            "quantize": quantize,
            "versions": _versions(),
            "languages": [loaded.config.data.src_lang, loaded.config.data.tgt_lang],
            "files": files,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        work.rename(output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output


def _versions() -> dict:
    from importlib import metadata

    versions = {"torch": torch.__version__, "seq2seq": __version__}
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
