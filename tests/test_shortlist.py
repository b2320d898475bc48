"""Vocabulary shortlists: the lexical table, the batch's candidates, and search restricted to them."""

import numpy as np
import pytest
import torch

from seq2seq.config import DecodeOptions
from seq2seq.corpus import TokenStore
from seq2seq.scorer import ModelScorer
from seq2seq.search import beam_search, greedy
from seq2seq.shortlist import Shortlist, build_table
from seq2seq.vocab import SPECIALS

from .test_model import random_batch

pytestmark = pytest.mark.numerics  # run again under the other CPU kernels (.ci/run)


def toy_table(per_source: int = 2) -> dict:
    # Source 4 always comes with target 7, source 5 with target 8; 6 with anything.
    src = TokenStore.from_lists([[4, 6], [4], [5, 6], [5], [4, 5]])
    tgt = TokenStore.from_lists([[7, 9], [7], [8, 10], [8], [7, 8]])
    return build_table(
        src, tgt, np.arange(5), src_vocab_size=12, tgt_vocab_size=15, per_source=per_source
    )


def test_the_table_ranks_a_word_s_translation_first():
    table = toy_table()["table"]
    assert table[4, 0] == 7 and table[5, 0] == 8
    assert (table[11] == -1).all()  # a source token never seen has no candidates


def test_a_batch_s_shortlist_is_sorted_and_holds_the_specials_and_its_candidates():
    shortlist = Shortlist(toy_table(), frequent=0)
    ids = shortlist(torch.tensor([[4, 0]]))
    assert ids.tolist() == sorted(ids.tolist())
    assert set(range(len(SPECIALS))) <= set(ids.tolist()) and 7 in ids.tolist()
    assert 8 not in ids.tolist()  # only source 5's partner


def test_a_shortlist_of_everything_changes_nothing(tiny_model):
    src, lengths = random_batch([5, 3])
    everything = ModelScorer(tiny_model, lambda src: torch.arange(15))
    assert [h.tokens for h in greedy(everything, src, lengths)] == [
        h.tokens for h in greedy(tiny_model, src, lengths)
    ]
    full = beam_search(everything, src, lengths, DecodeOptions(beam=3))
    plain = beam_search(tiny_model, src, lengths, DecodeOptions(beam=3))
    assert [n[0].tokens for n in full] == [n[0].tokens for n in plain]
    assert [n[0].score for n in full] == pytest.approx([n[0].score for n in plain], rel=1e-5)


def test_search_produces_only_shortlisted_tokens(tiny_model):
    src, lengths = random_batch([5, 3])
    allowed = torch.tensor([0, 1, 2, 3, 6, 9])
    scorer = ModelScorer(tiny_model, lambda src: allowed)
    for hypothesis in greedy(scorer, src, lengths):
        assert set(hypothesis.tokens) <= set(allowed.tolist())
    for nbest in beam_search(scorer, src, lengths, DecodeOptions(beam=3, n_best=3)):
        assert all(set(h.tokens) <= set(allowed.tolist()) for h in nbest)
