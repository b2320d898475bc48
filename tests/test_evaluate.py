"""`seq2seq evaluate` agrees with sacrebleu's own command line, and tests significance soundly."""

import json
import random
import subprocess
import sys

import pytest

from seq2seq.evaluate import EvaluationError, evaluate_files

from .conftest import ROOT

REFS = [
    "A man in a red shirt is riding a bike down the street.",
    "Two dogs play in the snow.",
    "The girl with the blue hat smiles at the camera!",
    "A group of people stand outside a building.",
    "An older woman is cooking dinner in a small kitchen.",
    "Kids are jumping into a lake on a sunny day.",
] * 10
HYPS = [
    "A man in a red shirt rides a bicycle down the road.",
    "Two dogs are playing in snow.",
    "The girl in the blue hat is smiling at the camera.",
    "People standing outside of a building.",
    "An old woman cooks dinner in a kitchen.",
    "Children jump into a lake on a sunny day.",
] * 10


@pytest.fixture
def files(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("\n".join(HYPS) + "\n")
    ref.write_text("\n".join(REFS) + "\n")
    return hyp, ref


def sacrebleu_cli(ref, hyp, *args) -> list[dict]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            str(ref),
            "-i",
            str(hyp),
            "-m",
            "bleu",
            "chrf",
            "ter",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def ours(*args) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "seq2seq", "evaluate", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out)


def test_scores_match_sacrebleu_cli_to_the_printed_digit(files):
    hyp, ref = files
    theirs = {r["name"]: r for r in sacrebleu_cli(ref, hyp)}
    mine = ours("--hyp", str(hyp), "--ref", str(ref))
    assert set(mine) == {"bleu", "chrf", "ter"}
    for name, their_name in (("bleu", "BLEU"), ("chrf", "chrF2"), ("ter", "TER")):
        assert round(mine[name]["score"], 1) == theirs[their_name]["score"]
        assert mine[name]["signature"] == theirs[their_name]["signature"]


def test_lowercase_and_tokenizer_options_are_passed_through(files):
    hyp, ref = files
    theirs = sacrebleu_cli(ref, hyp, "-lc", "-tok", "intl")
    mine = ours("--hyp", str(hyp), "--ref", str(ref), "--lowercase", "--tokenize", "intl")
    assert round(mine["bleu"]["score"], 1) == theirs[0]["score"]
    assert mine["bleu"]["signature"] == theirs[0]["signature"]


def test_confidence_interval_brackets_the_score(files):
    hyp, ref = files
    report = evaluate_files(hyp, [ref], ["bleu"], confidence=True)
    bleu = report.scores["bleu"]
    assert bleu.ci_halfwidth > 0
    assert abs(bleu.ci_mean - bleu.score) < bleu.ci_halfwidth


def test_identical_outputs_are_no_evidence_of_a_difference(files):
    hyp, ref = files
    same = evaluate_files(hyp, [ref], ["bleu", "chrf"], baseline=hyp)
    assert all(c.p_value == 1.0 for c in same.comparisons.values())  # our rule, not sacrebleu's


def test_a_one_sentence_change_is_not_significant(files, tmp_path):
    hyp, ref = files
    changed = list(HYPS)
    changed[0] = "Something entirely unrelated happens here."
    other = tmp_path / "other.txt"
    other.write_text("\n".join(changed) + "\n")
    # Paired bootstrap: sacrebleu's approximate randomization counts only differences strictly
    # above the observed one, which a single changed sentence can never exceed.
    report = evaluate_files(other, [ref], ["bleu"], baseline=hyp, paired_method="bs")
    comparison = report.comparisons["bleu"]
    assert comparison.system != comparison.baseline  # sacrebleu's own p-value is used
    assert 0.05 < comparison.p_value < 1.0


def test_significance_self_vs_degraded(files, tmp_path):
    hyp, ref = files
    rng = random.Random(0)
    degraded = list(HYPS)
    for i in rng.sample(range(len(degraded)), len(degraded) // 3):
        degraded[i] = "Something entirely unrelated happens here."
    worse = tmp_path / "worse.txt"
    worse.write_text("\n".join(degraded) + "\n")
    for method in ("bs", "ar"):
        report = evaluate_files(worse, [ref], ["bleu"], baseline=hyp, paired_method=method)
        assert report.comparisons["bleu"].p_value < 0.05


def test_line_count_mismatch_names_both_files(files, tmp_path):
    hyp, _ = files
    short = tmp_path / "short.txt"
    short.write_text("one line\n")
    with pytest.raises(EvaluationError, match=r"hyp\.txt has 60 lines but .*short\.txt has 1"):
        evaluate_files(hyp, [short], ["bleu"])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(EvaluationError, match="empty"):
        evaluate_files(empty, [empty], ["bleu"])


def test_a_model_is_compared_with_a_baseline_file(toy_checkpoint, tmp_path):
    """evaluate --model ... --baseline FILE: the paired test, not a silently ignored flag."""
    from seq2seq.evaluate import evaluate_model

    src, ref = ROOT / "data/toy/test.src", ROOT / "data/toy/test.tgt"
    own = evaluate_model(toy_checkpoint, src, [ref], ["bleu"])
    baseline = tmp_path / "baseline.txt"
    baseline.write_text("".join(h + "\n" for h in own.hypotheses))
    report = evaluate_model(toy_checkpoint, src, [ref], ["bleu"], baseline=baseline)
    comparison = report.comparisons["bleu"]
    assert comparison.baseline == pytest.approx(own.scores["bleu"].score)
    assert comparison.p_value > 0.5  # the same translations: no difference
    baseline.write_text("one line\n")
    with pytest.raises(EvaluationError, match="baseline"):
        evaluate_model(toy_checkpoint, src, [ref], ["bleu"], baseline=baseline)


def test_the_json_report_with_intervals_and_a_baseline_serializes(tmp_path):
    """--json --confidence --baseline: sacrebleu's NumPy floats must not reach json.dumps."""
    hyp, ref, base = tmp_path / "hyp.txt", tmp_path / "ref.txt", tmp_path / "base.txt"
    hyp.write_text("\n".join(HYPS) + "\n")
    ref.write_text("\n".join(REFS) + "\n")
    base.write_text("\n".join(reversed(HYPS)) + "\n")
    report = evaluate_files(hyp, [ref], ["bleu", "chrf"], baseline=base, confidence=True)
    decoded = json.loads(json.dumps(report.to_json()))
    assert set(decoded["bleu"]) >= {"score", "ci95", "baseline", "p_value"}
    assert 0 < decoded["bleu"]["ci95"]["halfwidth"] < decoded["bleu"]["score"]
