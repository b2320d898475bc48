"""Score translation files, or translate a source file and score the result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seq2seq import config as config_module
from seq2seq.config import DecodeOptions
from seq2seq.corpus import read_lines
from seq2seq.errors import UserError
from seq2seq.metrics import Comparison, Score, corpus_score, paired_test
from seq2seq.tracking import log_evaluation
from seq2seq.translation import LoadSpec
from seq2seq.translators import load_translator


class EvaluationError(UserError, ValueError):
    """Hypotheses and references cannot be scored together as given."""


@dataclass
class Report:
    scores: dict[str, Score]
    comparisons: dict[str, Comparison]  # against --baseline, when given
    hypotheses: list[str]

    def to_json(self) -> dict:
        result = {}
        for name, score in self.scores.items():
            entry = {"score": score.score, "signature": score.signature, "text": score.text}
            if score.ci_mean is not None:
                entry["ci95"] = {"mean": score.ci_mean, "halfwidth": score.ci_halfwidth}
            if name in self.comparisons:
                comparison = self.comparisons[name]
                entry["baseline"] = comparison.baseline
                entry["p_value"] = comparison.p_value
            result[name] = entry
        return result


def read_references(paths: list[str | Path], expected: int, hyp_name: str) -> list[list[str]]:
    streams = []
    for path in paths:
        lines = read_lines(path)
        if len(lines) != expected:
            raise EvaluationError(
                f"{hyp_name} has {expected} lines but {path} has {len(lines)}: "
                "hypotheses and references must be line-aligned"
            )
        streams.append(lines)
    return streams


def evaluate_lines(
    hypotheses: list[str],
    references: list[list[str]],
    metrics: list[str],
    confidence: bool = False,
    baseline: list[str] | None = None,
    paired_method: str = "bs",
    tokenize: str | None = None,
    lowercase: bool = False,
) -> Report:
    if not hypotheses:
        raise EvaluationError("nothing to score: the hypotheses are empty")
    scores, comparisons = {}, {}
    for name in metrics:
        scores[name] = corpus_score(
            name, hypotheses, references, confidence, tokenize=tokenize, lowercase=lowercase
        )
        if baseline is not None:
            comparisons[name] = paired_test(
                name,
                hypotheses,
                baseline,
                references,
                paired_method,
                tokenize=tokenize,
                lowercase=lowercase,
            )
    return Report(scores, comparisons, hypotheses)


def evaluate_files(
    hyp: str | Path,
    refs: list[str | Path],
    metrics: list[str],
    baseline: str | Path | None = None,
    **options,
) -> Report:
    hypotheses = read_lines(hyp)
    references = read_references(refs, len(hypotheses), str(hyp))
    baseline_lines = _read_baseline(baseline, len(hypotheses), str(hyp))
    return evaluate_lines(hypotheses, references, metrics, baseline=baseline_lines, **options)


def _read_baseline(baseline: str | Path | None, expected: int, name: str) -> list[str] | None:
    if baseline is None:
        return None
    lines = read_lines(baseline)
    if len(lines) != expected:
        raise EvaluationError(
            f"{name} has {expected} lines but the baseline {baseline} has {len(lines)}"
        )
    return lines


def evaluate_model(
    model: LoadSpec | str | Path,
    src: str | Path,
    refs: list[str | Path],
    metrics: list[str],
    translate_options: DecodeOptions | None = None,
    baseline: str | Path | None = None,
    **options,
) -> Report:
    """Translate ``src`` with ``model`` (a checkpoint, or a ``LoadSpec``) and score the output;
    with ``baseline`` (another system's translations of ``src``), test the difference."""
    sources = read_lines(src)
    references = read_references(refs, len(sources), str(src))
    baseline_lines = _read_baseline(baseline, len(sources), str(src))
    spec = model if isinstance(model, LoadSpec) else LoadSpec.of(model)
    translator = load_translator(spec)
    hypotheses = translator.translate(sources, translate_options)
    return evaluate_lines(hypotheses, references, metrics, baseline=baseline_lines, **options)


def log_to_wandb(
    model: str | Path, src: str | Path, refs: list[str | Path], report: Report
) -> None:
    """Write the scores, signatures and a table of translations into the W&B run that trained ``model``.

    The checkpoint names that run; see ``tracking.log_evaluation`` for where
    the scores go when it cannot be continued (offline).
    """
    from seq2seq import checkpoint  # torch: a checkpoint names the run, an export does not

    payload = checkpoint.load(model)
    config = config_module.from_dict(payload["config"], where=f"{model} (stored config)")
    sources, references = read_lines(src), read_lines(refs[0])
    rows = [list(row) for row in zip(sources, references, report.hypotheses, strict=True)]
    log_evaluation(config.wandb, payload.get("wandb"), report.to_json(), rows, Path(model).parent)
