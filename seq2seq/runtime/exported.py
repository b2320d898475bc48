"""An export folder opened for decoding: its manifest checked, its two ONNX graphs in ONNX Runtime.

``seq2seq export`` (export.py) writes the folder:

    manifest.json      format version, the source checkpoint's SHA-256, opset, versions,
                       and every file below with its size and SHA-256
    encoder.onnx       (src (B, S), lengths (B,)) -> outputs (B, S, 2H), keys (B, S, A),
                       h (L, B, D), c (L, B, D): the BiLSTM, the attention's U h_j, the bridge
    decoder_step.onnx  (prev (B,), h, c, feed (B, D), outputs, keys, mask (B, S))
                       -> log_probs (B, V), h, c, feed, attention (B, S): one decoder step
    vocab.json         the source and target vocabularies
    tokenizers.json    how text becomes tokens (SentencePiece model files, or spaCy settings)
    *.spm              SentencePiece models, when the model uses them
    decoding.json      decoding defaults and the source length limit

Shapes: B batch (rows), S source length, L decoder layers, D decoder size,
H encoder size per direction, A attention size, V target vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2seq.errors import UserError
from seq2seq.translation import MANIFEST
from seq2seq.vocab import BOS_ID, PAD_ID

FORMAT = 1  # the export format this runtime reads; a newer one needs a newer seq2seq
GRAPHS = ("encoder.onnx", "decoder_step.onnx")


class ExportError(UserError, ValueError):
    """A folder that is not a (complete, readable) export."""


def read_manifest(folder: str | Path, verify: bool = True) -> dict:
    """The manifest of ``folder``, after checking its format and (``verify``) every file's digest."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportError(
            f"{folder}: not a seq2seq export (no {MANIFEST}); make one with "
            "seq2seq export --model CKPT --output DIR"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        version = int(manifest["format"])
    except (ValueError, KeyError, TypeError) as error:
        raise ExportError(
            f"{path}: not a readable manifest ({error}); export the model again"
        ) from None
    if version > FORMAT:
        raise ExportError(
            f"{path}: export format {version} is newer than this seq2seq reads ({FORMAT}); "
            "upgrade seq2seq, or export again with this version"
        )
    for name, entry in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise ExportError(f"{folder}: {name} is missing; export the model again")
        if verify and file.stat().st_size != entry["bytes"]:
            raise ExportError(
                f"{file}: {file.stat().st_size} bytes, the manifest says {entry['bytes']}: the "
                "file is damaged or was replaced; export the model again"
            )
    return manifest


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class State:
    """Decoder state and encoder outputs of R rows (hypotheses), as NumPy arrays."""

    h: np.ndarray  # (L, R, D)
    c: np.ndarray  # (L, R, D)
    feed: np.ndarray  # (R, D) previous attentional output o_{t-1}
    outputs: np.ndarray  # (R, S, 2H)
    keys: np.ndarray  # (R, S, A)
    mask: np.ndarray  # (R, S) True at real source tokens

    def select(self, rows: np.ndarray) -> State:
        """Any rows: drop finished sentences, or repeat sentences into beams."""
        return State(
            self.h[:, rows],
            self.c[:, rows],
            self.feed[rows],
            self.outputs[rows],
            self.keys[rows],
            self.mask[rows],
        )

    def reorder(self, rows: np.ndarray) -> State:
        """Rows of the same sentences (reordered beams): the encoder side is the same for
        every beam of a sentence, so only the decoder state moves."""
        return State(self.h[:, rows], self.c[:, rows], self.feed[rows], *self._encoder())

    def _encoder(self):
        return self.outputs, self.keys, self.mask


class ExportedModel:
    """The two graphs of an export: ``start`` (encode) and ``step``, the search's interface."""

    def __init__(self, folder: str | Path, threads: int | None = None, check: bool = True):
        import onnxruntime

        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder) if check else {}  # unchecked: mid-export
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per core
        options.inter_op_num_threads = 1
        # Basic (constant folding, redundant nodes) decodes as fast as "all" on these graphs
        # (AMD EPYC, AVX-512, 1 thread, beam 5: within 3%) and starts 25 ms sooner.
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.log_severity_level = 3  # errors only
        try:
            self.encoder, self.decoder = (
                onnxruntime.InferenceSession(
                    str(self.folder / name), options, providers=["CPUExecutionProvider"]
                )
                for name in GRAPHS
            )
        except Exception as error:  # ONNX Runtime raises its own exception types
            raise ExportError(
                f"{self.folder}: ONNX Runtime cannot load the graphs ({error})"
            ) from None

    def start(self, src: np.ndarray, src_lengths: np.ndarray) -> State:
        """Source ids (B, S) and lengths (B,) -> the state before the first step."""
        outputs, keys, h, c = self.encoder.run(None, {"src": src, "lengths": src_lengths})
        mask = np.arange(src.shape[1])[None, :] < src_lengths[:, None]  # (B, S)
        feed = np.zeros((src.shape[0], h.shape[2]), dtype=np.float32)  # (B, D)
        return State(h, c, feed, outputs, keys, mask)

    def step(self, prev: np.ndarray, state: State) -> tuple[np.ndarray, State, np.ndarray]:
        """Previous tokens (B,) -> log-probabilities (B, V), the new state, attention (B, S)."""
        log_probs, h, c, feed, weights = self.decoder.run(None, self.step_feeds(prev, state))
        log_probs[:, PAD_ID] = -np.inf  # never produced (the scorer's rule in scorer.py)
        log_probs[:, BOS_ID] = -np.inf
        return log_probs, State(h, c, feed, *state._encoder()), weights

    def step_feeds(self, prev: np.ndarray, state: State) -> dict[str, np.ndarray]:
        """The step graph's inputs by name."""
        return {
            "prev": prev,
            "h": state.h,
            "c": state.c,
            "feed": state.feed,
            "outputs": state.outputs,
            "keys": state.keys,
            "mask": state.mask,
        }
