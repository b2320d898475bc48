"""One self-contained checkpoint file: config, vocabularies, tokenizers and weights.

Everything is stored as plain data (dicts, lists, strings, bytes, tensors), so
a checkpoint loads with ``torch.load(path, weights_only=True)`` and never
unpickles code.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from seq2seq import config as config_module
from seq2seq.config import Config
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.tokenization import Preprocessing, WithPreprocessing, mismatched

FORMAT = "seq2seq-checkpoint"
VERSION = 1


class CheckpointError(UserError, ValueError):
    """A file given as a checkpoint is missing, truncated or not one of ours."""


def save(path: str | Path, payload: dict) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename.

    A crash or a full disk while saving leaves the previous file intact.
    """
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as error:  # torch.load fails on garbage in many ways; any of them means "not ours"
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise CheckpointError(
            f"{path}: not a readable seq2seq checkpoint (truncated or another format: {first_line})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')}, this seq2seq reads {VERSION}"
        )
    return payload


@dataclass
class LoadedModel(WithPreprocessing):
    config: Config
    model: Seq2Seq
    preprocessing: Preprocessing
    shortlist: dict | None = None  # the lexical table of `seq2seq shortlist`, if added


def model_payload(config: Config, model: Seq2Seq, preprocessing: Preprocessing) -> dict:
    """What translating needs, as plain data."""
    return {
        "config": config_module.to_dict(config),
        **preprocessing.to_data(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def load_model(path: str | Path, payload: dict | None = None) -> LoadedModel:
    """Rebuild model, vocabularies and tokenizers from a checkpoint (on the CPU, in eval mode)."""
    payload = payload if payload is not None else load(path)
    config = config_module.from_dict(payload["config"], where=f"{path} (stored config)")
    preprocessing = Preprocessing.from_data(payload)
    model = Seq2Seq.from_config(
        config.model, len(preprocessing.src_vocab), len(preprocessing.tgt_vocab)
    )
    model.load_state_dict(payload["model"])
    model.eval()
    return LoadedModel(config, model, preprocessing, payload.get("shortlist"))


def step_checkpoints(folder: str | Path) -> list[Path]:
    """A run's ``step_N.pt`` files (train.keep_checkpoints), oldest step first."""
    return sorted(Path(folder).glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))


def average(paths: list[str | Path]) -> dict:
    """Average the weights of several checkpoints of one run (Junczys-Dowmunt et al. 2016).

    Config, vocabularies and tokenizers must be identical; the result is a
    model-only payload for ``save``.
    """
    if not paths:
        raise CheckpointError("nothing to average: no checkpoint given")
    payloads = [load(path) for path in paths]
    first = payloads[0]
    for path, payload in zip(paths[1:], payloads[1:], strict=True):
        for key in mismatched(first, payload, ("config", "src_vocab", "tgt_vocab"))[:1]:
            raise CheckpointError(
                f"{path}: its {key} differs from {paths[0]}'s; average checkpoints of one run"
            )
    averaged = {
        name: sum(p["model"][name].double() for p in payloads).div(len(payloads)).to(tensor.dtype)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in first["model"].items()
    }
    keep = ("config", *Preprocessing.KEYS)
    return {
        **{k: first[k] for k in keep},
        "model": averaged,
        "averaged_from": [str(p) for p in paths],
    }
