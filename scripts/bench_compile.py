"""Does torch.compile help the decoder step? Training tokens/s with and without it.

    python scripts/bench_compile.py [--config configs/multi30k_de_en.yaml] [--steps 40] [--precision fp32]

Compiles ``Decoder.step_with`` (the per-target-token function the teacher-forced
loop calls T times per batch) with dynamic shapes, and reports compile time
and steady-state training throughput next to eager mode, in one process.
"""

from __future__ import annotations

import argparse
import time

import torch

from seq2seq import config as config_module
from seq2seq.data import batch_stream, build_training_data
from seq2seq.model import Seq2Seq
from seq2seq.schedule import learning_rate
from seq2seq.step import make_trainable, train_step


def throughput(model, config, stream, steps: int, precision: str) -> tuple[float, float]:
    """Seconds of the first 5 steps (compilation), then target tokens/s of the training step."""
    cfg = config.train
    trainable = make_trainable(model.train(), cfg, torch.device("cpu"), precision)
    start, first, tokens = time.perf_counter(), None, 0
    for step in range(steps + 5):
        batches = [batch for _, batch in (next(stream) for _ in range(cfg.accumulate))]
        step_tokens = sum(batch.n_tokens for batch in batches)
        train_step(trainable, batches, step_tokens, learning_rate(cfg, step, 1.0, 0.0), cfg)
        if step == 4:  # the first steps pay for compilation
            first, tokens = time.perf_counter(), 0
        else:
            tokens += step_tokens
    return first - start, tokens / (time.perf_counter() - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument(
        "--precision", default="fp32", help="bf16 only where the CPU has AVX-512 BF16 or AMX"
    )
    args = parser.parse_args()
    config = config_module.load(args.config)
    data = build_training_data(config.data)
    print(f"{'mode':<10} {'first 5 steps s':>16} {'tgt tok/s':>10}")
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab))
        if mode == "compiled":
            model.decoder.step_with = torch.compile(model.decoder.step_with, dynamic=True)
        stream = batch_stream(data, config.train.batch_tokens, config.train.seed, 0, 0)
        warmup, speed = throughput(model, config, stream, args.steps, args.precision)
        print(f"{mode:<10} {warmup:16.1f} {speed:10.0f}", flush=True)


if __name__ == "__main__":
    main()
