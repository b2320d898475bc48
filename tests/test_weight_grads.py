"""LoopLinear's one-product weight gradients equal autograd's per-step ones (weight_grads.py)."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.model import Seq2Seq
from seq2seq.weight_grads import LoopLinear


def _gradients(model, batch, loop: bool, autocast: bool):
    """Parameter gradients of one teacher-forced loss, with or without LoopLinear."""
    src, lengths, tgt = batch
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the same dropout masks for both
    if not loop:  # autograd's own per-step weight gradients, as before weight_grads.py
        model.decoder.__dict__["loop_layers"] = model.decoder.step_layers
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outputs = model(src, lengths, tgt)  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(outputs.float().flatten(0, 1), tgt.flatten())
    loss.backward()
    model.decoder.__dict__.pop("loop_layers", None)  # back to the class's method
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_loop_gradients_equal_per_step_gradients(layers, dropout):
    torch.manual_seed(layers)
    config = ModelConfig(
        embedding_size=8, encoder_hidden_size=6, decoder_hidden_size=10, attention_size=7,
        encoder_layers=1, decoder_layers=layers, dropout=dropout,
    )  # fmt: skip
    model = Seq2Seq.from_config(config, 13, 11).train()
    batch = (
        torch.randint(4, 13, (3, 5)),
        torch.tensor([5, 3, 2]),
        torch.randint(4, 11, (3, 6)),
    )
    reference = _gradients(model, batch, loop=False, autocast=False)
    ours = _gradients(model, batch, loop=True, autocast=False)
    assert reference.keys() == ours.keys()
    for name, grad in reference.items():
        torch.testing.assert_close(ours[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_loop_gradients_are_as_close_as_bf16_allows():
    torch.manual_seed(0)
    config = ModelConfig(
        embedding_size=16, encoder_hidden_size=16, decoder_hidden_size=32, attention_size=16,
        dropout=0.0,
    )  # fmt: skip
    model = Seq2Seq.from_config(config, 30, 30).train()
    batch = (torch.randint(4, 30, (8, 9)), torch.full((8,), 9), torch.randint(4, 30, (8, 12)))
    exact = _gradients(model, batch, loop=False, autocast=False)
    per_step = _gradients(model, batch, loop=False, autocast=True)
    ours = _gradients(model, batch, loop=True, autocast=True)
    for name, grad in exact.items():
        scale = grad.norm()
        # no further from fp32 than autograd's own bf16 gradients, with a little slack
        assert (ours[name] - grad).norm() <= 1.5 * (per_step[name] - grad).norm() + 1e-3 * scale, (
            name
        )


def test_the_gradient_arrives_once_and_bias_is_the_column_sum():
    weight = torch.randn(4, 3, requires_grad=True)
    bias = torch.randn(4, requires_grad=True)
    linear = LoopLinear(weight, bias)
    xs = [torch.randn(2, 3) for _ in range(5)]
    seen = []
    weight.register_hook(lambda g: seen.append(g))
    sum(linear(x).sum() for x in xs).backward()
    assert len(seen) == 1  # one accumulation, not one per step
    torch.testing.assert_close(weight.grad, sum(torch.ones(2, 4).t() @ x for x in xs))
    torch.testing.assert_close(bias.grad, torch.full((4,), 10.0))
    assert not linear.records  # freed after use


def test_a_loop_frees_its_graph():
    """No reference cycle through autograd's nodes: a batch's LoopLinear dies with its graph."""
    import gc
    import weakref

    weight = torch.randn(4, 3, requires_grad=True)
    linear = LoopLinear(weight)
    linear(torch.randn(2, 3)).sum().backward()
    alive = weakref.ref(linear.weight)
    del linear
    gc.disable()  # freed by reference counting alone, as in the training loop
    try:
        assert alive() is None
    finally:
        gc.enable()
