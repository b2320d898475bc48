"""Corpus-level metrics through sacrebleu's Python API, each with its signature.

BLEU (default 13a tokenization, cased), chrF, chrF++ and TER; bootstrap 95%
confidence intervals; paired significance tests of a system against a
baseline (paired bootstrap resampling or approximate randomization), all as
sacrebleu computes them, so numbers match its command-line tool.
"""

from __future__ import annotations

from dataclasses import dataclass

from seq2seq.errors import UserError


class MetricError(UserError, ValueError):
    """An unknown metric name."""


METRICS = ("bleu", "chrf", "chrf++", "ter")


@dataclass(frozen=True)
class Score:
    name: str
    score: float
    signature: str
    ci_mean: float | None = None  # bootstrap mean ...
    ci_halfwidth: float | None = None  # ... and 95% half-width, when asked for
    text: str = ""  # sacrebleu's own one-line rendering, e.g. "BLEU = 35.2 66.1/42.0/..."


@dataclass(frozen=True)
class Comparison:
    name: str
    system: float
    baseline: float
    p_value: float  # probability of a difference this large by chance


def make_metric(name: str, tokenize: str | None = None, lowercase: bool = False):
    """A sacrebleu metric object; ``tokenize`` and ``lowercase`` apply where the metric has them."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    if name == "bleu":
        return BLEU(tokenize=tokenize, lowercase=lowercase)
    if name in ("chrf", "chrf++"):
        return CHRF(word_order=2 if name == "chrf++" else 0, lowercase=lowercase)
    if name == "ter":
        return TER()  # sacrebleu's default: case-insensitive, like its command line
    raise MetricError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")


def corpus_score(
    name: str,
    hypotheses: list[str],
    references: list[list[str]],
    confidence: bool = False,
    n_bootstrap: int = 1000,
    tokenize: str | None = None,
    lowercase: bool = False,
) -> Score:
    """Score ``hypotheses`` against one or more reference streams (each as long as the hypotheses)."""
    metric = make_metric(name, tokenize, lowercase)
    result = metric.corpus_score(
        hypotheses, references, n_bootstrap=n_bootstrap if confidence else 1
    )
    signature = str(metric.get_signature())
    if confidence:
        # sacrebleu's bootstrap gives NumPy floats; plain floats serialize (evaluate --json)
        mean, halfwidth = float(result._mean), float(result._ci)
        return Score(name, float(result.score), signature, mean, halfwidth, result.format())
    return Score(name, result.score, signature, text=result.format())


def bleu(hypotheses: list[str], references: list[str]) -> Score:
    """Detokenized, cased BLEU against a single reference, as validation reports it."""
    return corpus_score("bleu", hypotheses, [references])


def paired_test(
    name: str,
    system: list[str],
    baseline: list[str],
    references: list[list[str]],
    method: str = "bs",
    n_samples: int | None = None,
    tokenize: str | None = None,
    lowercase: bool = False,
) -> Comparison:
    """Is ``system`` different from ``baseline`` on the same references?

    ``method`` is ``bs`` (paired bootstrap resampling, 1,000 samples) or ``ar``
    (approximate randomization, 10,000 samples), sacrebleu's defaults.
    """
    from sacrebleu.significance import PairedTest

    metric = make_metric(name, tokenize, lowercase)
    samples = n_samples or (1000 if method == "bs" else 10000)
    test = PairedTest(
        [("baseline", baseline), ("system", system)],
        {name: metric},
        references=references,
        test_type=method,
        n_samples=samples,
    )
    _, scores = test()  # {"System": names, "<sacrebleu's metric name>": [baseline, system]}
    ((base_result, system_result),) = [v for k, v in scores.items() if k != "System"]
    p_value = system_result.p_value
    if system_result.score == base_result.score:
        # No observed difference is no evidence of one. sacrebleu counts resampled
        # differences strictly above the observed one, so it returns 1 / (n + 1) here.
        p_value = 1.0
    return Comparison(name, float(system_result.score), float(base_result.score), float(p_value))
