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
from seq2seq.data import collate, token_batches
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.quantize import quantize_int8
from seq2seq.scorer import Ensemble, ModelScorer
from seq2seq.search import Hypothesis, beam_search, greedy
from seq2seq.shortlist import Shortlist, ShortlistError

log = logging.getLogger(__name__)


class TranslateError(UserError, ValueError):
    """A decoding option or device that cannot work."""


def model_paths(model: str | Path | Sequence[str | Path]) -> list[str]:
    """``--model a.pt`` or ``--model a.pt b.pt ...`` as a list of paths."""
    return [str(model)] if isinstance(model, (str, Path)) else [str(m) for m in model]


def _check_compatible(first_path, first: LoadedModel, path, other: LoadedModel) -> None:
    """Ensemble members must turn text into the same ids and back."""
    pairs = [
        ("source vocabulary", first.src_vocab.tokens, other.src_vocab.tokens),
        ("target vocabulary", first.tgt_vocab.tokens, other.tgt_vocab.tokens),
        ("source tokenizer", first.src_tokenizer.to_data(), other.src_tokenizer.to_data()),
        ("target tokenizer", first.tgt_tokenizer.to_data(), other.tgt_tokenizer.to_data()),
    ]
    for what, mine, theirs in pairs:
        if mine != theirs:
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

    def __init__(
        self,
        loaded: LoadedModel | Sequence[LoadedModel],
        device: str | torch.device = "cpu",
        precision: str = "auto",
        quantize: str | None = None,
        shortlist: bool = False,
    ):
        if precision not in ("fp32", "bf16", "fp16", "auto"):
            raise TranslateError(f"precision must be fp32, bf16, fp16 or auto, got {precision!r}")
        if quantize not in (None, "int8"):
            raise TranslateError(f"quantize must be int8 or None, got {quantize!r}")
        members = [loaded] if isinstance(loaded, LoadedModel) else list(loaded)
        self.loaded = members[0]  # tokenizers, vocabularies and limits: the same for all
        self.device = device_module.pick_device(device) if isinstance(device, str) else device
        if quantize == "int8" and self.device.type != "cpu":
            raise TranslateError(
                f"int8 quantization is for CPU inference, not {self.device}; use --device cpu"
            )
        self.precision = device_module.resolve_precision(precision, self.device)
        self.autocast_dtype = device_module.autocast_dtype(self.precision)
        self.models = [self._prepare(m.model, quantize) for m in members]
        self.model = self.models[0]
        lexical = None
        if shortlist:  # one table for all members, so they score the same candidates
            if members[0].shortlist is None:
                raise ShortlistError(
                    "this checkpoint has no shortlist; add one with: seq2seq shortlist "
                    "--model CKPT --output OUT.pt, then translate with --model OUT.pt --shortlist"
                )
            lexical = Shortlist(members[0].shortlist)
        scorers = [ModelScorer(model, lexical) for model in self.models]
        self.scorer = scorers[0] if len(scorers) == 1 else Ensemble(scorers)
        # Sources longer than this are truncated: twice the longest training pair.
        self.max_src_len = 2 * self.loaded.config.data.max_len

    def _prepare(self, model: Seq2Seq, quantize: str | None) -> Seq2Seq:
        model = model.to(self.device).eval()
        if quantize == "int8":  # every matrix product of the decoder step (quantize.py)
            model = quantize_int8(model)
        return model

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | Sequence[str | Path],
        device: str | torch.device = "auto",
        precision: str = "auto",
        quantize: str | None = None,
        shortlist: bool = False,
    ) -> Translator:
        """One checkpoint, or several (an ensemble: they must share tokenizers and vocabularies)."""
        paths = model_paths(path)
        members = [checkpoint.load_model(p) for p in paths]
        for other_path, other in zip(paths[1:], members[1:], strict=True):
            _check_compatible(paths[0], members[0], other_path, other)
        return cls(members, device, precision, quantize, shortlist)

    def _decode(self, batch, options: DecodeOptions, keep_attention: bool):
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            if options.beam == 1:
                found = greedy(
                    self.scorer, batch.src, batch.src_lengths, options.max_len_ratio, keep_attention
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
        results: list[list[Hypothesis]] = [[] for _ in lines]
        lengths = [len(s) for s in sources]
        nonempty = [i for i, length in enumerate(lengths) if length > 0]
        for indices in token_batches(lengths, nonempty, options.tokens_per_batch, rng=None):
            batch = collate(sources, None, indices).to(self.device)
            nbest = self._decode(batch, options, keep_attention)
            for i, hypotheses in zip(indices, nbest, strict=True):
                results[i] = hypotheses
            if on_batch is not None:
                on_batch(len(indices))
        if on_batch is not None and len(nonempty) < len(lines):
            on_batch(len(lines) - len(nonempty))
        translations = []
        for tokens, hypotheses in zip(source_tokens, results, strict=True):
            candidates = []
            for h in hypotheses:
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(record["output"]), len(record["source"])
    figure, axes = plt.subplots(figsize=(max(4, 0.45 * columns + 1.5), max(3, 0.4 * rows + 1.5)))
    axes.imshow(record["attention"] or [[0.0]], cmap="Greys", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(columns), record["source"], rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(rows), record["output"], fontsize=8)
    axes.set_xlabel("source")
    axes.set_ylabel("output")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
