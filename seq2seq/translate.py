"""Translate raw text with a trained checkpoint: ``Translator.from_checkpoint(path).translate(lines)``.

Lines are tokenized with the model's own tokenizer, sorted by length and
batched by tokens, decoded (greedy for beam 1, else batched beam search),
put back in input order and detokenized. One output per input, always: an
empty line gives an empty translation, an over-long line is truncated with
a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from seq2seq import checkpoint
from seq2seq import device as device_module
from seq2seq.checkpoint import LoadedModel
from seq2seq.config import DecodeOptions
from seq2seq.decoding import QUANTIZE, Decoding
from seq2seq.errors import UserError
from seq2seq.plots import attention_figure
from seq2seq.scorer import Ensemble, ModelScorer
from seq2seq.search import beam_search, decode_batches, greedy
from seq2seq.shortlist import Shortlist, ShortlistError
from seq2seq.tokenization import mismatched

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


class TranslateError(UserError, ValueError):
    """A decoding option or device that cannot work."""


def model_paths(model: str | Path | Sequence[str | Path]) -> tuple[str, ...]:
    """``--model a.pt`` or ``--model a.pt b.pt ...`` as a tuple of paths."""
    return (str(model),) if isinstance(model, (str, Path)) else tuple(str(m) for m in model)


@dataclass(frozen=True)
class LoadSpec:
    """What to load for decoding and how: the CLI, workers, evaluate, serve and the API
    all take one. ``resolve()`` checks it and fixes ``auto`` once (device, precision), so
    a warning about the precision is printed once, however many processes load it."""

    model: tuple[str, ...]  # one checkpoint, or several: an ensemble
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    precision: str = "auto"  # fp32, bf16, fp16 or auto
    quantize: str | None = None  # None or int8 (CPU only)
    shortlist: bool = False  # the checkpoint's vocabulary shortlist
    resolved: bool = False  # device and precision are concrete and were checked

    @classmethod
    def of(cls, model: str | Path | Sequence[str | Path], **options) -> LoadSpec:
        return cls(model_paths(model), **options)

    def resolve(self) -> LoadSpec:
        if self.resolved:
            return self
        if self.precision not in PRECISIONS:
            raise TranslateError(
                f"precision must be fp32, bf16, fp16 or auto, got {self.precision!r}"
            )
        if self.quantize not in QUANTIZE:
            raise TranslateError(f"quantize must be int8 or None, got {self.quantize!r}")
        device = device_module.pick_device(self.device)
        if self.quantize == "int8" and device.type != "cpu":
            raise TranslateError(
                f"int8 quantization is for CPU inference, not {device}; use --device cpu"
            )
        precision = device_module.resolve_precision(self.precision, device)
        return replace(self, device=str(device), precision=precision, resolved=True)


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


@dataclass
class Candidate:
    text: str
    tokens: list[str]
    log_prob: float  # sum of token log-probabilities
    score: float  # the ranking score: log_prob / length penalty
    attention: Tensor | None  # (output tokens + EOS, source tokens)


@dataclass
class Translation:
    source_tokens: list[str]
    candidates: list[Candidate]  # n-best, best first; empty for an empty input

    @property
    def text(self) -> str:
        return self.candidates[0].text if self.candidates else ""


class Translator:
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

    def translate(
        self, lines: list[str], options: DecodeOptions | None = None, **overrides
    ) -> list[str]:
        """Translate raw lines: ``translate(lines, beam=1)`` or ``translate(lines, options)``."""
        return [t.text for t in self.translate_detailed(lines, options, **overrides)]

    def translate_detailed(
        self,
        lines: list[str],
        options: DecodeOptions | None = None,
        keep_attention: bool = False,
        on_batch: Callable[[int], None] | None = None,
        line_numbers: list[int] | None = None,
        **overrides,
    ) -> list[Translation]:
        """Tokens, scores (and attention) of the ``options.n_best`` candidates of every line.

        ``overrides`` replace fields of ``options`` (``beam=1``, ``n_best=3``, ...);
        ``line_numbers`` name the lines in warnings (default: 1, 2, ...).
        """
        options = replace(options or DecodeOptions(), **overrides)
        loaded = self.loaded
        source_tokens = loaded.src_tokenizer.encode_many(lines)
        for number, tokens in zip(
            line_numbers or range(1, len(lines) + 1), source_tokens, strict=True
        ):
            if len(tokens) > self.max_src_len:
                log.warning(
                    "input line %d has %d tokens; translating its first %d",
                    number,
                    len(tokens),
                    self.max_src_len,
                )
                del tokens[self.max_src_len :]
        sources = [loaded.src_vocab.encode(tokens) for tokens in source_tokens]
        results = decode_batches(
            sources,
            options.tokens_per_batch,
            self.device,
            lambda batch: self._decode(batch, options, keep_attention),
            on_batch,
        )
        translations = []
        for tokens, hypotheses in zip(source_tokens, results, strict=True):
            candidates = []
            for h in hypotheses or []:
                output_tokens = loaded.tgt_vocab.decode(h.tokens)
                text = loaded.tgt_tokenizer.decode(output_tokens)
                candidates.append(Candidate(text, output_tokens, h.log_prob, h.score, h.attention))
            translations.append(Translation(tokens, candidates))
        return translations


def attention_record(index: int, translation: Translation) -> dict:
    """One JSON-lines record: source tokens, output tokens (+ EOS) and the attention matrix."""
    best = translation.candidates[0] if translation.candidates else None
    matrix = best.attention.tolist() if best is not None and best.attention is not None else []
    return {
        "line": index + 1,
        "source": translation.source_tokens,
        "output": (best.tokens + ["</s>"]) if best is not None else [],
        "attention": matrix,  # rows: output tokens, columns: source tokens
    }


def plot_attention(record: dict, path: Path) -> None:
    """Heatmap PNG of one ``attention_record`` (needs matplotlib)."""
    figure = attention_figure(record["source"], record["output"], record["attention"])
    figure.savefig(path, dpi=100)
