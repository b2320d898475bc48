"""Does torch.compile help the decoder step? Training tokens/s with and without it.

    python scripts/bench_compile.py [--config configs/multi30k_de_en.yaml] [--steps 40] [--precision bf16]

Compiles ``Decoder._step`` (the per-target-token function the teacher-forced
loop calls T times per batch) with dynamic shapes, and reports compile time
and steady-state training throughput next to eager mode, in one process.
"""

from __future__ import annotations

import argparse
import time

import torch

from seq2seq import config as config_module
from seq2seq.data import build_training_data, collate, epoch_batches
from seq2seq.distributed import autocast_dtype
from seq2seq.model import Seq2Seq
from seq2seq.validate import token_loss_sum


def throughput(model, data, batches, dtype) -> tuple[float, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, first, tokens = time.perf_counter(), None, 0
    for i, indices in enumerate(batches):
        batch = collate(data.train_src, data.train_tgt, indices)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = token_loss_sum(logits, batch.tgt_out, 0.1) / batch.n_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i == 4:  # the first batches pay for compilation
            first, tokens = time.perf_counter(), 0
        else:
            tokens += batch.n_tokens
    return first - start, tokens / (time.perf_counter() - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    config = config_module.load(args.config)
    data = build_training_data(config.data)
    batches = epoch_batches(
        data.train_src, data.train_tgt, data.train_indices, config.train.batch_tokens, 0, 0
    )
    batches = batches[: args.steps + 5]
    dtype = autocast_dtype(args.precision)
    print(f"{'mode':<10} {'first 5 steps s':>16} {'tgt tok/s':>10}")
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab))
        if mode == "compiled":
            model.decoder._step = torch.compile(model.decoder._step, dynamic=True)
        warmup, speed = throughput(model, data, batches, dtype)
        print(f"{mode:<10} {warmup:16.1f} {speed:10.0f}", flush=True)


if __name__ == "__main__":
    main()
