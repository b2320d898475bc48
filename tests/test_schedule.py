"""Learning-rate schedules, plateau decay and early stopping, checked against their definitions."""

import dataclasses
import math

import pytest

from seq2seq.config import TrainConfig
from seq2seq.schedule import Progress, learning_rate, record_validation


def config(**values) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **values)


def test_constant_is_constant_after_a_linear_warmup():
    c = config(lr_schedule="constant", lr=1e-3, warmup_steps=4)
    assert [learning_rate(c, s, 1.0) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )


def test_inverse_sqrt_peaks_at_the_end_of_warmup_and_halves_at_four_times_it():
    c = config(lr_schedule="inverse_sqrt", lr=1e-3, warmup_steps=100, min_lr=0.0)
    rates = [learning_rate(c, s, 1.0) for s in range(1000)]
    assert max(rates) == pytest.approx(1e-3) and rates.index(max(rates)) == 99
    assert learning_rate(c, 399, 1.0) == pytest.approx(0.5e-3)  # sqrt(100 / 400)
    assert all(a <= b for a, b in zip(rates[:99], rates[1:100], strict=True))  # rising
    assert all(a >= b for a, b in zip(rates[99:-1], rates[100:], strict=True))  # falling


def test_cosine_goes_from_the_peak_to_min_lr_through_the_midpoint():
    c = config(lr_schedule="cosine", lr=1e-3, min_lr=1e-5, warmup_steps=10, max_steps=110)
    assert learning_rate(c, 10, 1.0) == pytest.approx(1e-3)
    assert learning_rate(c, 60, 1.0) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(c, 110, 1.0) == pytest.approx(1e-5)
    assert learning_rate(c, 500, 1.0) == pytest.approx(1e-5)  # stays at the floor


def test_min_lr_is_a_floor_for_the_plateau_scale():
    c = config(lr_schedule="plateau", lr=1e-3, min_lr=1e-4)
    assert learning_rate(c, 50, 0.5) == pytest.approx(5e-4)
    assert learning_rate(c, 50, 0.5**10) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "metric, scores", [("bleu", [10, 12, 11, 11, 11]), ("loss", [3, 2, 2.5, 2.5, 2.5])]
)
def test_plateau_decays_after_patience_and_early_stopping_stops(metric, scores):
    c = config(
        valid_metric=metric, lr_schedule="plateau", lr_patience=2, lr_decay_factor=0.5,
        early_stopping_patience=3,
    )  # fmt: skip
    progress = Progress()
    outcomes = [record_validation(progress, c, s) for s in scores]
    assert [improved for improved, _ in outcomes] == [True, True, False, False, False]
    assert [stop for _, stop in outcomes] == [False, False, False, False, True]
    assert progress.best == scores[1] and progress.validations_since_best == 3
    assert progress.lr_scale == 0.5  # one decay: after the 2nd validation without improvement


def test_no_early_stopping_when_patience_is_zero():
    c = config(early_stopping_patience=0, lr_schedule="constant")
    progress = Progress()
    assert not any(stop for _, stop in (record_validation(progress, c, 1.0) for _ in range(50)))
    assert progress.lr_scale == 1.0 and not math.isnan(progress.best)
