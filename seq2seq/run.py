"""A training run: what ``train`` builds before its first step, its resume state, its checkpoints.

``build_run`` reads the data and builds model, optimizer and tracker, or
restores all of them from ``last.pt``. ``Progress`` is everything besides
weights and optimizer state that an exact resume needs (stored as plain
data); ``save_checkpoint`` writes ``best.pt``, ``last.pt`` and ``step_N.pt``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from seq2seq import checkpoint, distributed
from seq2seq import config as config_module
from seq2seq.config import Config, TrainConfig, higher_is_better
from seq2seq.data import TrainingData, build_training_data, corpus_files
from seq2seq.device import resolve_precision
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.step import Trainable, make_trainable
from seq2seq.tokenization import Preprocessing
from seq2seq.tracking import Tracker

log = logging.getLogger(__name__)


class TrainingError(UserError, RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


@dataclass
class Progress:
    step: int = 0  # optimizer updates done
    epoch: int = 0  # position in the data: epoch ...
    batch_in_epoch: int = 0  # ... and the next batch to read in it
    elapsed: float = 0.0  # seconds of training so far (validation included)
    lr_scale: float = 1.0  # reduce-on-plateau multiplier
    best: float | None = None  # best validation score so far
    validations_since_best: int = 0
    bad_steps: int = 0  # steps skipped for a non-finite loss, in total
    wandb_run_id: str | None = None
    history: list[dict] = field(default_factory=list)  # one entry per validation
    rank_digests: list[str] = field(default_factory=list)  # distributed runs: weights per rank

    def record_validation(self, config: TrainConfig, score: float) -> tuple[bool, bool]:
        """Update best score, plateau decay and early stopping; returns (improved, stop)."""
        best = self.best
        higher = higher_is_better(config.valid_metric)
        improved = best is None or (score > best if higher else score < best)
        if improved:
            self.best, self.validations_since_best = score, 0
        else:
            self.validations_since_best += 1
            patience = max(config.lr_patience, 1)
            if config.lr_schedule == "plateau" and self.validations_since_best % patience == 0:
                self.lr_scale *= config.lr_decay_factor
        patience = config.early_stopping_patience
        return improved, patience > 0 and self.validations_since_best >= patience


@dataclass
class Run:
    config: Config
    output_dir: Path
    data: TrainingData
    trainable: Trainable
    tracker: Tracker
    progress: Progress

    @property
    def model(self) -> Seq2Seq:
        return self.trainable.model


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    last = output_dir / "last.pt"
    if resume and not last.exists():
        raise TrainingError(f"--resume: {last} does not exist; start without --resume")
    if not resume and last.exists() and not overwrite:
        raise TrainingError(
            f"{output_dir} already holds a training run ({last.name}); "
            "add --resume to continue it, --overwrite to replace it, or choose another --output-dir"
        )


def remove_old_run(output_dir: Path) -> None:
    """For ``--overwrite``: the replaced run's checkpoints go first. Its ``step_N.pt`` of
    higher steps would otherwise outlive this run's pruning and join ``seq2seq average
    --run``, and its ``last.pt`` would be what a Ctrl-C before the first validation offers
    to resume."""
    for path in [
        output_dir / "best.pt",
        output_dir / "last.pt",
        *checkpoint.step_checkpoints(output_dir),
    ]:
        path.unlink(missing_ok=True)


def follow_init_from(config: Config) -> Config:
    """With ``train.init_from``, the model section becomes that checkpoint's (e.g. pruned) shapes."""
    if not config.train.init_from:
        return config
    stored = checkpoint.load(config.train.init_from)
    where = f"{config.train.init_from} (stored config)"
    model = config_module.from_dict(stored["config"], where=where).model
    if model != config.model:
        log.info("train.init_from: model section taken from %s", config.train.init_from)
    return replace(config, model=model)


def build_run(config: Config, output_dir: Path, resume: bool, device: torch.device) -> Run:
    """Data, model, optimizer, tracker and progress: new, or as ``last.pt`` left them.

    ``config`` has been through ``follow_init_from``.
    """
    cfg = config.train
    world = distributed.world_size()
    torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // world))
    precision = resolve_precision(cfg.precision, device)
    payload = checkpoint.load(output_dir / "last.pt") if resume else None
    progress = Progress(**payload["progress"]) if payload else Progress()
    source = None if resume else (cfg.init_from or config.data.vocab_from)
    start = checkpoint.load(source) if source else None  # tokenizers, vocabularies (and weights)
    data = _load_data(config, payload, output_dir, start)
    if distributed.is_main():
        (output_dir / "config.yaml").write_text(config_module.dump(config), encoding="utf-8")
    trainable = _build_trainable(config, data, device, precision, payload)
    if cfg.init_from and not resume:
        _load_init_weights(trainable.model, start["model"])
        log.info("weights from %s", cfg.init_from)
    previous_run = payload.get("wandb") if payload else None
    tracker = Tracker(
        config.wandb,
        config_module.to_dict(config),
        output_dir,
        previous_run,
        enabled=distributed.is_main(),
    )
    progress.wandb_run_id = tracker.run_id
    setup = {
        "parameters": sum(p.numel() for p in trainable.model.parameters()),
        "src_vocab_size": len(data.src_vocab),
        "tgt_vocab_size": len(data.tgt_vocab),
        "train_pairs": len(data.train_indices),
        "device": str(device),
        "precision": precision,
        "world_size": world,
    }
    tracker.describe(setup, corpus_files(config.data) if tracker.active else {})
    return Run(config, output_dir, data, trainable, tracker, progress)


def _load_data(
    config: Config, payload: dict | None, output_dir: Path, start: dict | None
) -> TrainingData:
    """Tokenizers and vocabularies: from ``last.pt`` when resuming, from the ``start`` checkpoint
    (``data.vocab_from`` or ``train.init_from``) when given, else built (by rank 0 only)."""
    if start is not None:
        stored = Preprocessing.from_data(start)
        if config.train.init_from:  # fine-tuning may add corpus tags: new ids, at the end
            src_vocab = stored.src_vocab.with_tokens(config.data.tags())
            if len(src_vocab) > len(stored.src_vocab):
                added = " ".join(src_vocab.tokens[len(stored.src_vocab) :])
                log.info("train.init_from: tags %s added to the source vocabulary", added)
                stored = replace(stored, src_vocab=src_vocab)
        return build_training_data(config.data, stored)
    if payload is not None:
        saved = config_module.from_dict(payload["config"], where=str(output_dir / "last.pt"))
        for section in ("data", "model"):
            if getattr(saved, section) != getattr(config, section):
                raise TrainingError(
                    f"--resume: the {section} section of the config differs from the run in "
                    f"{output_dir}; resume with the same data and model settings or start a new --output-dir"
                )
        return build_training_data(config.data, Preprocessing.from_data(payload))
    if distributed.world_size() == 1:
        return build_training_data(config.data)
    # SentencePiece training is not bit-reproducible across processes: rank 0 shares its own.
    data = build_training_data(config.data) if distributed.is_main() else None
    shared = distributed.broadcast(data.preprocessing.to_data() if data is not None else None)
    return data or build_training_data(config.data, Preprocessing.from_data(shared))


def _load_init_weights(model: Seq2Seq, state: dict) -> None:
    """``train.init_from``'s weights into ``model``. Source embedding rows past the stored ones
    (tags the fine-tuning added to the vocabulary) keep ``model``'s own initialization."""
    key = "encoder.embedding.weight"  # (V_src, E)
    own = model.state_dict()[key]
    if state[key].size(0) < own.size(0):
        grown = own.clone()
        grown[: state[key].size(0)] = state[key]
        state = {**state, key: grown}
    model.load_state_dict(state)


def _build_trainable(
    config: Config,
    data: TrainingData,
    device: torch.device,
    precision: str,
    payload: dict | None,
) -> Trainable:
    cfg, rank, world = config.train, distributed.rank(), distributed.world_size()
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab))
    trainable = make_trainable(model.to(device), cfg, device, precision)
    torch.manual_seed(cfg.seed + rank)  # dropout differs across ranks, as it would across batches
    if payload:
        model.load_state_dict(payload["model"])
        trainable.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scaler"):  # fp16 loss scale and its growth tracker
            trainable.scaler.load_state_dict(payload["scaler"])
        torch.set_rng_state(payload["rng"]["cpu"][rank])
        if device.type == "cuda" and payload["rng"]["cuda"][rank] is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"][rank], device)
        log.info("resumed from step %d", payload["progress"]["step"])
    if world > 1:
        trainable.world = world
        trainable.forward = DistributedDataParallel(
            trainable.forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model: %.2fM parameters on %s x %d, precision %s", n_params / 1e6, device, world, precision
    )
    return trainable


def save_checkpoint(run: Run, name: str, with_state: bool) -> None:
    """Write ``output_dir/name``; ``with_state`` adds what resuming needs (optimizer, RNG, progress).

    Every rank must call this (the RNG states are gathered); rank 0 writes.
    """
    device = run.trainable.device
    rng_states = distributed.gather(
        (
            torch.get_rng_state(),
            torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        )
    )
    if not distributed.is_main():
        return
    parts = checkpoint.model_payload(run.config, run.model, run.data.preprocessing)
    if with_state:
        parts["optimizer"] = run.trainable.optimizer.state_dict()
        parts["scaler"] = run.trainable.scaler.state_dict()  # {} unless fp16
        parts["progress"] = asdict(run.progress)
        parts["rng"] = {"cpu": [s[0] for s in rng_states], "cuda": [s[1] for s in rng_states]}
    if run.tracker.identity:  # --resume and `evaluate --wandb` find the run through this
        parts["wandb"] = run.tracker.identity
    checkpoint.save(run.output_dir / name, parts)
