"""Greedy and beam search: properties that must hold for any model."""

import random

import pytest
import torch

from seq2seq import checkpoint
from seq2seq.config import DecodeOptions
from seq2seq.data import collate
from seq2seq.search import beam_search, greedy, length_penalty
from seq2seq.vocab import EOS_ID

pytestmark = pytest.mark.numerics  # run again under the other CPU kernels (.ci/run)


@pytest.fixture(scope="module")
def toy(toy_checkpoint):
    return checkpoint.load_model(toy_checkpoint)


def toy_sources(loaded, count: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrst"
    lines = [" ".join(rng.choice(letters) for _ in range(rng.randint(1, 15))) for _ in range(count)]
    return [loaded.src_vocab.encode(t) for t in loaded.src_tokenizer.encode_many(lines)]


def as_batch(sources: list[list[int]]):
    batch = collate(sources, None, list(range(len(sources))))
    return batch.src, batch.src_lengths


def test_beam_size_one_equals_greedy(toy):
    src, lengths = as_batch(toy_sources(toy, 30))
    greedy_tokens = [h.tokens for h in greedy(toy.model, src, lengths)]
    beam_tokens = [n[0].tokens for n in beam_search(toy.model, src, lengths, DecodeOptions(beam=1))]
    assert beam_tokens == greedy_tokens


@pytest.mark.parametrize("beam", [1, 5])
def test_translation_does_not_depend_on_the_batch(toy, beam):
    sources = toy_sources(toy, 50, seed=1)
    src, lengths = as_batch(sources)
    together = beam_search(toy.model, src, lengths, DecodeOptions(beam=beam))
    if beam == 1:
        together_greedy = greedy(toy.model, src, lengths)
    for i in (0, 7, 23, 49):
        alone_src, alone_lengths = as_batch([sources[i]])
        alone = beam_search(toy.model, alone_src, alone_lengths, DecodeOptions(beam=beam))[0][0]
        assert alone.tokens == together[i][0].tokens
        assert alone.score == pytest.approx(together[i][0].score, abs=1e-4)
        if beam == 1:
            assert (
                greedy(toy.model, alone_src, alone_lengths)[0].tokens == together_greedy[i].tokens
            )


def test_nbest_is_sorted_and_distinct(toy):
    src, lengths = as_batch(toy_sources(toy, 10, seed=2))
    for nbest in beam_search(toy.model, src, lengths, DecodeOptions(beam=5, n_best=5)):
        assert len(nbest) == 5
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in nbest}) == 5
        for h in nbest:  # the ranking score is the length-normalized log-probability
            assert h.score == pytest.approx(h.log_prob / length_penalty(len(h.tokens) + 1, 0.6))


def test_decoding_stops_at_eos(tiny_model):
    with torch.no_grad():
        tiny_model.decoder.output.bias.fill_(-50.0)
        tiny_model.decoder.output.bias[EOS_ID] = 50.0  # EOS always wins
    src, lengths = as_batch([[5, 6, 7], [8, 9]])
    assert [h.tokens for h in greedy(tiny_model, src, lengths)] == [[], []]
    for nbest in beam_search(tiny_model, src, lengths, DecodeOptions(beam=3)):
        assert nbest[0].tokens == []
        assert EOS_ID not in nbest[0].tokens


def test_output_length_is_bounded(tiny_model):
    with torch.no_grad():
        tiny_model.decoder.output.bias[EOS_ID] = -1e4  # a model that never ends
    src, lengths = as_batch([[5, 6, 7], [8]])
    for ratio in (1.0, 2.0):
        limits = [int(n * ratio) + 5 for n in (3, 1)]
        assert [len(h.tokens) for h in greedy(tiny_model, src, lengths, ratio)] == limits
        beams = beam_search(tiny_model, src, lengths, DecodeOptions(beam=3, max_len_ratio=ratio))
        assert [len(n[0].tokens) for n in beams] == limits


def test_min_len_delays_eos(tiny_model):
    with torch.no_grad():
        tiny_model.decoder.output.bias[EOS_ID] = 50.0
    src, lengths = as_batch([[5, 6, 7]])
    assert (
        len(beam_search(tiny_model, src, lengths, DecodeOptions(beam=2, min_len=4))[0][0].tokens)
        == 4
    )


@pytest.mark.parametrize("min_len", [1, 4, 50])
def test_beam_one_equals_greedy_with_min_len(tiny_model, min_len):
    # EOS is the favourite, so min_len decides the length (50: the length limit does).
    with torch.no_grad():
        tiny_model.decoder.output.bias[EOS_ID] = 3.0
    src, lengths = as_batch([[5, 6, 7], [8, 9], [4, 5, 6, 7, 8, 9]])
    options = DecodeOptions(beam=1, min_len=min_len)
    found = greedy(tiny_model, src, lengths, min_len=min_len)
    beams = beam_search(tiny_model, src, lengths, options)
    assert [h.tokens for h in found] == [n[0].tokens for n in beams]
    assert [h.log_prob for h in found] == pytest.approx([n[0].log_prob for n in beams], abs=1e-5)
    limits = [int(n * 2.0) + 5 for n in (3, 2, 6)]
    assert all(len(h.tokens) >= min(min_len, limit) for h, limit in zip(found, limits, strict=True))


def test_attention_rows_are_distributions(toy):
    src, lengths = as_batch(toy_sources(toy, 4, seed=3))
    for hypothesis, length in zip(
        greedy(toy.model, src, lengths, keep_attention=True), lengths, strict=False
    ):
        assert hypothesis.attention.shape == (len(hypothesis.tokens) + 1, int(length))
        assert torch.allclose(hypothesis.attention.sum(-1), torch.ones(len(hypothesis.tokens) + 1))
    for nbest, length in zip(
        beam_search(toy.model, src, lengths, keep_attention=True), lengths, strict=False
    ):
        attention = nbest[0].attention
        assert attention.shape == (len(nbest[0].tokens) + 1, int(length))
        assert torch.allclose(attention.sum(-1), torch.ones(attention.size(0)), atol=1e-5)


def test_min_len_above_a_sentence_limit_still_gives_a_hypothesis(tiny_model):
    src = torch.tensor([[5, 6, 7], [8, 9, 0]])
    lengths = torch.tensor([3, 2])
    results = beam_search(
        tiny_model, src, lengths, DecodeOptions(beam=3, max_len_ratio=1.0, min_len=50)
    )
    limits = [3 + 5, 2 + 5]  # max_len_ratio x source length + 5
    for hypotheses, limit in zip(results, limits, strict=True):
        assert hypotheses, "no hypothesis: min_len must give way to the length limit"
        assert len(hypotheses[0].tokens) == limit


def test_length_penalty_is_gnmt_s():
    # lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14)
    assert length_penalty(5, 1.0) == pytest.approx(10 / 6)
    assert length_penalty(1, 1.0) == pytest.approx(1.0)
    assert length_penalty(13, 0.5) == pytest.approx(3**0.5)
    assert length_penalty(40, 0.0) == 1.0


@pytest.mark.parametrize("n_best", [1, 3])
def test_stopping_early_never_changes_the_result(toy, n_best):
    src, lengths = as_batch(toy_sources(toy, 40, seed=3))
    options = DecodeOptions(beam=5, n_best=n_best, alpha=0.6)
    early = beam_search(toy.model, src, lengths, options, stop_early=True)
    full = beam_search(toy.model, src, lengths, options, stop_early=False)
    assert [[h.tokens for h in n] for n in early] == [[h.tokens for h in n] for n in full]
    assert [h.score for n in early for h in n] == pytest.approx([h.score for n in full for h in n])
