"""Tokenizers give back the raw text; vocabularies are deterministic."""

import pytest

from seq2seq.tokenization import JOINER, SpacyTokenizer, from_data, train_sentencepiece
from seq2seq.vocab import EOS_ID, SPECIALS, UNK_ID, Vocab

LINES = [
    "Ein Hund läuft über die Wiese.",
    'Zwei Männer (in Jacken) spielen "Fußball", oder?',
    "Das ist's: 3,5 km!",
    "Ёлка и 日本語のテキスト",
]


@pytest.mark.parametrize("line", LINES)
def test_spacy_detokenization_restores_the_text(line):
    tokenizer = SpacyTokenizer("de")
    tokens = tokenizer.encode(line)
    assert len(tokens) > 1
    assert tokenizer.decode(tokens) == line


def test_spacy_marks_glued_tokens_and_normalizes_spaces():
    tokenizer = SpacyTokenizer("en")
    assert tokenizer.encode("A dog.") == ["A", "dog", JOINER + "."]
    assert tokenizer.decode(tokenizer.encode("  A   dog  ")) == "A dog"
    assert SpacyTokenizer("en", lowercase=True).encode("A Dog") == ["a", "dog"]


def test_spacy_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="spaCy has no tokenizer for language 'qqq'"):
        SpacyTokenizer("qqq")


def test_sentencepiece_roundtrip_and_serialization():
    corpus = [line for line in LINES for _ in range(30)]
    tokenizer = train_sentencepiece(corpus, vocab_size=60)
    restored = from_data(tokenizer.to_data())
    for line in LINES:
        assert restored.encode(line) == tokenizer.encode(line)
        assert restored.decode(restored.encode(line)) == line


def test_sentencepiece_vocab_size_above_what_data_allows_is_capped():
    tokenizer = train_sentencepiece(["ab ab", "ba"], vocab_size=5000)
    assert tokenizer.piece_count() < 5000
    assert tokenizer.decode(tokenizer.encode("ab ba")) == "ab ba"


def test_vocab_build_limits_and_encoding():
    sentences = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    vocab = Vocab.build(sentences, max_size=len(SPECIALS) + 2)
    assert vocab.tokens == list(SPECIALS) + ["a", "b"]
    assert vocab.encode(["a", "zzz"]) == [4, UNK_ID]
    assert vocab.decode([4, 5, EOS_ID, 4]) == ["a", "b"]
    assert Vocab.build(sentences, max_size=100, min_freq=2).tokens == list(SPECIALS) + ["a", "b"]
    assert Vocab(vocab.tokens) == vocab


def test_preprocessing_round_trips_through_plain_data():
    from seq2seq.tokenization import Preprocessing, SpacyTokenizer
    from seq2seq.vocab import Vocab

    tokenizer = SpacyTokenizer("xx")
    vocab = Vocab.build([["a", "b", "b"]], max_size=10)
    original = Preprocessing(tokenizer, tokenizer, vocab, Vocab.build([["c"]], max_size=10))
    data = original.to_data()
    assert set(data) == set(Preprocessing.KEYS)
    rebuilt = Preprocessing.from_data(data)
    assert rebuilt.src_vocab == original.src_vocab and rebuilt.tgt_vocab == original.tgt_vocab
    assert rebuilt.src_tokenizer.encode("a b.") == tokenizer.encode("a b.")
