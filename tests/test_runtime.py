"""The export (seq2seq export) and the runtime that decodes it without torch (runtime/).

Three guards: the exported graphs compute what the PyTorch path computes
(translations equal, scores within 1e-4, attention within 1e-5: ONNX Runtime
and PyTorch sum in their own orders); the NumPy search chooses what search.py
chooses given the same log-probabilities (the conformance test: tokens equal,
scores within 1e-5); and the runtime never imports torch.
"""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from seq2seq import checkpoint
from seq2seq.config import DecodeOptions, ModelConfig
from seq2seq.model import Seq2Seq
from seq2seq.runtime import search as np_search
from seq2seq.runtime.exported import ExportError, read_manifest
from seq2seq.scorer import ModelScorer
from seq2seq.search import beam_search, greedy
from seq2seq.translate import Translator
from seq2seq.translation import LoadSpec
from seq2seq.translators import load_translator

from .conftest import ROOT
from .test_streaming import toy_lines

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="session")
def toy_export(toy_checkpoint, tmp_path_factory):
    from seq2seq.export import export

    return export(toy_checkpoint, tmp_path_factory.mktemp("export") / "toy")


@pytest.fixture(scope="module")
def other_architecture(toy_checkpoint, tmp_path_factory):
    """Random weights in the toy's vocabularies, with what the toy model lacks: two decoder
    layers, tied embeddings, dropout (exported in eval mode) and a SentencePiece-free
    spaCy tokenizer all the same; exported next to its checkpoint."""
    from seq2seq.export import export

    payload = checkpoint.load(toy_checkpoint)
    loaded = checkpoint.load_model(toy_checkpoint)
    config = dataclasses.replace(
        loaded.config,
        model=ModelConfig(
            embedding_size=16,
            encoder_hidden_size=24,
            decoder_hidden_size=32,
            decoder_layers=2,
            attention_size=20,
            dropout=0.3,
            tie_embeddings=True,
        ),
    )
    torch.manual_seed(3)
    model = Seq2Seq.from_config(config.model, len(loaded.src_vocab), len(loaded.tgt_vocab))
    folder = tmp_path_factory.mktemp("other")
    path = folder / "model.pt"
    checkpoint.save(
        path, {**payload, **checkpoint.model_payload(config, model, loaded.preprocessing)}
    )
    return path, export(path, folder / "export")


def assert_same(expected, got, attention=True):
    for want, have in zip(expected, got, strict=True):
        assert [c.tokens for c in want.candidates] == [c.tokens for c in have.candidates]
        for a, b in zip(want.candidates, have.candidates, strict=True):
            assert abs(a.score - b.score) < 1e-4 and abs(a.log_prob - b.log_prob) < 1e-4
            if attention:
                assert np.abs(a.attention.numpy() - b.attention).max() < 1e-5


@pytest.mark.numerics
@pytest.mark.parametrize("beam, n_best", [(1, 1), (5, 1), (4, 3)])
def test_the_export_translates_like_pytorch(toy_checkpoint, toy_export, beam, n_best):
    lines = toy_lines(120, seed=beam)
    pytorch = Translator.from_checkpoint(toy_checkpoint, device="cpu", precision="fp32")
    runtime = load_translator(LoadSpec.of(toy_export))
    options = DecodeOptions(beam=beam, n_best=n_best)
    expected = pytorch.translate_detailed(lines, options, keep_attention=True)
    got = runtime.translate_detailed(lines, options, keep_attention=True)
    assert_same(expected, got)
    assert [t.source_tokens for t in expected] == [t.source_tokens for t in got]


@pytest.mark.numerics
@pytest.mark.parametrize("beam", [1, 3])
def test_layers_tying_and_dropout_export_too(other_architecture, beam):
    path, folder = other_architecture
    lines = toy_lines(40, seed=7)
    pytorch = Translator.from_checkpoint(path, device="cpu", precision="fp32")
    runtime = load_translator(LoadSpec.of(folder))
    options = DecodeOptions(beam=beam, min_len=2, max_len_ratio=1.0)
    assert_same(
        pytorch.translate_detailed(lines, options, keep_attention=True),
        runtime.translate_detailed(lines, options, keep_attention=True),
    )


class NumpyView:
    """A PyTorch scorer seen through NumPy: both searches read the very same log-probabilities."""

    def __init__(self, scorer):
        self.scorer = scorer

    @torch.no_grad()
    def start(self, src, lengths):
        return _ViewState(self.scorer.start(torch.from_numpy(src), torch.from_numpy(lengths)))

    @torch.no_grad()
    def step(self, prev, state):
        log_probs, inner, weights = self.scorer.step(torch.from_numpy(prev), state.inner)
        return log_probs.numpy().copy(), _ViewState(inner), weights.numpy()


@dataclasses.dataclass
class _ViewState:
    inner: object

    def select(self, rows):
        return _ViewState(self.inner.select(torch.from_numpy(np.asarray(rows))))

    def reorder(self, rows):
        return _ViewState(self.inner.reorder(torch.from_numpy(np.asarray(rows))))


@pytest.mark.parametrize(
    "options",
    [
        DecodeOptions(beam=1),
        DecodeOptions(beam=1, min_len=3, max_len_ratio=0.5),
        DecodeOptions(beam=5),
        DecodeOptions(beam=5, n_best=5, alpha=0.0),
        DecodeOptions(beam=3, min_len=4, max_len_ratio=0.7, alpha=1.0),
    ],
)
@pytest.mark.parametrize("stop_early", [True, False])
def test_the_two_searches_conform(tiny_model, options, stop_early):
    """search.py and runtime/search.py over one scorer: the same tokens, the same scores."""
    torch.manual_seed(1)
    lengths = torch.tensor([5, 1, 7, 3, 7, 2])
    src = torch.randint(4, 20, (6, 7))
    src[torch.arange(7)[None, :] >= lengths[:, None]] = 0
    scorer = ModelScorer(tiny_model)
    view = NumpyView(scorer)
    if options.beam == 1:
        if not stop_early:
            pytest.skip("greedy has no early stop")
        want = [
            [h] for h in greedy(scorer, src, lengths, options.max_len_ratio, True, options.min_len)
        ]
        got = [
            [h]
            for h in np_search.greedy(
                view, src.numpy(), lengths.numpy(), options.max_len_ratio, True, options.min_len
            )
        ]
    else:
        want = beam_search(
            scorer, src, lengths, options, keep_attention=True, stop_early=stop_early
        )
        got = np_search.beam_search(view, src.numpy(), lengths.numpy(), options, True, stop_early)
    for w, g in zip(want, got, strict=True):
        assert [h.tokens for h in w] == [h.tokens for h in g]
        assert np.allclose([h.score for h in w], [h.score for h in g], atol=1e-5)
        assert np.allclose([h.log_prob for h in w], [h.log_prob for h in g], atol=1e-5)
        for a, b in zip(w, g, strict=True):
            assert np.allclose(a.attention.numpy(), b.attention, atol=1e-6)


NO_TORCH = """
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
from seq2seq.cli import main
code = main(["translate", "--model", sys.argv[1], "--input", sys.argv[2], "--output", sys.argv[3],
             "--beam", "3", "--workers", sys.argv[4]])
assert code == 0, code
print(sorted(m for m, v in sys.modules.items() if m.split(".")[0] == "torch" and v is not None))
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_runtime_never_imports_torch(toy_checkpoint, toy_export, tmp_path, workers):
    source = tmp_path / "in.txt"
    source.write_text("".join(line + "\n" for line in toy_lines(30)))
    out = tmp_path / "out.txt"
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(toy_export), str(source), str(out), workers],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    expected = Translator.from_checkpoint(toy_checkpoint, device="cpu", precision="fp32")
    assert out.read_text().splitlines() == expected.translate(toy_lines(30), beam=3)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_a_folder_that_is_not_an_export_is_one_line(tmp_path):
    done = run_cli("translate", "--model", str(tmp_path), "--input", "-")
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "not a seq2seq export" in done.stderr and str(tmp_path) in done.stderr


def test_a_newer_format_or_a_missing_file_is_one_line(toy_export, tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(toy_export, newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ExportError, match="format 99 is newer"):
        read_manifest(newer)
    missing = tmp_path / "missing"
    shutil.copytree(toy_export, missing)
    (missing / "decoder_step.onnx").unlink()
    done = run_cli("translate", "--model", str(missing), "--input", "-")
    assert done.returncode != 0 and done.stderr.strip().count("\n") == 0
    assert "decoder_step.onnx is missing" in done.stderr
    cut = tmp_path / "cut"
    shutil.copytree(toy_export, cut)
    (cut / "vocab.json").write_text("[")
    with pytest.raises(ExportError, match="damaged"):
        read_manifest(cut)


def test_export_refuses_what_it_cannot_export(toy_checkpoint, toy_export, tmp_path):
    done = run_cli("export", "--model", str(toy_checkpoint), "--output", str(toy_export))
    assert done.returncode != 0 and "exists" in done.stderr  # nothing overwritten unasked
    done = run_cli("translate", "--model", str(toy_export), str(toy_export), "--input", "-")
    assert "ensembles are not exported yet" in done.stderr
    done = run_cli("translate", "--model", str(toy_export), "--shortlist", "--input", "-")
    assert "shortlists are not exported yet" in done.stderr


@pytest.mark.numerics
def test_int8_export_is_batch_independent_and_close(toy_checkpoint, toy_export, tmp_path):
    from seq2seq.export import export

    folder = export(toy_checkpoint, tmp_path / "int8", quantize="int8")
    assert read_manifest(folder)["quantize"] == "int8"
    runtime = load_translator(LoadSpec.of(folder))
    lines = [line for line in toy_lines(60, seed=5) if line.strip()]
    batched = runtime.translate(lines, beam=3)
    alone = [runtime.translate([line], beam=3)[0] for line in lines]
    assert batched == alone  # fixed activation scales: a batch changes nothing
    fp32 = load_translator(LoadSpec.of(toy_export)).translate(lines, beam=3)
    assert sum(a == b for a, b in zip(batched, fp32, strict=True)) >= 0.9 * len(lines)


def test_evaluate_and_the_api_take_an_export(toy_checkpoint, toy_export, tmp_path):
    from seq2seq.evaluate import evaluate_model

    lines = [line for line in toy_lines(40, seed=2) if line.strip()]
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("".join(line + "\n" for line in lines))
    ref.write_text("".join(" ".join(reversed(line.split())) + "\n" for line in lines))
    options = DecodeOptions(beam=2)
    a = evaluate_model(LoadSpec.of(toy_export), src, [ref], ["bleu"], options)
    b = evaluate_model(
        LoadSpec.of(toy_checkpoint, device="cpu", precision="fp32"), src, [ref], ["bleu"], options
    )
    assert a.hypotheses == b.hypotheses and a.scores["bleu"].score == b.scores["bleu"].score


def test_serve_takes_an_export(toy_checkpoint, toy_export, tmp_path):
    pytest.importorskip("fastapi")
    from .test_serve import start_server, stop_server, translate

    process, url = start_server(toy_export, tmp_path / "server.log", "--beam", "3")
    try:
        lines = toy_lines(20)
        status, answer = translate(url, {"text": lines})
        expected = Translator.from_checkpoint(toy_checkpoint, device="cpu", precision="fp32")
        assert status == 200 and answer["translations"] == expected.translate(lines, beam=3)
    finally:
        assert stop_server(process) == 0, (tmp_path / "server.log").read_text()
