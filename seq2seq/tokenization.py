"""Tokenizers that turn raw text into tokens and back into the same raw text.

Two kinds, both stored in a checkpoint as plain data (``to_data``/``from_data``):

- ``SpacyTokenizer``: word level, spaCy's blank rule-based tokenizer
  (``spacy.blank(lang)``, no model download). spaCy records whether a token
  is followed by a space; we keep that by prefixing ``JOINER`` to every token
  that is glued to the previous one, so ``decode`` rebuilds the original
  spacing: ``"Ein Hund."`` -> ``["Ein", "Hund", "￭."]`` -> ``"Ein Hund."``.
- ``SentencePieceTokenizer``: subwords, trained on the training data by
  ``train_sentencepiece``; reversible by construction.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from seq2seq.config import ConfigError, DataConfig
from seq2seq.vocab import Vocab

log = logging.getLogger(__name__)

JOINER = "\uffed"  # "￭", the joiner mark OpenNMT's tokenizer also uses


class Tokenizer(Protocol):
    def encode(self, line: str) -> list[str]: ...
    def encode_many(self, lines: Iterable[str]) -> list[list[str]]: ...
    def decode(self, tokens: list[str]) -> str: ...
    def to_data(self) -> dict: ...


class SpacyTokenizer:
    def __init__(self, lang: str, lowercase: bool = False):
        import spacy  # slow import: only when a spaCy tokenizer is used

        try:
            self._nlp = spacy.blank(lang)
        except (ImportError, KeyError, ValueError) as error:
            raise ValueError(
                f"spaCy has no tokenizer for language {lang!r} ({error}); "
                "use an ISO code spaCy knows (de, en, fr, cs, ...) or 'xx' for any language"
            ) from None
        self.lang = lang
        self.lowercase = lowercase

    def _normalize(self, line: str) -> str:
        line = " ".join(line.split())  # runs of whitespace mean one space
        return line.lower() if self.lowercase else line

    def encode(self, line: str) -> list[str]:
        return self.encode_many([line])[0]

    def encode_many(self, lines: Iterable[str]) -> list[list[str]]:
        texts = (self._normalize(line) for line in lines)
        result = []
        for doc in self._nlp.tokenizer.pipe(texts, batch_size=1000):
            tokens = []
            glued = False
            for token in doc:
                tokens.append(JOINER + token.text if glued else token.text)
                glued = not token.whitespace_
            result.append(tokens)
        return result

    def decode(self, tokens: list[str]) -> str:
        parts = []
        for token in tokens:
            if token.startswith(JOINER):
                parts.append(token[len(JOINER) :])
            else:
                parts.append(" " + token if parts else token)
        return "".join(parts)

    def to_data(self) -> dict:
        return {"kind": "spacy", "lang": self.lang, "lowercase": self.lowercase}


class SentencePieceTokenizer:
    def __init__(self, model_proto: bytes, lowercase: bool = False):
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        self.model_proto = model_proto
        self.lowercase = lowercase

    def encode(self, line: str) -> list[str]:
        return self._sp.encode(line.lower() if self.lowercase else line, out_type=str)

    def encode_many(self, lines: Iterable[str]) -> list[list[str]]:
        lines = [line.lower() for line in lines] if self.lowercase else list(lines)
        return self._sp.encode(lines, out_type=str, num_threads=0)

    def encode_ids_many(self, lines: list[str]) -> list[list[int]]:
        """SentencePiece's own piece ids (see ``piece``), for bulk numericalization."""
        lines = [line.lower() for line in lines] if self.lowercase else lines
        return self._sp.encode(lines, out_type=int, num_threads=0)

    def sample_many(self, lines: list[str], alpha: float, nbest: int, seed: int) -> list[list[str]]:
        """A random segmentation of each line (subword regularization, Kudo 2018), drawn from ``seed``.

        Unigram models sample among the ``nbest`` best segmentations (-1: all)
        with smoothing ``alpha``; BPE models drop each merge with probability
        ``alpha`` (BPE-dropout).
        """
        import sentencepiece

        lines = [line.lower() for line in lines] if self.lowercase else lines
        # SentencePiece seeds a thread's generator when that thread first draws, and each
        # batch encode starts its own threads: so this seed decides the draws (a test checks).
        sentencepiece.set_random_generator_seed(seed)
        return self._sp.encode(
            lines, out_type=str, enable_sampling=True, alpha=alpha, nbest_size=nbest, num_threads=1
        )

    def piece(self, piece_id: int) -> str:
        return self._sp.id_to_piece(piece_id)

    def decode(self, tokens: list[str]) -> str:
        return self._sp.decode_pieces(tokens)

    def piece_count(self) -> int:
        return self._sp.get_piece_size()

    def to_data(self) -> dict:
        return {"kind": "sentencepiece", "model": self.model_proto, "lowercase": self.lowercase}


def train_sentencepiece(
    lines: list[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    lowercase: bool = False,
) -> SentencePieceTokenizer:
    """Train a SentencePiece model in memory on ``lines``.

    ``vocab_size`` is a ceiling: on a corpus too small for it SentencePiece
    stops early (``hard_vocab_limit=False``) and we log the size it reached.
    """
    import sentencepiece

    lines = [line.strip() for line in lines if line.strip()]
    if not lines:
        raise ValueError("cannot train SentencePiece: the training text is empty")
    if lowercase:
        lines = [line.lower() for line in lines]
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        hard_vocab_limit=False,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=2,
        minloglevel=2,  # keep SentencePiece's C++ log off stderr
    )
    tokenizer = SentencePieceTokenizer(proto.getvalue(), lowercase=lowercase)
    if tokenizer.piece_count() < vocab_size:
        log.warning(
            "SentencePiece reached %d pieces, fewer than the %d asked for: the corpus is too small",
            tokenizer.piece_count(),
            vocab_size,
        )
    return tokenizer


def from_data(data: dict) -> Tokenizer:
    if data["kind"] == "spacy":
        return SpacyTokenizer(data["lang"], data["lowercase"])
    if data["kind"] == "sentencepiece":
        return SentencePieceTokenizer(data["model"], data["lowercase"])
    raise ValueError(f"unknown tokenizer kind {data['kind']!r}")


def build_tokenizers(config: DataConfig, src_lines: list[str], tgt_lines: list[str]):
    if config.tokenizer == "spacy":
        tokenizers = []
        for key, lang in (("src_lang", config.src_lang), ("tgt_lang", config.tgt_lang)):
            try:
                tokenizers.append(SpacyTokenizer(lang, config.lowercase))
            except ValueError as error:
                raise ConfigError(f"data.{key}: {error}") from None
        return tuple(tokenizers)
    sp = config.sentencepiece
    options = dict(
        vocab_size=sp.vocab_size,
        model_type=sp.model_type,
        character_coverage=sp.character_coverage,
        lowercase=config.lowercase,
    )
    if sp.joint:
        joint = train_sentencepiece(src_lines + tgt_lines, **options)
        return joint, joint
    return train_sentencepiece(src_lines, **options), train_sentencepiece(tgt_lines, **options)


@dataclass(frozen=True)
class Preprocessing:
    """A model's tokenizers and vocabularies: how raw text becomes ids, and back.

    Stored in checkpoints and prepared folders under the four ``KEYS`` as plain
    data; ``from_data`` is the one place that rebuilds them.
    """

    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocab
    tgt_vocab: Vocab

    KEYS: ClassVar[tuple[str, ...]] = ("src_tokenizer", "tgt_tokenizer", "src_vocab", "tgt_vocab")

    def to_data(self) -> dict:
        return {
            "src_tokenizer": self.src_tokenizer.to_data(),
            "tgt_tokenizer": self.tgt_tokenizer.to_data(),
            "src_vocab": self.src_vocab.tokens,
            "tgt_vocab": self.tgt_vocab.tokens,
        }

    @classmethod
    def from_data(cls, data: Mapping) -> Preprocessing:
        return cls(
            from_data(data["src_tokenizer"]),
            from_data(data["tgt_tokenizer"]),
            Vocab(data["src_vocab"]),
            Vocab(data["tgt_vocab"]),
        )


def mismatched(
    first: Mapping, other: Mapping, keys: Sequence[str] = Preprocessing.KEYS
) -> list[str]:
    """The ``keys`` whose plain data differ between two checkpoints, prepared folders or
    ``Preprocessing.to_data()``: models that are to be ensembled, averaged or trained on a
    prepared folder must turn text into the same ids and back."""
    return [key for key in keys if first[key] != other[key]]


class WithPreprocessing:
    """For a class with a ``preprocessing`` field: its four parts as attributes."""

    preprocessing: Preprocessing

    @property
    def src_vocab(self) -> Vocab:
        return self.preprocessing.src_vocab

    @property
    def tgt_vocab(self) -> Vocab:
        return self.preprocessing.tgt_vocab

    @property
    def src_tokenizer(self) -> Tokenizer:
        return self.preprocessing.src_tokenizer

    @property
    def tgt_tokenizer(self) -> Tokenizer:
        return self.preprocessing.tgt_tokenizer
