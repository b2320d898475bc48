"""Schedules of the learning rate and the gold-token probability.

They depend on the step and, for a cosine over ``train.max_minutes``, on the
training time so far. Such a run is not bit-reproducible (the clock differs
from run to run, and so does each step's rate), unlike every other schedule.
Plateau decay and early stopping depend on validation scores instead; they
live with the rest of a run's state in ``run.Progress``.
"""

from __future__ import annotations

import math

from seq2seq.config import TrainConfig


def learning_rate(config: TrainConfig, step: int, lr_scale: float, elapsed: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based), ``elapsed`` seconds into training."""
    warmup = config.warmup_steps
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if config.lr_schedule == "inverse_sqrt":
        factor *= math.sqrt(max(warmup, 1) / max(step + 1, warmup, 1))
    elif config.lr_schedule == "cosine" and step >= warmup:
        progress = _budget_used(config, step, elapsed)
        low = config.min_lr / config.lr
        factor = low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return max(config.lr * factor * lr_scale, min(config.min_lr, config.lr))


def _budget_used(config: TrainConfig, step: int, elapsed: float) -> float:
    """How far training is through its budget, in [0, 1]: the larger of the step and time shares.

    With ``max_minutes`` the cosine decay ends when the wall-clock budget does,
    whatever the speed of the machine; with ``max_steps`` too, whichever limit
    comes first ends it. The step share starts after warmup, the time share at
    the start: a warmup that takes a share w of the time begins the decay at
    (1 + cos(pi w)) / 2 of the peak (0.98 for w = 0.1).
    """
    shares = [0.0]
    if config.max_steps:
        warmup = config.warmup_steps
        shares.append((step - warmup) / max(1, config.max_steps - warmup))
    if config.max_minutes:
        shares.append(elapsed / (60 * config.max_minutes))
    return min(1.0, max(shares))


def gold_probability(config: TrainConfig, step: int) -> float:
    """Scheduled sampling: the chance that decoder input t is the gold token y_{t-1}.

    ``teacher_forcing_ratio`` alone is a constant chance. ``inverse_sigmoid``
    decays it from 1 towards that ratio as eps = k / (k + exp(step / k))
    (Bengio et al. 2015, section 2.4), rescaled to [ratio, 1].
    """
    floor = config.teacher_forcing_ratio
    if config.scheduled_sampling == "off":
        return floor
    k = config.scheduled_sampling_k
    epsilon = k / (k + math.exp(min(step / k, 700.0)))  # exp overflows past 709
    return floor + (1 - floor) * epsilon
