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
import torch.nn.functional as F
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
    """Summed cross-entropy over real target tokens; logits (B, T, V), tgt_out (B, T)."""
    return F.cross_entropy(
        logits.float().flatten(0, 1),  # (B*T, V)
        tgt_out.flatten(),  # (B*T,)
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


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
    optimizer = optimizer_class[config.optimizer](
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
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
