"""One training step: teacher-forced forward, loss, backward, clip, optimizer update.

``train_step`` is what the training loop calls once per update, and what the
benchmark scripts call too, so a measured tokens/s is the real loop's:
gradient accumulation over several batches, fp16 loss scaling, clipping, the
scheduled learning rate, and skipping an update whose gradient is not finite.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from seq2seq import distributed
from seq2seq.config import TrainConfig
from seq2seq.data import Batch
from seq2seq.device import autocast_dtype
from seq2seq.model import Seq2Seq
from seq2seq.vocab import PAD_ID, SPECIALS


def token_loss_sum(
    logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float
) -> torch.Tensor:
    """Summed cross-entropy over real target tokens; logits (B, T, V), tgt_out (B, T).

    The same loss as ``F.cross_entropy(..., ignore_index=PAD_ID, label_smoothing=...,
    reduction="sum")`` over fp32 logits (tests/test_step.py), with its gradient written
    in one (B*T, V) tensor: softmax - (1 - eps) onehot - eps / V.
    """
    return _SmoothedCrossEntropy.apply(logits, tgt_out, label_smoothing)


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross-entropy whose backward is a few in-place passes over (N, V).

    Autograd's own backward of log_softmax + NLL + the smoothing term fills two
    zero (N, V) gradients, adds them and runs log_softmax's backward: the
    largest elementwise work of a training step after the loop (issue 26).
    Per row, with p = softmax(x), the loss (1 - eps) (-log p_y) + eps mean_v(-log p_v)
    has the gradient p - (1 - eps) onehot(y) - eps / V, computed here directly,
    in the buffer of the saved log-probabilities (so backward runs once per forward).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, tgt_out: torch.Tensor, eps: float) -> torch.Tensor:
        # (N, V), N = B*T, in fp32 (cast first: log_softmax's own dtype= is 4x slower on bf16),
        # in place in the cast's buffer when there is one: no second fresh (N, V) allocation
        log_probs = logits.flatten(0, -2).float()
        if log_probs.data_ptr() == logits.data_ptr():
            log_probs = torch.log_softmax(log_probs, dim=-1)
        else:
            torch._log_softmax(log_probs, -1, False, out=log_probs)
        target = tgt_out.flatten()  # (N,)
        keep = target != PAD_ID  # (N,)
        loss = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,) NLL of the gold
        if eps:
            loss = (1 - eps) * loss - eps * log_probs.mean(dim=-1)  # (N,) + smoothing
        ctx.eps, ctx.shape, ctx.dtype = eps, logits.shape, logits.dtype
        ctx.save_for_backward(log_probs, target, keep)
        return torch.where(keep, loss, 0.0).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        log_probs, target, keep = ctx.saved_tensors
        eps = ctx.eps
        scale = torch.where(keep, grad, 0.0).unsqueeze(1)  # (N, 1)
        p = log_probs.exp_().mul_(scale)  # (N, V) softmax, times the loss's gradient
        if eps:
            p.sub_(scale * (eps / p.size(1)))
        p.scatter_add_(1, target.unsqueeze(1), scale * (eps - 1.0))
        p.masked_fill_(~keep.unsqueeze(1), 0.0)  # padding rows: 0 even where p is not finite
        return p.view(ctx.shape).to(ctx.dtype), None, None


class TeacherForcing(nn.Module):
    """The training forward pass as one module, so DistributedDataParallel can wrap it.

    With ``gold_probability`` < 1 (scheduled sampling), each decoder input is
    the gold previous token with that probability and otherwise the model's
    own guess for it: the best token (``sample=False``) or one drawn from its
    distribution. A guess is never a special symbol (padding, BOS, EOS, UNK).
    """

    def __init__(self, model: Seq2Seq, sample: bool = False):
        super().__init__()
        self.model, self.sample = model, sample

    def forward(self, src, src_lengths, tgt_in, gold_probability: float = 1.0) -> torch.Tensor:
        if gold_probability >= 1.0:
            return self.model(src, src_lengths, tgt_in)  # (B, T, V)
        decoder = self.model.decoder
        encoded = self.model.encode(src, src_lengths)
        state = decoder.init_state(encoded)
        prev, steps = tgt_in[:, 0], []  # BOS
        for t in range(tgt_in.size(1)):
            output, state, _ = decoder.step(prev, state, encoded)
            steps.append(decoder.logits(output))  # (B, V)
            if t + 1 < tgt_in.size(1):
                gold = torch.rand(prev.size(0), device=prev.device) < gold_probability  # (B,)
                prev = torch.where(gold, tgt_in[:, t + 1], self.guess(steps[-1].detach()))
        return torch.stack(steps, dim=1)  # (B, T, V)

    def guess(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's own next input from its logits (B, V): never a special symbol."""
        logits = logits.float().clone()
        logits[:, : len(SPECIALS)] = float("-inf")
        if self.sample:
            return torch.multinomial(logits.softmax(-1), 1).squeeze(1)  # (B,)
        return logits.argmax(-1)  # (B,)


@dataclass
class Trainable:
    """A model and what updates it; ``forward`` may be wrapped for data-parallel training."""

    model: Seq2Seq
    forward: nn.Module  # TeacherForcing(model), or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # active for fp16 only
    device: torch.device
    precision: str  # fp32, bf16 or fp16 (resolved, never auto)
    world: int = 1  # processes that share each step

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.precision)


def make_trainable(
    model: Seq2Seq, config: TrainConfig, device: torch.device, precision: str
) -> Trainable:
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    # Adam's fused kernel updates every tensor in one pass (about 3x the default
    # multi-tensor one on a CPU core: docs/results.md, "Training profile").
    fused = {"fused": True} if config.optimizer != "sgd" and device.type in ("cpu", "cuda") else {}
    optimizer = optimizer_class[config.optimizer](
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    forward = TeacherForcing(model, sample=config.sampled_tokens == "sample")
    return Trainable(model, forward, optimizer, scaler, device, precision)


@dataclass
class StepResult:
    loss: float  # mean per-token loss of the step, over all ranks' batches
    grad_norm: float  # before clipping
    applied: bool  # False: the gradient was not finite and the update was skipped


def train_step(
    trainable: Trainable,
    batches: list[Batch],
    step_tokens: int,
    lr: float,
    config: TrainConfig,
    gold_probability: float = 1.0,
) -> StepResult:
    """One optimizer update from ``batches``, this rank's share of a step of ``step_tokens``."""
    t = trainable
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    dtype = t.autocast_dtype
    step_loss = torch.zeros((), device=t.device)
    for i, batch in enumerate(batches):
        batch = batch.to(t.device)
        last = i + 1 == len(batches)
        with t.forward.no_sync() if t.world > 1 and not last else nullcontext():
            with torch.autocast(t.device.type, dtype=dtype, enabled=dtype is not None):
                logits = t.forward(batch.src, batch.src_lengths, batch.tgt_in, gold_probability)
            # DDP averages gradients over ranks; x world makes the sum over all tokens / all tokens.
            loss = token_loss_sum(logits, batch.tgt_out, config.label_smoothing)
            loss = loss * t.world / step_tokens
            t.scaler.scale(loss).backward()
        step_loss += loss.detach() / t.world
    t.scaler.unscale_(t.optimizer)
    grad_norm = nn.utils.clip_grad_norm_(t.model.parameters(), config.clip_norm or float("inf"))
    # The one host sync per step (fp16's GradScaler adds its own inf check).
    step_loss, grad_norm = torch.stack([step_loss, grad_norm.float()]).tolist()
    step_loss = distributed.all_sum(step_loss, t.device)
    if not math.isfinite(grad_norm) and t.precision != "fp16":
        # A NaN/inf update would poison the weights (fp16's scaler skips such steps itself).
        t.optimizer.zero_grad(set_to_none=True)
        return StepResult(step_loss, grad_norm, applied=False)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    return StepResult(step_loss, grad_norm, applied=True)
