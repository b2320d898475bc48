"""The training step: scheduled sampling's inputs, and accumulation as one larger batch."""

import copy

import pytest
import torch

from seq2seq.config import TrainConfig
from seq2seq.data import collate
from seq2seq.step import TeacherForcing, make_trainable, token_loss_sum, train_step
from seq2seq.vocab import SPECIALS

CPU = torch.device("cpu")


def toy_pairs(count: int = 6, vocab: int = 15) -> tuple[list[list[int]], list[list[int]]]:
    generator = torch.Generator().manual_seed(3)
    src = [torch.randint(4, 20, (3 + i % 4,), generator=generator).tolist() for i in range(count)]
    tgt = [
        torch.randint(4, vocab, (2 + i % 3,), generator=generator).tolist() for i in range(count)
    ]
    return src, tgt


def test_token_loss_sum_ignores_padding_and_is_a_sum():
    logits = torch.randn(2, 3, 5)
    gold = torch.tensor([[4, 2, 0], [1, 0, 0]])  # PAD_ID = 0
    expected = -sum(logits[b, t].log_softmax(-1)[gold[b, t]] for b, t in [(0, 0), (0, 1), (1, 0)])
    assert token_loss_sum(logits, gold, 0.0) == pytest.approx(float(expected), rel=1e-5)


def test_full_gold_probability_is_the_teacher_forced_forward(tiny_model):
    src, tgt = toy_pairs()
    batch = collate(src, tgt, range(6))
    forced = tiny_model(batch.src, batch.src_lengths, batch.tgt_in)
    assert torch.equal(
        TeacherForcing(tiny_model)(batch.src, batch.src_lengths, batch.tgt_in), forced
    )


@pytest.mark.parametrize("sample", [False, True])
def test_the_model_s_guesses_are_never_special_symbols(tiny_model, sample):
    # Make the specials the model's favourites, so only the mask keeps them out.
    with torch.no_grad():
        tiny_model.decoder.output.bias[: len(SPECIALS)] = 50.0
    fed = []
    original_step = tiny_model.decoder.step

    def recording_step(prev, state, encoded):
        fed.append(prev.clone())
        return original_step(prev, state, encoded)

    tiny_model.decoder.step = recording_step
    src, tgt = toy_pairs()
    batch = collate(src, tgt, range(6))
    torch.manual_seed(0)
    TeacherForcing(tiny_model, sample=sample)(batch.src, batch.src_lengths, batch.tgt_in, 0.0)
    guesses = torch.stack(fed[1:])  # every input after BOS is a guess at probability 0
    assert (guesses >= len(SPECIALS)).all()


def test_argmax_guesses_are_the_model_s_best_tokens(tiny_model):
    logits = torch.randn(4, 15)
    logits[0, 2] = 100.0  # BOS is the best, so the next best non-special token wins
    guesses = TeacherForcing(tiny_model).guess(logits)
    masked = logits.clone()
    masked[:, : len(SPECIALS)] = float("-inf")
    assert torch.equal(guesses, masked.argmax(-1))


def test_accumulating_two_batches_updates_like_one_batch_of_both(tiny_model):
    src, tgt = toy_pairs()
    config = TrainConfig(lr=0.01, clip_norm=0.0, label_smoothing=0.1)
    whole, halves = copy.deepcopy(tiny_model).train(), copy.deepcopy(tiny_model).train()
    one = collate(src, tgt, range(6))
    parts = [collate(src, tgt, range(3)), collate(src, tgt, range(3, 6))]
    a = train_step(make_trainable(whole, config, CPU, "fp32"), [one], one.n_tokens, 0.01, config)
    b = train_step(make_trainable(halves, config, CPU, "fp32"), parts, one.n_tokens, 0.01, config)
    assert a.applied and b.applied
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-4)
    for p, q in zip(whole.parameters(), halves.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(whole.parameters(), tiny_model.parameters(), strict=True)
    )


def test_a_non_finite_gradient_skips_the_update(tiny_model):
    src, tgt = toy_pairs()
    config = TrainConfig()
    trainable = make_trainable(tiny_model.train(), config, CPU, "fp32")
    before = copy.deepcopy(tiny_model.state_dict())
    with torch.no_grad():
        tiny_model.decoder.output.weight[0, 0] = float("nan")
    before["decoder.output.weight"][0, 0] = float("nan")
    batch = collate(src, tgt, range(6))
    result = train_step(trainable, [batch], batch.n_tokens, 1e-3, config)
    assert not result.applied
    for name, value in tiny_model.state_dict().items():
        torch.testing.assert_close(value, before[name], equal_nan=True)
