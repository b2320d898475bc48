"""The training progress bar on a terminal: over the budget that ends the run, with an ETA.

A run ends at the first of ``max_steps``, ``max_epochs`` and ``max_minutes``
that it reaches, so the bar runs over that budget: its fill is the largest of
steps / max_steps, epochs / max_epochs and minutes / max_minutes, in permille,
and tqdm's ETA follows from the pace at which that fill grows. Beside it:
the step, steps/s, target tokens/s and the last validation score. Without a
terminal (a pipe, CI, a log file) and on every rank but 0 it is off, and the
log lines say what the bar would.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from seq2seq.config import TrainConfig

SCALE = 1000  # the bar's units: permille of the budget


def budget_fraction(cfg: TrainConfig, step: int, epoch: float, seconds: float) -> float:
    """How much of the run's budget is spent, in [0, 1] (0 without any limit)."""
    spent = [
        step / cfg.max_steps if cfg.max_steps else 0.0,
        epoch / cfg.max_epochs if cfg.max_epochs else 0.0,
        seconds / (60 * cfg.max_minutes) if cfg.max_minutes else 0.0,
    ]
    return min(1.0, max(spent))


def budget_name(cfg: TrainConfig) -> str:
    limits = [
        f"{cfg.max_steps} steps" if cfg.max_steps else "",
        f"{cfg.max_epochs} epochs" if cfg.max_epochs else "",
        f"{cfg.max_minutes:g} min" if cfg.max_minutes else "",
    ]
    return " or ".join(limit for limit in limits if limit) or "no limit"


class TrainingBar:
    """``update`` after every optimizer step; ``score`` after a validation."""

    def __init__(
        self, cfg: TrainConfig, step: int, epoch: float, seconds: float, enabled=None, file=None
    ):
        file = file or sys.stderr
        if enabled is None:
            enabled = file.isatty()
        self.cfg, self.metric = cfg, cfg.valid_metric
        self.steps_before, self.seconds_before = step, seconds
        self.filled = int(SCALE * budget_fraction(cfg, step, epoch, seconds))
        self.last = {"step": str(step)}
        self.bar = tqdm(
            total=SCALE,
            initial=self.filled,
            file=file,
            disable=not enabled,
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}",
            desc=f"budget {budget_name(cfg)}",
        )

    def update(
        self, step: int, epoch: float, seconds: float, tokens_per_s: float | None = None
    ) -> None:
        filled = int(SCALE * budget_fraction(self.cfg, step, epoch, seconds))
        if tokens_per_s is not None:
            self.last["tgt tok/s"] = f"{tokens_per_s:,.0f}"
        ran = seconds - self.seconds_before
        self.last["step"] = str(step)
        if ran > 0:
            self.last["step/s"] = f"{(step - self.steps_before) / ran:.2f}"
        self.bar.set_postfix(self.last, refresh=False)
        self.bar.update(filled - self.filled)
        self.filled = filled

    def score(self, value: float) -> None:
        self.last[f"val {self.metric}"] = f"{value:.2f}"

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> TrainingBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
