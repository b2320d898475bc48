"""Vocabulary: token <-> id, with the special symbols at fixed ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


class Vocab:
    def __init__(self, tokens: list[str]):
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the specials {SPECIALS}")
        self.tokens = list(tokens)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("a vocabulary must not list a token twice")

    @classmethod
    def build(
        cls,
        sentences: Iterable[list[str]],
        max_size: int,
        min_freq: int = 1,
        reserved: Sequence[str] = (),
    ) -> Vocab:
        """Most frequent tokens first (ties broken alphabetically, so builds are deterministic)."""
        return cls.from_counts(
            Counter(token for sentence in sentences for token in sentence),
            max_size,
            min_freq,
            reserved,
        )

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        max_size: int,
        min_freq: int = 1,
        reserved: Sequence[str] = (),
    ) -> Vocab:
        """The vocabulary of ``build``, from token counts: the specials, the ``reserved`` tokens
        (corpus tags: always in, whatever their count), then by count, ties alphabetical."""
        head = list(SPECIALS) + [t for t in dict.fromkeys(reserved) if t not in SPECIALS]
        ranked = sorted(
            (
                token
                for token, count in counts.items()
                if count >= max(min_freq, 1) and token not in head
            ),
            key=lambda token: (-counts[token], token),
        )
        return cls(head + ranked[: max_size - len(head)])

    def with_tokens(self, tokens: Sequence[str]) -> Vocab:
        """This vocabulary with the ``tokens`` it lacks appended at the end (new ids only, so
        a model's embedding rows for the old ids stay valid: corpus tags added in fine-tuning)."""
        return Vocab(self.tokens + [t for t in dict.fromkeys(tokens) if t not in self.ids])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.ids.get(token, UNK_ID) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to tokens, stopping at EOS and skipping padding and BOS."""
        tokens = []
        for i in ids:
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                tokens.append(self.tokens[i])
        return tokens
