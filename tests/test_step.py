"""The training step: scheduled sampling's inputs, and accumulation as one larger batch."""

import copy

import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import TrainConfig
from seq2seq.data import collate
from seq2seq.step import TeacherForcing, make_trainable, token_loss_sum, train_step
from seq2seq.vocab import SPECIALS

pytestmark = pytest.mark.numerics  # run again under the other CPU kernels (.ci/run)

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


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_loss_sum_and_its_gradient_are_pytorch_s_cross_entropy(eps, dtype):
    generator = torch.Generator().manual_seed(int(eps * 10) + (dtype == torch.bfloat16))
    for trial in range(5):
        batch, length, vocab = 1 + trial, 2 + 3 * trial, 7 + 50 * trial
        logits = (torch.randn(batch, length, vocab, generator=generator) * 4).to(dtype)
        gold = torch.randint(0, vocab, (batch, length), generator=generator)  # 0 is PAD_ID
        gold[0, 0] = 5  # at least one real token
        ours = logits.clone().requires_grad_()
        theirs = logits.clone().requires_grad_()
        loss = token_loss_sum(ours, gold, eps)
        expected = F.cross_entropy(
            theirs.float().flatten(0, 1), gold.flatten(), ignore_index=0,
            label_smoothing=eps, reduction="sum",
        )  # fmt: skip
        (loss * 3).backward()
        (expected * 3).backward()
        assert loss.dtype == torch.float32
        assert float(loss) == pytest.approx(float(expected), rel=1e-5)
        assert ours.grad.dtype == dtype
        # fp32: rounding apart; bf16: the gradient's own rounding (8 bits of mantissa)
        rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-2, 1e-2)
        torch.testing.assert_close(ours.grad.float(), theirs.grad.float(), rtol=rtol, atol=atol)


def test_token_loss_sum_gives_padding_no_gradient_whatever_its_logits():
    logits = torch.randn(2, 3, 6)
    logits[1, 2] = float("nan")  # a padding position's logits: never read as a loss
    logits[0, 2, 1] = float("inf")
    gold = torch.tensor([[4, 2, 0], [1, 3, 0]])
    logits.requires_grad_()
    loss = token_loss_sum(logits, gold, 0.1)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.equal(logits.grad[:, 2], torch.zeros(2, 6))
    assert torch.isfinite(logits.grad).all()


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


def step_gradients(model, batches, step_tokens: int, config: TrainConfig):
    """Run ``train_step`` and return the gradients it handed the optimizer (before its update)."""
    trainable = make_trainable(model, config, CPU, "fp32")
    seen = {}
    real_step = trainable.optimizer.step

    def recording_step(*args, **kwargs):
        seen.update({name: p.grad.clone() for name, p in model.named_parameters()})
        return real_step(*args, **kwargs)

    trainable.optimizer.step = recording_step
    result = train_step(trainable, batches, step_tokens, 0.01, config)
    assert result.applied
    return result, seen


def assert_gradients_close(expected: dict, actual: dict) -> None:
    """Equal up to float32 summation order (AVX2, AVX-512 and scalar kernels sum in other
    orders). A sum of n terms in another order differs by up to about n * eps32 (1.2e-7)
    times the size of its terms, and an element whose terms cancel to nearly 0 keeps that
    absolute error (the attention's query bias has gradients near 4e-10 on the tiny model):
    so rtol 1e-4 (n in the hundreds) plus atol 1e-6 of the model's largest gradient, the
    size of the terms that flow back from the loss (measured: at most 1e-7 of it)."""
    scale = max(float(g.abs().max()) for g in expected.values())
    for name, g in expected.items():
        torch.testing.assert_close(
            actual[name], g, rtol=1e-4, atol=1e-6 * scale, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_accumulating_two_batches_computes_the_gradient_of_one_batch_of_both(tiny_model):
    # The gradient, not the weights after Adam: Adam's first update is about lr * sign(g), so a
    # rounding difference in a gradient near 0 becomes a difference of almost lr in a weight.
    src, tgt = toy_pairs()
    config = TrainConfig(lr=0.01, clip_norm=0.0, label_smoothing=0.1)
    one = collate(src, tgt, range(6))
    parts = [collate(src, tgt, range(3)), collate(src, tgt, range(3, 6))]
    a, whole = step_gradients(copy.deepcopy(tiny_model).train(), [one], one.n_tokens, config)
    b, halves = step_gradients(copy.deepcopy(tiny_model).train(), parts, one.n_tokens, config)
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-4)
    assert_gradients_close(whole, halves)


def test_the_accumulation_check_catches_a_wrong_token_count(tiny_model):
    # The check above can fail: halves each divided by their own token count (a classic
    # accumulation bug) give another gradient, far outside the tolerance.
    src, tgt = toy_pairs()
    config = TrainConfig(lr=0.01, clip_norm=0.0, label_smoothing=0.1)
    one = collate(src, tgt, range(6))
    first = collate(src, tgt, range(3))
    parts = [first, collate(src, tgt, range(3, 6))]
    _, whole = step_gradients(copy.deepcopy(tiny_model).train(), [one], one.n_tokens, config)
    _, wrong = step_gradients(copy.deepcopy(tiny_model).train(), parts, first.n_tokens, config)
    with pytest.raises(AssertionError):
        assert_gradients_close(whole, wrong)


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
