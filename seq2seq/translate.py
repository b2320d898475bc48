"""Translate raw text with a trained checkpoint: ``Translator.from_checkpoint(path).translate(lines)``.

Lines are tokenized with the model's own tokenizer, sorted by length and
batched by tokens, decoded (greedy for beam 1, else batched beam search),
put back in input order and detokenized. One output per input, always: an
empty line gives an empty translation, an over-long line is truncated with
a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq import device as device_module
from seq2seq.checkpoint import LoadedModel
from seq2seq.config import DecodeOptions
from seq2seq.decoding import Decoding
from seq2seq.scorer import Ensemble, ModelScorer
from seq2seq.search import beam_search, decode_batches, greedy, sample
from seq2seq.shortlist import Shortlist, ShortlistError
from seq2seq.tokenization import mismatched
from seq2seq.translation import (  # noqa: F401 (the API's names, defined torch-free)
    Candidate,
    LoadSpec,
    TextTranslator,
    TranslateError,
    Translation,
    attention_record,
    model_paths,
    plot_attention,
)

PART_NAMES = {
    "src_vocab": "source vocabulary",
    "tgt_vocab": "target vocabulary",
    "src_tokenizer": "source tokenizer",
    "tgt_tokenizer": "target tokenizer",
}


def _check_compatible(first_path, first: LoadedModel, path, other: LoadedModel) -> None:
    """Ensemble members must turn text into the same ids and back."""
    differ = mismatched(first.preprocessing.to_data(), other.preprocessing.to_data())
    if differ:
        what = PART_NAMES[differ[0]]
        raise TranslateError(
            f"{path}: its {what} differs from {first_path}'s; an ensemble needs models that "
            "share tokenizers and vocabularies (train them with data.vocab_from set to one "
            "checkpoint, or from one prepared folder)"
        )


class Translator(TextTranslator):
    """Decodes with one model, or with an ensemble of models that share tokenizers and vocabularies."""

    def __init__(self, loaded: LoadedModel | Sequence[LoadedModel], spec: LoadSpec):
        spec = spec.resolve()
        self.spec = spec
        members = [loaded] if isinstance(loaded, LoadedModel) else list(loaded)
        self.loaded = members[0]  # tokenizers, vocabularies and limits: the same for all
        self.device = torch.device(spec.device)
        self.precision = spec.precision
        self.autocast_dtype = device_module.autocast_dtype(self.precision)
        self.models = [m.model.to(self.device).eval() for m in members]
        self.model = self.models[0]
        lexical = None
        if spec.shortlist:  # one table for all members, so they score the same candidates
            if members[0].shortlist is None:
                raise ShortlistError(
                    "this checkpoint has no shortlist; add one with: seq2seq shortlist "
                    "--model CKPT --output OUT.pt, then translate with --model OUT.pt --shortlist"
                )
            lexical = Shortlist(members[0].shortlist)
        self.decodings = [Decoding(m, spec.quantize, self.autocast_dtype) for m in self.models]
        scorers = [ModelScorer(decoding, lexical) for decoding in self.decodings]
        self.scorer = scorers[0] if len(scorers) == 1 else Ensemble(scorers)
        # Sources longer than this are truncated: twice the longest training pair.
        self.max_src_len = 2 * self.loaded.config.data.max_len

    @classmethod
    def load(cls, spec: LoadSpec) -> Translator:
        """The checkpoints of ``spec`` (several: an ensemble, sharing tokenizers and vocabularies)."""
        spec = spec.resolve()
        members = [checkpoint.load_model(p) for p in spec.model]
        for other_path, other in zip(spec.model[1:], members[1:], strict=True):
            _check_compatible(spec.model[0], members[0], other_path, other)
        return cls(members, spec)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | Sequence[str | Path],
        device: str | torch.device = "auto",
        precision: str = "auto",
        quantize: str | None = None,
        shortlist: bool = False,
    ) -> Translator:
        """``Translator.load`` with the spec's fields as arguments."""
        return cls.load(
            LoadSpec.of(
                path,
                device=str(device),
                precision=precision,
                quantize=quantize,
                shortlist=shortlist,
            )
        )

    def _decode(self, batch, options: DecodeOptions, keep_attention: bool):
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            if options.sample:
                found = sample(self.scorer, batch.src, batch.src_lengths, options, keep_attention)
                return [[h] for h in found]
            if options.beam == 1:
                found = greedy(
                    self.scorer,
                    batch.src,
                    batch.src_lengths,
                    options.max_len_ratio,
                    keep_attention,
                    options.min_len,
                )
                return [[h] for h in found]
            return beam_search(self.scorer, batch.src, batch.src_lengths, options, keep_attention)

    def decode_sources(self, sources, options: DecodeOptions, keep_attention: bool, on_batch):
        """Id lists -> n-best hypotheses, in length-sorted batches on this device."""
        return decode_batches(
            sources,
            options.tokens_per_batch,
            self.device,
            lambda batch: self._decode(batch, options, keep_attention),
            on_batch,
        )
