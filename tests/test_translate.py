"""Translating raw text and files: one output line per input line, in order."""

import json
import subprocess
import sys

import pytest

from seq2seq.config import DecodeOptions
from seq2seq.translate import TranslateError, Translator

from .conftest import ROOT

AWKWARD = [
    "a b c",
    "",
    "   ",
    " ".join("abcdefghijklmnopqrst" * 30),  # far longer than the model's limit
    "日本語 Ελληνικά русский",
    "t s r q",
    "!!! 123 🙂",
]


@pytest.fixture(scope="module")
def translator(toy_checkpoint):
    return Translator.from_checkpoint(toy_checkpoint, device="cpu")


def test_python_api_translates_the_toy_task(translator):
    assert translator.translate(["a b c d", "q r s"], beam=5) == ["d c b a", "s r q"]
    assert translator.translate(["a b c d"], beam=1) == ["d c b a"]


def test_one_output_per_input_in_order(translator):
    for beam in (1, 3):
        outputs = translator.translate(AWKWARD, beam=beam)
        assert len(outputs) == len(AWKWARD)
        assert outputs[1] == outputs[2] == ""
        assert outputs[0] == "c b a" and outputs[5] == "q r s t"


def test_detailed_results_carry_tokens_scores_attention(translator):
    (result,) = translator.translate_detailed(["a b c"], beam=4, n_best=3, keep_attention=True)
    assert len(result.candidates) == 3
    best = result.candidates[0]
    assert best.tokens == ["c", "b", "a"] and best.score <= 0
    assert best.attention.shape == (4, 3)


def test_bad_options_are_refused(translator):
    with pytest.raises(ValueError, match="n-best"):
        translator.translate_detailed(["a"], beam=2, n_best=3)
    with pytest.raises(ValueError, match="beam"):
        translator.translate(["a"], beam=0)


def run_cli(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_cli_file_to_file_with_attention(toy_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(AWKWARD) + "\n", encoding="utf-8")
    out, attention, plots = tmp_path / "out.txt", tmp_path / "att.jsonl", tmp_path / "plots"
    result = run_cli(
        "--model",
        str(toy_checkpoint),
        "--input",
        str(source),
        "--output",
        str(out),
        "--attention",
        str(attention),
        "--plot-attention",
        str(plots),
        "--plot-count",
        "2",
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(AWKWARD)
    assert "input line 4 has" in result.stderr  # the truncation warning
    records = [json.loads(line) for line in attention.read_text().splitlines()]
    assert len(records) == len(AWKWARD) and records[0]["source"] == ["a", "b", "c"]
    assert len(records[0]["attention"]) == len(records[0]["output"])
    assert sorted(p.name for p in plots.iterdir()) == ["attention_0001.png"]  # line 2 is empty


def test_cli_in_a_pipe_and_nbest(toy_checkpoint, tmp_path):
    result = run_cli("--model", str(toy_checkpoint), "--beam", "3", stdin="a b\n\nc d e\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b a\n\ne d c\n"
    shell = f"printf 'a b\\nc d e\\n' | {sys.executable} -m seq2seq translate --model {toy_checkpoint} > {tmp_path}/o"
    subprocess.run(shell, shell=True, check=True, cwd=ROOT, timeout=120)
    assert (tmp_path / "o").read_text() == "b a\ne d c\n"
    nbest = run_cli("--model", str(toy_checkpoint), "--beam", "3", "--n-best", "2", stdin="a b\n")
    rows = [line.split("\t") for line in nbest.stdout.splitlines()]
    assert len(rows) == 2 and rows[0][0] == rows[1][0] == "0" and rows[0][2] == "b a"
    assert float(rows[0][1]) >= float(rows[1][1])


@pytest.mark.numerics
@pytest.mark.parametrize("options", [{"precision": "bf16"}, {"quantize": "int8"}])
def test_reduced_precision_still_translates(toy_checkpoint, options):
    fast = Translator.from_checkpoint(toy_checkpoint, device="cpu", **options)
    assert fast.translate(["a b c d", "q r s"], beam=5) == ["d c b a", "s r q"]


@pytest.mark.numerics
def test_an_ensemble_of_a_model_with_itself_translates_as_the_model(toy_checkpoint):
    lines = ["a b c d", "e f", "", "g h i j k l"]
    single = Translator.from_checkpoint(toy_checkpoint, "cpu")
    pair = Translator.from_checkpoint([toy_checkpoint, toy_checkpoint], "cpu")
    for beam in (1, 3):
        assert pair.translate(lines, beam=beam) == single.translate(lines, beam=beam)


@pytest.mark.numerics
def test_ensemble_beam_one_is_ensemble_greedy(toy_checkpoint, tmp_path):
    import torch

    from seq2seq import checkpoint
    from seq2seq.data import collate
    from seq2seq.search import beam_search, greedy

    # Two different members: the second's weights are perturbed.
    payload = checkpoint.load(toy_checkpoint)
    torch.manual_seed(0)
    payload["model"] = {
        k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
        for k, v in payload["model"].items()
    }
    other = tmp_path / "other.pt"
    checkpoint.save(other, payload)
    ensemble = Translator.from_checkpoint([toy_checkpoint, other], "cpu")
    sources = [ensemble.loaded.src_vocab.encode(s.split()) for s in ["a b c d", "e f", "g h i"]]
    batch = collate(sources, None, range(3))
    by_greedy = greedy(ensemble.scorer, batch.src, batch.src_lengths)
    by_beam = beam_search(ensemble.scorer, batch.src, batch.src_lengths, DecodeOptions(beam=1))
    assert [h.tokens for h in by_greedy] == [n[0].tokens for n in by_beam]
    assert [h.log_prob for h in by_greedy] == pytest.approx([n[0].log_prob for n in by_beam])


def test_an_ensemble_with_another_vocabulary_is_refused(toy_checkpoint, tmp_path):
    from seq2seq import checkpoint

    payload = checkpoint.load(toy_checkpoint)
    payload["tgt_vocab"] = payload["tgt_vocab"][:-1] + ["zzz-other"]
    other = tmp_path / "other.pt"
    checkpoint.save(other, payload)
    with pytest.raises(TranslateError, match="other.pt: its target vocabulary differs"):
        Translator.from_checkpoint([toy_checkpoint, other], "cpu")


@pytest.mark.numerics
def test_shortlist_command_then_translate_with_it(toy_checkpoint, tmp_path):
    out = tmp_path / "with_shortlist.pt"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq",
            "shortlist",
            "--model",
            str(toy_checkpoint),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert made.returncode == 0, made.stderr
    lines = ["a b c d", "e f", ""]
    shortlisted = Translator.from_checkpoint(out, "cpu", shortlist=True).translate(lines)
    assert len(shortlisted) == 3 and shortlisted[2] == ""
    int8 = Translator.from_checkpoint(out, "cpu", quantize="int8", shortlist=True).translate(lines)
    assert len(int8) == 3
    from seq2seq.shortlist import ShortlistError

    with pytest.raises(ShortlistError, match="no shortlist"):
        Translator.from_checkpoint(toy_checkpoint, "cpu", shortlist=True)
