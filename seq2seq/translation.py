"""What a translation is, and what to load for one: shared by both decoding backends.

``translate.py`` decodes with PyTorch from a checkpoint; ``runtime/`` decodes
with ONNX Runtime from a folder that ``seq2seq export`` wrote, without
importing torch. Both take a ``LoadSpec`` and return ``Translation``s, so the
command line, the workers, the server and evaluation serve either one, and
this module imports neither (``translators.load_translator`` picks one).

Shapes: N output tokens (EOS included), S source tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seq2seq.config import DecodeOptions
from seq2seq.errors import UserError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
QUANTIZE = (None, "int8")
MANIFEST = "manifest.json"  # what marks a folder as an export


class TranslateError(UserError, ValueError):
    """A decoding option or device that cannot work."""


def model_paths(model: str | Path | tuple | list) -> tuple[str, ...]:
    """``--model a.pt`` or ``--model a.pt b.pt ...`` as a tuple of paths."""
    return (str(model),) if isinstance(model, (str, Path)) else tuple(str(m) for m in model)


def is_export(path: str | Path) -> bool:
    """A folder (``seq2seq export``'s output) rather than a checkpoint file."""
    return Path(path).is_dir()


def identity_file(model: str | Path) -> Path:
    """The file whose bytes identify a model (a resumed translation checks them): a checkpoint
    itself, or an export's manifest, which holds every file's SHA-256."""
    return Path(model) / MANIFEST if is_export(model) else Path(model)


@dataclass(frozen=True)
class LoadSpec:
    """What to load for decoding and how: the CLI, workers, evaluate, serve and the API
    all take one. ``resolve()`` checks it and fixes ``auto`` once (device, precision), so
    a warning about the precision is printed once, however many processes load it."""

    model: tuple[str, ...]  # one checkpoint or export folder, or several checkpoints: an ensemble
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    precision: str = "auto"  # fp32, bf16, fp16 or auto
    quantize: str | None = None  # None or int8 (CPU only)
    shortlist: bool = False  # the checkpoint's vocabulary shortlist
    resolved: bool = False  # device and precision are concrete and were checked

    @classmethod
    def of(cls, model, **options) -> LoadSpec:
        return cls(model_paths(model), **options)

    @property
    def exported(self) -> bool:
        """Whether this loads an export folder (ONNX Runtime) rather than checkpoints."""
        return any(is_export(path) for path in self.model)

    def resolve(self) -> LoadSpec:
        if self.resolved:
            return self
        if self.precision not in PRECISIONS:
            raise TranslateError(
                f"precision must be fp32, bf16, fp16 or auto, got {self.precision!r}"
            )
        if self.quantize not in QUANTIZE:
            raise TranslateError(f"quantize must be int8 or None, got {self.quantize!r}")
        if self.exported:
            return self._resolve_export()
        from seq2seq import device as device_module  # torch: only for checkpoints

        device = device_module.pick_device(self.device)
        if self.quantize == "int8" and device.type != "cpu":
            raise TranslateError(
                f"int8 quantization is for CPU inference, not {device}; use --device cpu"
            )
        precision = device_module.resolve_precision(self.precision, device)
        return replace(self, device=str(device), precision=precision, resolved=True)

    def _resolve_export(self) -> LoadSpec:
        """An export runs on the CPU in the precision it was exported in."""
        folder = self.model[0]
        if len(self.model) > 1:
            raise TranslateError(
                f"{folder}: an export folder is one model; ensembles are not exported yet "
                "(translate the checkpoints with --model A.pt B.pt)"
            )
        if self.shortlist:
            raise TranslateError(
                f"{folder}: shortlists are not exported yet; translate the checkpoint with "
                "--shortlist, or the export without it"
            )
        if self.quantize is not None:
            raise TranslateError(
                f"{folder}: an export is quantized when it is made (seq2seq export --quantize "
                "int8), not when it is loaded; drop --quantize"
            )
        if self.device not in ("auto", "cpu") or self.precision not in ("auto", "fp32"):
            raise TranslateError(
                f"{folder}: an export runs on the CPU in the precision it was exported in; "
                "drop --device and --precision (or use the checkpoint)"
            )
        return replace(self, device="cpu", precision="fp32", resolved=True)


@dataclass
class Candidate:
    text: str
    tokens: list[str]
    log_prob: float  # sum of token log-probabilities
    score: float  # the ranking score: log_prob / length penalty
    attention: Any  # (N, S): a torch tensor or a numpy array, or None


@dataclass
class Translation:
    source_tokens: list[str]
    candidates: list[Candidate]  # n-best, best first; empty for an empty input

    @property
    def text(self) -> str:
        return self.candidates[0].text if self.candidates else ""


class TextTranslator:
    """Raw lines in, ``Translation``s out: what both backends share. A subclass sets
    ``loaded`` (tokenizers and vocabularies) and ``max_src_len``, and decodes id lists in
    ``decode_sources(sources, options, keep_attention, on_batch)``: one n-best list of
    hypotheses per source (None for an empty one), in input order.

    Lines are tokenized with the model's own tokenizer; a line of more than
    ``max_src_len`` tokens is cut there with a warning naming its number.
    """

    loaded: Any
    max_src_len: int

    def decode_sources(self, sources, options, keep_attention, on_batch) -> list:
        raise NotImplementedError

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
        numbers = line_numbers or range(1, len(lines) + 1)
        for number, tokens in zip(numbers, source_tokens, strict=True):
            if len(tokens) > self.max_src_len:
                log.warning(
                    "input line %d has %d tokens; translating its first %d",
                    number,
                    len(tokens),
                    self.max_src_len,
                )
                del tokens[self.max_src_len :]
        sources = [loaded.src_vocab.encode(tokens) for tokens in source_tokens]
        results = self.decode_sources(sources, options, keep_attention, on_batch)
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
    from seq2seq.plots import attention_figure

    figure = attention_figure(record["source"], record["output"], record["attention"])
    figure.savefig(path, dpi=100)
