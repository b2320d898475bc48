"""Weight gradients of a recurrent loop's products as one matrix product over all steps.

A teacher-forced decoder applies the same weight W at every step t:
y_t = x_t W^T + b. Autograd's default backward computes dW_t = g_t^T x_t per step
(a product with only B rows, bound by memory, not arithmetic) and adds it into
the gradient T times. The gradient is one sum, dW = sum_t g_t^T x_t = G^T X with
G and X the steps' stacked rows, so ``LoopLinear`` records (g_t, x_t) during the
backward pass and computes dW (and db = the column sums of G) once, after the
last step's backward: one large product instead of T small ones and T additions.

Under autocast the weight is cast to the compute dtype once per loop rather than
at every step, and dW accumulates in the product's own fp32 accumulators instead
of T roundings of per-step products. The result equals the default backward up
to floating-point summation order (tests/test_weight_grads.py).

Used for training only: ``Decoder.forward`` builds one ``LoopLinear`` per weight
per batch; decoding uses plain products.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LoopLinear:
    """``x -> x W^T + b`` applied at each step of one loop, with one backward product."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        # (g_t, x_t) of every step, appended in backward. Only this list is shared with the
        # autograd nodes: a node holding the LoopLinear, which holds the node's own output,
        # would be a cycle through C++ that Python's collector never frees.
        self.records: list[tuple[Tensor, Tensor]] = []
        device = weight.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        # The loop's copy of W (and b): the steps' inputs, cast once; their gradient is
        # computed from the records by _Gather.backward, after every step's backward.
        self.weight, self.bias = _Gather.apply(self.records, dtype or weight.dtype, weight, bias)

    def __call__(self, x: Tensor) -> Tensor:
        return _Step.apply(self.records, x, self.weight, self.bias)  # (B, out)


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, records: list, dtype: torch.dtype, weight: Tensor, bias: Tensor | None):
        ctx.records = records
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        with torch.autocast(weight.device.type, enabled=False):
            cast = weight.to(dtype, copy=True)
            return cast, None if bias is None else bias.to(dtype, copy=True)

    @staticmethod
    def backward(ctx, _weight_grad, _bias_grad):
        records = ctx.records
        if not records:
            return None, None, None, None
        grads = torch.cat([g for g, _ in records])  # (N, out), N = the steps' rows
        inputs = torch.cat([x for _, x in records])  # (N, in)
        records.clear()
        weight_grad = (grads.t() @ inputs).to(ctx.dtypes[0])  # (out, in)
        bias_grad = None if ctx.dtypes[1] is None else grads.float().sum(0).to(ctx.dtypes[1])
        return None, None, weight_grad, bias_grad


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, records: list, x: Tensor, weight: Tensor, bias: Tensor | None):
        ctx.records, ctx.x_dtype = records, x.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(weight.dtype)
            ctx.save_for_backward(x, weight)
            if bias is None:
                return x @ weight.t()  # (B, out)
            return torch.addmm(bias, x, weight.t())  # (B, out), rounded once, as F.linear

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.to(weight.dtype).reshape(-1, weight.size(0))  # (B, out)
        ctx.records.append((grad, x.reshape(-1, x.size(-1))))
        # W's gradient comes from _Gather; a zero here (never summed: _Gather ignores it)
        # would cost the additions this module exists to avoid, so none is returned.
        return None, (grad @ weight).to(ctx.x_dtype), None, None
