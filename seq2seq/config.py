"""Experiment configuration: YAML read once, strictly, into frozen dataclasses.

This module is the schema: the sections and their fields (each with its help text,
which docs/reference/config.md is generated from), the value checks and the checks
of combinations. strict.py does the reading. Every error names the file, the dotted
key and what is allowed, e.g.
``x.yaml: model.hiden_size: unknown key (did you mean hidden_size?)``.
``--set key.path=value`` overrides go through the same checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from seq2seq.strict import Checks, ConfigError, build, parse_overrides, read_yaml, set_path
from seq2seq.vocab import SPECIALS


@dataclass(frozen=True)
class SentencePieceConfig:
    vocab_size: int = 8000  # subword pieces per model, specials included
    joint: bool = True  # one model for both languages (shared subwords)
    model_type: Literal["unigram", "bpe"] = "unigram"  # SentencePiece's segmentation algorithm
    character_coverage: float = 1.0  # share of characters covered; rarer ones become <unk>
    # Subword regularization (Kudo 2018), training text only: every epoch segments it afresh.
    sampling_alpha: float = 0.0  # 0: off; unigram: smoothing (larger: less varied); bpe: dropout
    sampling_nbest: int = -1  # unigram: sample among the n best segmentations; -1: among all


@dataclass(frozen=True)
class CorpusConfig:
    """One of several training corpora (``data.train`` as a list; data.py draws them)."""

    prefix: str = ""  # files {prefix}.{src_suffix} and .{tgt_suffix}, plain or .gz
    weight: float = 1.0  # times each pair is drawn per epoch: 0.5 a random half, 2 twice
    tag: str | None = None  # a token put before each of its source sentences, e.g. "<bt>"


@dataclass(frozen=True)
class DataConfig:
    src_lang: str = "de"  # source language code: file suffix and spaCy tokenizer
    tgt_lang: str = "en"  # target language code
    # A path prefix (files {train}.{src_suffix} and .{tgt_suffix}, plain or .gz), or a list of
    # corpora with their own weight and tag (CorpusConfig).
    train: str | list[CorpusConfig] = ""
    valid: str = ""  # validation prefix: the pairs scored every train.valid_every steps
    prepared: str | None = None  # folder written by `seq2seq prepare`: train from it, memory-mapped
    src_suffix: str | None = None  # file suffix when it differs from the language code
    tgt_suffix: str | None = None  # the same for the target files
    # words (spaCy's blank rule-based tokenizers) or subwords (SentencePiece)
    tokenizer: Literal["spacy", "sentencepiece"] = "sentencepiece"
    sentencepiece: SentencePieceConfig = field(default_factory=SentencePieceConfig)
    lowercase: bool = False  # lowercase both sides before tokenizing (output is lowercase too)
    max_len: int = 100  # training pairs with more tokens on either side are dropped
    src_vocab_size: int = 50000  # maximum vocabulary size, specials included
    tgt_vocab_size: int = 50000  # the same for the target side
    min_freq: int = 1  # tokens seen fewer times in training become <unk>
    # Reuse the tokenizers and vocabularies of this checkpoint instead of building them: models
    # that must share them (ensemble members, distilled students) are trained this way.
    vocab_from: str | None = None

    def corpora(self) -> list[CorpusConfig]:
        """``train`` as a list of corpora: a plain prefix is one corpus of weight 1, no tag."""
        return [CorpusConfig(self.train)] if isinstance(self.train, str) else list(self.train)

    def tags(self) -> list[str]:
        """The corpora's tags, each once, in the order of the corpora."""
        return list(dict.fromkeys(c.tag for c in self.corpora() if c.tag is not None))


@dataclass(frozen=True)
class ModelConfig:
    embedding_size: int = 256  # source and target embeddings (E)
    encoder_hidden_size: int = 256  # per direction
    encoder_layers: int = 1  # stacked bidirectional LSTM layers
    decoder_hidden_size: int = 512  # decoder LSTM state (H)
    decoder_layers: int = 1  # stacked decoder LSTM layers
    attention_size: int = 512  # hidden size of the additive attention's tanh layer
    dropout: float = 0.3  # on embeddings, between stacked layers and on the attentional output
    tie_embeddings: bool = False  # share target embeddings with the output layer


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1  # weights, batch order and dropout: the same seed gives the same run
    batch_tokens: int = 1500  # target tokens per batch (before accumulation)
    accumulate: int = 1  # batches per optimizer step
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # sgd: plain, no momentum
    lr: float = 1e-3  # peak learning rate (after warmup)
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw)
    clip_norm: float = 1.0  # 0 disables clipping
    label_smoothing: float = 0.1  # probability mass spread over the vocabulary (Szegedy et al.)
    # Scheduled sampling (Bengio et al. 2015): each decoder input is the gold previous token
    # with a probability, else the model's own guess (never a special symbol).
    teacher_forcing_ratio: float = 1.0  # that probability, constant; the floor for a decay
    scheduled_sampling: Literal["off", "inverse_sigmoid"] = "off"  # decay from 1 to the ratio
    scheduled_sampling_k: float = 1000.0  # inverse sigmoid k/(k + exp(step/k)): halfway near k ln k
    sampled_tokens: Literal["argmax", "sample"] = "argmax"  # the model's guess: best or sampled
    # plateau: decay on stalled validation; inverse_sqrt: after warmup; cosine: over the budget
    lr_schedule: Literal["constant", "plateau", "inverse_sqrt", "cosine"] = "plateau"
    warmup_steps: int = 0  # linear warmup from 0 to lr over this many steps
    lr_decay_factor: float = 0.5  # plateau: multiply the lr by this ...
    lr_patience: int = 2  # ... after this many validations without improvement
    min_lr: float = 1e-5  # the schedules never go below this
    max_steps: int = 0  # 0: no limit (cosine needs this or max_minutes)
    max_epochs: int = 0  # 0: no limit
    max_minutes: float = 0.0  # wall-clock training budget; 0: none
    valid_every: int = 500  # steps
    valid_metric: Literal["bleu", "loss", "ppl"] = "bleu"  # picks best.pt; bleu: greedy, on valid
    early_stopping_patience: int = 0  # validations without improvement; 0: off
    valid_max_len_ratio: float = 2.0  # greedy output limit = ratio * source length + 5
    log_every: int = 50  # steps between log lines (loss, lr, tokens/s)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"  # auto: bf16 where fast
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    num_threads: int = 0  # CPU threads for torch; 0: all cores
    num_samples: int = 5  # validation translations shown in the log and W&B
    keep_checkpoints: int = 0  # keep the weights of the last K validations (step_N.pt) to average
    # Start from this checkpoint's weights, tokenizers and vocabularies (fine-tuning, e.g. after
    # `seq2seq prune`); its model shapes replace the model section. Optimizer and step start anew.
    # A data.train tag its source vocabulary lacks is added (a new id with a fresh embedding row).
    init_from: str | None = None


@dataclass(frozen=True)
class WandbConfig:
    # None: $WANDB_MODE when set, else online where an API key is configured, else offline
    mode: Literal["offline", "online", "disabled"] | None = None
    project: str = "seq2seq"  # W&B project the run is filed under
    entity: str | None = None  # W&B team or user; None: the default of the API key
    name: str | None = None  # run name; None: the output folder's name
    tags: list[str] = field(default_factory=list)  # W&B tags, to filter runs


def higher_is_better(metric: str) -> bool:
    """For a validation metric (``train.valid_metric``): BLEU rises, losses fall."""
    return metric == "bleu"


@dataclass(frozen=True)
class DecodeOptions:
    """How to search: the one set of defaults for the CLI, the server, evaluate and the API."""

    beam: int = 5  # 1 is greedy search
    alpha: float = 0.6  # GNMT length penalty exponent; 0 turns it off
    n_best: int = 1  # candidates returned per sentence, best first
    max_len_ratio: float = 2.0  # output at most ratio x source length + 5 tokens
    min_len: int = 0  # EOS barred before this many tokens (never past the length limit)
    batch_tokens: int | None = None  # source tokens per batch; None: 8,000 greedy, 1,500 beam
    # Sampling instead of search (sampling.py): one draw per sentence, reproducible for a seed.
    sample: bool = False
    temperature: float = 1.0  # divides the log-probabilities; 0: the argmax (greedy)
    top_k: int = 0  # draw among the K most probable tokens; 0: all
    top_p: float = 1.0  # draw within the smallest set of probability >= p (nucleus)
    seed: int = 0  # sampling: the draws of a sentence depend on this and its source only

    def __post_init__(self):
        if self.beam < 1:
            raise ConfigError(f"beam must be >= 1, got {self.beam}")
        if not 1 <= self.n_best <= self.beam:
            raise ConfigError(
                f"n-best must be between 1 and the beam size ({self.beam}), got {self.n_best}"
            )
        if self.max_len_ratio <= 0 or self.alpha < 0 or self.min_len < 0:
            raise ConfigError("max_len_ratio must be > 0, alpha and min_len >= 0")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ConfigError(f"batch_tokens must be >= 1, got {self.batch_tokens}")
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1")
        if self.sample and self.n_best != 1:
            raise ConfigError("sampling draws one translation per line: n-best must be 1")

    @property
    def tokens_per_batch(self) -> int:
        """What was fastest on a 2-core CPU unless set: beam search holds K rows per sentence."""
        beam_search = self.beam > 1 and not self.sample
        return self.batch_tokens or (1500 if beam_search else 8000)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


# Value checks that types alone cannot express: key -> (predicate, what is allowed).
_POSITIVE = (lambda v: v > 0, "a number > 0")
_NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
_PROBABILITY = (lambda v: 0 <= v < 1, "a number in [0, 1)")
_CHECKS: Checks = {
    "data.train": (
        lambda v: v not in ("", []),
        "a path prefix such as data/multi30k/train, or a list of corpora",
    ),
    "data.valid": (lambda v: v != "", "a path prefix such as data/multi30k/val"),
    "data.sentencepiece.vocab_size": (lambda v: v >= 8, "an integer >= 8"),
    "data.sentencepiece.character_coverage": (lambda v: 0.9 <= v <= 1, "a number in [0.9, 1]"),
    "data.sentencepiece.sampling_alpha": _NON_NEGATIVE,
    "data.sentencepiece.sampling_nbest": (
        lambda v: v == -1 or v >= 2,
        "-1 (all) or an integer >= 2",
    ),
    "data.max_len": _POSITIVE,
    "data.src_vocab_size": (lambda v: v >= 5, "an integer >= 5"),
    "data.tgt_vocab_size": (lambda v: v >= 5, "an integer >= 5"),
    "data.min_freq": _POSITIVE,
    "model.embedding_size": _POSITIVE,
    "model.encoder_hidden_size": _POSITIVE,
    "model.encoder_layers": _POSITIVE,
    "model.decoder_hidden_size": _POSITIVE,
    "model.decoder_layers": _POSITIVE,
    "model.attention_size": _POSITIVE,
    "model.dropout": _PROBABILITY,
    "train.batch_tokens": _POSITIVE,
    "train.accumulate": _POSITIVE,
    "train.lr": _POSITIVE,
    "train.weight_decay": _NON_NEGATIVE,
    "train.clip_norm": _NON_NEGATIVE,
    "train.label_smoothing": _PROBABILITY,
    "train.teacher_forcing_ratio": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "train.scheduled_sampling_k": (lambda v: v >= 1, "a number >= 1"),
    "train.warmup_steps": _NON_NEGATIVE,
    "train.lr_decay_factor": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "train.lr_patience": _NON_NEGATIVE,
    "train.min_lr": _NON_NEGATIVE,
    "train.max_steps": _NON_NEGATIVE,
    "train.max_epochs": _NON_NEGATIVE,
    "train.max_minutes": _NON_NEGATIVE,
    "train.valid_every": _POSITIVE,
    "train.early_stopping_patience": _NON_NEGATIVE,
    "train.valid_max_len_ratio": _POSITIVE,
    "train.log_every": _POSITIVE,
    "train.num_threads": _NON_NEGATIVE,
    "train.num_samples": _NON_NEGATIVE,
    "train.keep_checkpoints": _NON_NEGATIVE,
    "train.device": (
        lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"),
        "auto, cpu, cuda or cuda:N",
    ),
}


def from_dict(values: dict, where: str = "config") -> Config:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of sections (data, model, train, wandb)")
    config = build(Config, values, where, _CHECKS)
    _check_combinations(config, where)
    return config


def _check_corpora(data: DataConfig, where: str) -> None:
    """The entries of ``data.train`` as a list."""
    if isinstance(data.train, str):
        return
    for i, corpus in enumerate(data.train):
        key = f"{where}: data.train[{i}]"
        if not corpus.prefix:
            raise ConfigError(f"{key}.prefix: expected a path prefix such as data/bt/task2")
        if not corpus.weight > 0:
            raise ConfigError(f"{key}.weight: expected a number > 0, got {corpus.weight}")
        tag = corpus.tag
        if tag is not None and (not tag or tag != tag.strip() or " " in tag or tag in SPECIALS):
            raise ConfigError(
                f"{key}.tag: expected one token without spaces, such as <bt> (not one of "
                f"{', '.join(SPECIALS)}), got {tag!r}"
            )
    if data.prepared:
        raise ConfigError(
            f"{where}: data.train: a list of corpora is read from text; data.prepared holds one "
            "corpus (prepare the corpora as one, or train from the list without data.prepared)"
        )
    if data.tags() and data.sentencepiece.sampling_alpha:
        raise ConfigError(
            f"{where}: data.sentencepiece.sampling_alpha: subword sampling with tagged corpora "
            "is not supported yet; set it to 0 or drop the tags"
        )


def _check_combinations(config: Config, where: str) -> None:
    train, data = config.train, config.data
    _check_corpora(data, where)
    sampling = data.sentencepiece.sampling_alpha
    if sampling and data.tokenizer != "sentencepiece":
        raise ConfigError(
            f"{where}: data.sentencepiece.sampling_alpha: subword sampling needs "
            "data.tokenizer: sentencepiece; set it to 0 for spaCy"
        )
    if sampling and data.prepared:
        raise ConfigError(
            f"{where}: data.sentencepiece.sampling_alpha: subword sampling segments the raw text "
            "every epoch; train from data.train instead of data.prepared, or set it to 0"
        )
    if sampling >= 1 and data.sentencepiece.model_type == "bpe":
        raise ConfigError(
            f"{where}: data.sentencepiece.sampling_alpha: for bpe it is a dropout rate in [0, 1), "
            "e.g. 0.1"
        )
    if train.lr_schedule == "cosine" and not (train.max_steps or train.max_minutes):
        raise ConfigError(
            f"{where}: train.lr_schedule: cosine decays over the budget; set train.max_steps or train.max_minutes"
        )
    if train.precision == "fp16" and train.device == "cpu":
        raise ConfigError(f"{where}: train.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")
    if train.scheduled_sampling != "off" and train.teacher_forcing_ratio == 1:
        raise ConfigError(
            f"{where}: train.scheduled_sampling: {train.scheduled_sampling} decays the gold-token "
            "probability from 1 to train.teacher_forcing_ratio; set that below 1, e.g. 0.75"
        )
    if train.min_lr > train.lr:
        raise ConfigError(f"{where}: train.min_lr: must not exceed train.lr ({train.lr})")


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file strictly and apply ``--set`` overrides."""
    path = Path(path)
    values = read_yaml(path)
    where = str(path)
    if overrides:
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: expected a mapping of sections")
        for key, value in parse_overrides(overrides):
            set_path(values, key, value)
        where = f"{path} (with --set)"
    return from_dict(values, where)


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
