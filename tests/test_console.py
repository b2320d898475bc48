"""The training progress bar: over the budget that ends the run, on a terminal only."""

import io

from seq2seq.config import TrainConfig
from seq2seq.console import TrainingBar, budget_fraction


def test_the_budget_is_the_limit_reached_first():
    cfg = TrainConfig(max_steps=1000, max_minutes=10, max_epochs=0)
    assert budget_fraction(cfg, 100, 0, 60) == 0.1
    assert budget_fraction(cfg, 100, 0, 300) == 0.5  # time runs out first
    assert budget_fraction(cfg, 900, 0, 300) == 0.9  # steps do
    assert budget_fraction(cfg, 2000, 0, 0) == 1.0
    assert budget_fraction(TrainConfig(max_steps=0, max_epochs=4), 10, 1, 0) == 0.25
    assert budget_fraction(TrainConfig(max_steps=0), 10, 1, 5) == 0.0  # no limit: no fill


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_it_shows_the_budget_rates_score_and_eta():
    cfg = TrainConfig(max_steps=0, max_minutes=2, valid_metric="bleu")
    screen = Terminal()
    with TrainingBar(cfg, step=0, epoch=0, seconds=0.0, file=screen) as bar:
        for step in range(1, 61):
            bar.update(step, 0, seconds=step * 1.0, tokens_per_s=1500.0 if step % 10 == 0 else None)
            if step == 30:
                bar.score(12.345)
    shown = screen.getvalue().split("\r")[-1]
    assert "budget 2 min" in shown and " 50%" in shown  # 60 s of 120
    assert "step=60" in shown and "step/s=1.00" in shown and "tgt tok/s=1,500" in shown
    assert "val bleu=12.35" in shown
    assert "<" in shown  # elapsed<remaining: the ETA


def test_without_a_terminal_it_writes_nothing():
    cfg = TrainConfig(max_steps=100)
    pipe = io.StringIO()  # isatty() is False
    with TrainingBar(cfg, step=0, epoch=0, seconds=0.0, file=pipe) as bar:
        for step in range(1, 11):
            bar.update(step, 0, float(step))
    assert pipe.getvalue() == ""
    with TrainingBar(cfg, 0, 0, 0.0, enabled=False, file=Terminal()) as bar:  # rank > 0
        bar.update(5, 0, 1.0)
