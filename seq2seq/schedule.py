"""Learning-rate schedules, and the bookkeeping of validation scores that drives them.

``Progress`` is everything besides weights and optimizer state that an exact
resume needs; it is stored in ``last.pt`` as plain data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from seq2seq.config import TrainConfig


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


def learning_rate(config: TrainConfig, step: int, lr_scale: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based)."""
    warmup = config.warmup_steps
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if config.lr_schedule == "inverse_sqrt":
        factor *= math.sqrt(max(warmup, 1) / max(step + 1, warmup, 1))
    elif config.lr_schedule == "cosine" and step >= warmup:
        progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))
        low = config.min_lr / config.lr
        factor = low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return max(config.lr * factor * lr_scale, min(config.min_lr, config.lr))


def record_validation(progress: Progress, config: TrainConfig, score: float) -> tuple[bool, bool]:
    """Update best score, plateau decay and early stopping; returns (improved, stop)."""
    higher_is_better = config.valid_metric == "bleu"
    best = progress.best
    improved = best is None or (score > best if higher_is_better else score < best)
    if improved:
        progress.best, progress.validations_since_best = score, 0
    else:
        progress.validations_since_best += 1
        patience = max(config.lr_patience, 1)
        if config.lr_schedule == "plateau" and progress.validations_since_best % patience == 0:
            progress.lr_scale *= config.lr_decay_factor
    patience = config.early_stopping_patience
    return improved, patience > 0 and progress.validations_since_best >= patience
