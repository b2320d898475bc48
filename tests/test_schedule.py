"""Learning-rate and scheduled-sampling schedules, plateau decay and early stopping, against their definitions."""

import dataclasses
import math

import pytest

from seq2seq.config import ConfigError, TrainConfig, from_dict
from seq2seq.run import Progress
from seq2seq.schedule import gold_probability, learning_rate


def config(**values) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **values)


def test_constant_is_constant_after_a_linear_warmup():
    c = config(lr_schedule="constant", lr=1e-3, warmup_steps=4)
    assert [learning_rate(c, s, 1.0, 0.0) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )


def test_inverse_sqrt_peaks_at_the_end_of_warmup_and_halves_at_four_times_it():
    c = config(lr_schedule="inverse_sqrt", lr=1e-3, warmup_steps=100, min_lr=0.0)
    rates = [learning_rate(c, s, 1.0, 0.0) for s in range(1000)]
    assert max(rates) == pytest.approx(1e-3) and rates.index(max(rates)) == 99
    assert learning_rate(c, 399, 1.0, 0.0) == pytest.approx(0.5e-3)  # sqrt(100 / 400)
    assert all(a <= b for a, b in zip(rates[:99], rates[1:100], strict=True))  # rising
    assert all(a >= b for a, b in zip(rates[99:-1], rates[100:], strict=True))  # falling


def test_cosine_goes_from_the_peak_to_min_lr_through_the_midpoint():
    c = config(lr_schedule="cosine", lr=1e-3, min_lr=1e-5, warmup_steps=10, max_steps=110)
    assert learning_rate(c, 10, 1.0, 0.0) == pytest.approx(1e-3)
    assert learning_rate(c, 60, 1.0, 0.0) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(c, 110, 1.0, 0.0) == pytest.approx(1e-5)
    assert learning_rate(c, 500, 1.0, 0.0) == pytest.approx(1e-5)  # stays at the floor


def test_cosine_over_a_time_budget_follows_the_clock_and_the_first_limit_ends_it():
    c = config(lr_schedule="cosine", lr=1e-3, min_lr=0.0, max_minutes=10)
    assert learning_rate(c, 0, 1.0, elapsed=0.0) == pytest.approx(1e-3)
    assert learning_rate(c, 7, 1.0, elapsed=300.0) == pytest.approx(0.5e-3)  # half the time
    assert learning_rate(c, 7, 1.0, elapsed=900.0) == pytest.approx(0.0)  # past the budget
    rates = [learning_rate(c, s, 1.0, elapsed=6.0 * s) for s in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))  # falling with the clock
    both = config(lr_schedule="cosine", lr=1e-3, min_lr=0.0, max_minutes=10, max_steps=100)
    assert learning_rate(both, 50, 1.0, elapsed=30.0) == pytest.approx(0.5e-3)  # steps first
    assert learning_rate(both, 10, 1.0, elapsed=300.0) == pytest.approx(0.5e-3)  # time first


def test_min_lr_is_a_floor_for_the_plateau_scale():
    c = config(lr_schedule="plateau", lr=1e-3, min_lr=1e-4)
    assert learning_rate(c, 50, 0.5, 0.0) == pytest.approx(5e-4)
    assert learning_rate(c, 50, 0.5**10, 0.0) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "metric, scores", [("bleu", [10, 12, 11, 11, 11]), ("loss", [3, 2, 2.5, 2.5, 2.5])]
)
def test_plateau_decays_after_patience_and_early_stopping_stops(metric, scores):
    c = config(
        valid_metric=metric, lr_schedule="plateau", lr_patience=2, lr_decay_factor=0.5,
        early_stopping_patience=3,
    )  # fmt: skip
    progress = Progress()
    outcomes = [progress.record_validation(c, s) for s in scores]
    assert [improved for improved, _ in outcomes] == [True, True, False, False, False]
    assert [stop for _, stop in outcomes] == [False, False, False, False, True]
    assert progress.best == scores[1] and progress.validations_since_best == 3
    assert progress.lr_scale == 0.5  # one decay: after the 2nd validation without improvement


def test_no_early_stopping_when_patience_is_zero():
    c = config(early_stopping_patience=0, lr_schedule="constant")
    progress = Progress()
    assert not any(stop for _, stop in (progress.record_validation(c, 1.0) for _ in range(50)))
    assert progress.lr_scale == 1.0 and not math.isnan(progress.best)


def test_gold_probability_is_constant_without_a_schedule():
    c = config(teacher_forcing_ratio=0.8)
    assert {gold_probability(c, s) for s in (0, 10, 10_000)} == {0.8}
    assert gold_probability(config(), 123) == 1.0  # plain teacher forcing


def test_inverse_sigmoid_decays_from_one_to_the_floor():
    c = config(
        scheduled_sampling="inverse_sigmoid", scheduled_sampling_k=100.0, teacher_forcing_ratio=0.5
    )
    values = [gold_probability(c, s) for s in range(0, 1500, 50)]
    assert values[0] == pytest.approx(0.5 + 0.5 * 100 / 101)  # eps_0 = k / (k + 1)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # strictly falling
    # Bengio et al.'s eps_i = k / (k + exp(i / k)) is 1/2 at i = k ln k, so the probability is 3/4.
    assert gold_probability(c, round(100 * math.log(100))) == pytest.approx(0.75, abs=1e-3)
    assert gold_probability(c, 10**9) == pytest.approx(0.5)  # no overflow, the floor


def test_a_decay_to_one_is_refused():
    with pytest.raises(ConfigError, match="teacher_forcing_ratio"):
        from_dict(
            {
                "data": {"train": "data/toy/train", "valid": "data/toy/valid"},
                "train": {"scheduled_sampling": "inverse_sigmoid"},
            }
        )


def test_every_rank_takes_rank_zeros_clock(monkeypatch):
    # A cosine over minutes reads the clock each step; ranks with their own would drift apart.
    from types import SimpleNamespace

    from seq2seq import train as train_module

    rank_zero = 150.0
    monkeypatch.setattr(train_module.distributed, "broadcast", lambda v: (v[0], rank_zero))
    progress = Progress()
    progress.elapsed = 5.0  # this rank's own clock
    run = SimpleNamespace(config=SimpleNamespace(train=config(max_minutes=2.0)), progress=progress)
    assert train_module._done(run, SimpleNamespace(asked=None))  # 150 s is past 2 minutes
    assert progress.elapsed == rank_zero
