"""The config loader rejects what a user could get wrong, naming file and key."""

import pytest

from seq2seq import config as config_module
from seq2seq.config import ConfigError

from .conftest import ROOT


def write(tmp_path, text: str):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


BASE = "data:\n  train: d/train\n  valid: d/val\n"


def test_shipped_configs_load():
    for path in [*(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs").glob("quality/*.yaml")]:
        config_module.load(path)


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, BASE + "model:\n  hiden_size: 3\n")
    with pytest.raises(
        ConfigError, match=r"x\.yaml: model\.hiden_size: unknown key \(did you mean"
    ):
        config_module.load(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"modle: unknown key \(did you mean model\?\)"):
        config_module.load(write(tmp_path, BASE + "modle: {}\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  lr: fast\n", r"train\.lr: expected float, got 'fast'"),
        ("train:\n  max_steps: 1.5\n", r"train\.max_steps: expected int"),
        ("train:\n  max_steps: true\n", r"train\.max_steps: expected int"),
        ("model:\n  dropout: -0.1\n", r"model\.dropout: expected a number in \[0, 1\)"),
        ("train:\n  batch_tokens: 0\n", r"train\.batch_tokens: expected a number > 0"),
        ("train:\n  optimizer: rmsprop\n", r"train\.optimizer: expected one of adam, adamw, sgd"),
        ("train:\n  lr_schedule: cosine\n", r"cosine decays over the budget"),
        ("train:\n  device: tpu\n", r"train\.device: expected auto, cpu, cuda"),
        (
            "wandb:\n  mode: sometimes\n",
            r"wandb\.mode: expected one of offline, online, disabled or null",
        ),
    ],
)
def test_bad_values_are_reported(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        config_module.load(write(tmp_path, BASE + text))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"tokenizer": "spacy", "sentencepiece": {"sampling_alpha": 0.1}},
         r"subword sampling needs data\.tokenizer: sentencepiece"),
        ({"prepared": "p", "sentencepiece": {"sampling_alpha": 0.1}},
         r"train from data\.train instead of data\.prepared"),
        ({"sentencepiece": {"model_type": "bpe", "sampling_alpha": 1.5}},
         r"for bpe it is a dropout rate in \[0, 1\)"),
        ({"sentencepiece": {"sampling_nbest": 1}},
         r"sampling_nbest: expected -1 \(all\) or an integer >= 2"),
        ({"sentencepiece": {"sampling_alpha": -0.1}}, r"sampling_alpha: expected a number >= 0"),
    ],
)  # fmt: skip
def test_subword_sampling_settings_are_checked(data, message):
    with pytest.raises(ConfigError, match=message):
        config_module.from_dict({"data": {"train": "d/train", "valid": "d/val", **data}})


def test_missing_data_paths(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.train: expected a path prefix"):
        config_module.load(write(tmp_path, "model: {}\n"))


def test_overrides_are_applied_and_checked(tmp_path):
    path = write(tmp_path, BASE)
    config = config_module.load(path, ["train.lr=0.5", "model.tie_embeddings=true"])
    assert config.train.lr == 0.5 and config.model.tie_embeddings is True
    with pytest.raises(
        ConfigError, match=r"with --set\): train\.lrr: unknown key \(did you mean lr\?\)"
    ):
        config_module.load(path, ["train.lrr=0.5"])
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        config_module.load(path, ["train.lr"])


def test_roundtrip_through_dict():
    config = config_module.load(ROOT / "configs" / "multi30k_de_en.yaml")
    assert config_module.from_dict(config_module.to_dict(config)) == config


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        config_module.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_module.load(write(tmp_path, "data: [\n"))


def test_config_values_out_of_range(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {train: a, valid: b}\nmodel: {dropout: -0.5}\n")
    with pytest.raises(
        ConfigError, match=r"c\.yaml: model\.dropout: expected a number in \[0, 1\)"
    ):
        config_module.load(path)
