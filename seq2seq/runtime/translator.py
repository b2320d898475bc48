"""``RuntimeTranslator``: translate.py's ``Translator`` over an export folder, without torch.

Same inputs, same outputs: raw lines are tokenized with the model's own
tokenizers, sorted by length and batched by tokens, searched (greedy for beam
1, else beam search), put back in input order and detokenized; an empty line
gives an empty translation, an over-long one is truncated with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from seq2seq.config import DecodeOptions
from seq2seq.corpus import decode_in_batches
from seq2seq.runtime.exported import ExportedModel, ExportError
from seq2seq.runtime.search import beam_search, greedy, sample
from seq2seq.tokenization import Preprocessing, SentencePieceTokenizer, SpacyTokenizer
from seq2seq.translation import LoadSpec, TextTranslator
from seq2seq.vocab import PAD_ID, Vocab


def read_preprocessing(folder: Path) -> Preprocessing:
    """The tokenizers and vocabularies an export stores as plain files."""
    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        settings = json.loads((folder / "tokenizers.json").read_text(encoding="utf-8"))
        src = _tokenizer(folder, settings["src"])
        same = settings["tgt"] == settings["src"]  # a joint SentencePiece model: load it once
        tgt = src if same else _tokenizer(folder, settings["tgt"])
        return Preprocessing(src, tgt, Vocab(vocab["src"]), Vocab(vocab["tgt"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ExportError(
            f"{folder}: cannot read its vocabularies or tokenizers ({error})"
        ) from None


def _tokenizer(folder: Path, settings: dict):
    if settings["kind"] == "spacy":
        return SpacyTokenizer(settings["lang"], settings["lowercase"])
    proto = (folder / settings["model"]).read_bytes()
    return SentencePieceTokenizer(proto, settings["lowercase"])


class RuntimeTranslator(TextTranslator):
    """Decodes with the ONNX graphs of one export folder (``seq2seq export``)."""

    def __init__(self, spec: LoadSpec, threads: int | None = None):
        self.spec = spec.resolve()
        folder = Path(self.spec.model[0])
        self.model = ExportedModel(folder, threads)
        self.loaded = read_preprocessing(folder)  # src/tgt tokenizer and vocabulary
        limits = json.loads((folder / "decoding.json").read_text(encoding="utf-8"))
        self.max_src_len = int(limits["max_src_len"])
        self.quantize = self.model.manifest.get("quantize")

    @classmethod
    def load(cls, spec: LoadSpec, threads: int | None = None) -> RuntimeTranslator:
        return cls(spec, threads)

    def _decode(self, src, lengths, options: DecodeOptions, keep_attention: bool):
        if options.sample:
            return [[h] for h in sample(self.model, src, lengths, options, keep_attention)]
        if options.beam == 1:
            found = greedy(
                self.model, src, lengths, options.max_len_ratio, keep_attention, options.min_len
            )
            return [[h] for h in found]
        return beam_search(self.model, src, lengths, options, keep_attention)

    def decode_sources(self, sources, options: DecodeOptions, keep_attention: bool, on_batch):
        """Id lists -> n-best hypotheses, in length-sorted batches of NumPy arrays."""

        def decode(indices):
            lengths = np.array([len(sources[i]) for i in indices], dtype=np.int64)  # (B,)
            src = np.full((len(indices), lengths.max()), PAD_ID, dtype=np.int64)  # (B, S)
            for row, i in enumerate(indices):
                src[row, : lengths[row]] = sources[i]
            return self._decode(src, lengths, options, keep_attention)

        return decode_in_batches(sources, options.tokens_per_batch, decode, on_batch)
