"""Speed of the reference model on Multi30k: training and decoding, one table.

    python scripts/bench.py [--config configs/multi30k_de_en.yaml] [--model runs/x/best.pt] [--quick]

Measures, each in a fresh subprocess (so peak memory is per setting):
- the matrix-multiply peak of this machine (fp32 and bf16, GFLOP/s);
- training throughput in target tokens/s for fp32 and bf16 autocast, the
  model's FLOPs per target token (counted from its shapes, forward + backward
  = 3x forward) and the fraction of the matmul peak that achieves;
- peak resident memory of each training run;
- with --model, decoding of test_2016_flickr (1,000 sentences), batched,
  greedy and beam 5, fp32 and bf16, in sentences/s;
- with --profile, where a training step's time goes, by part of the model and
  by operator, per precision (scripts/profile_train.py).
Precisions the CPU does not compute natively (bf16 without AVX-512 BF16 or AMX)
are skipped. --quick uses fewer steps and 200 test sentences (about a minute on
an AVX-512 CPU, under 3 minutes on a 2-core AVX2-only one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def matmul_peak(dtype_name: str, size: int = 2048, seconds: float = 2.0) -> float:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9


def forward_flops_per_target_token(
    model_config, src_vocab: int, tgt_vocab: int, ratio: float
) -> float:
    """Multiply-adds x 2 of one forward pass, per target token; ``ratio`` = source/target tokens."""
    E, H = model_config.embedding_size, model_config.encoder_hidden_size
    D, A = model_config.decoder_hidden_size, model_config.attention_size
    L_enc, L_dec = model_config.encoder_layers, model_config.decoder_layers
    encoder = 2 * 2 * 4 * H * (E + H) + (L_enc - 1) * 2 * 2 * 4 * H * (
        2 * H + H
    )  # per source token
    keys = 2 * 2 * H * A  # per source token
    decoder = 2 * 4 * D * (E + D + D) + (L_dec - 1) * 2 * 4 * D * (2 * D)
    attention = 2 * D * A  # query projection (scores and context are O(S*A), small)
    combine = 2 * (D + 2 * H) * D
    output = 2 * D * tgt_vocab + (2 * D * E if model_config.tie_embeddings else 0)
    return (encoder + keys) * ratio + decoder + attention + combine + output


def train_worker(
    config_path: str, precision: str, steps: int, warmup: int, prepared: str = ""
) -> dict:
    """Train ``steps`` optimizer steps (after ``warmup``) with the training loop's own step.

    ``step.train_step`` is what ``seq2seq train`` calls: accumulation, clipping,
    the learning-rate schedule and scheduled sampling as the config says.
    ``prepared``: a prepared folder instead of the text files.
    """
    import dataclasses

    import torch

    from seq2seq import config as config_module
    from seq2seq.data import batch_stream, build_training_data
    from seq2seq.model import Seq2Seq
    from seq2seq.schedule import gold_probability, learning_rate
    from seq2seq.step import make_trainable, train_step

    config = config_module.load(config_path)
    cfg = config.train
    start = time.perf_counter()
    data = build_training_data(dataclasses.replace(config.data, prepared=prepared or None))
    stream = batch_stream(data, cfg.batch_tokens, cfg.seed, 0, 0)
    startup = time.perf_counter() - start
    torch.manual_seed(0)
    model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab))
    trainable = make_trainable(model.train(), cfg, torch.device("cpu"), precision)
    tokens = src_tokens = 0
    for step in range(warmup + steps):
        if step == warmup:
            start, tokens, src_tokens = time.perf_counter(), 0, 0
        batches = [batch for _, batch in (next(stream) for _ in range(cfg.accumulate))]
        step_tokens = sum(batch.n_tokens for batch in batches)
        lr = learning_rate(cfg, step, 1.0, 0.0)
        train_step(trainable, batches, step_tokens, lr, cfg, gold_probability(cfg, step))
        tokens += step_tokens
        src_tokens += sum(int(batch.src_lengths.sum()) for batch in batches)
    seconds = time.perf_counter() - start
    flops = 3 * forward_flops_per_target_token(
        config.model, len(data.src_vocab), len(data.tgt_vocab), src_tokens / tokens
    )
    return {
        "tokens_per_s": tokens / seconds,
        "flops_per_token": flops,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "startup_s": startup,
    }


def decode_worker(model_path: str, source: str, limit: int, beam: int, precision: str) -> dict:
    from seq2seq.corpus import read_lines
    from seq2seq.translate import Translator

    translator = Translator.from_checkpoint(model_path, device="cpu", precision=precision)
    lines = read_lines(source)[:limit]
    translator.translate(lines[:20], beam=beam)  # warm-up
    start = time.perf_counter()
    results = translator.translate_detailed(lines, beam=beam)
    seconds = time.perf_counter() - start
    tokens = sum(len(r.candidates[0].tokens) + 1 for r in results if r.candidates)
    return {
        "sentences_per_s": len(lines) / seconds,
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def in_subprocess(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--model", help="checkpoint for the decoding rows")
    parser.add_argument("--source", default="data/multi30k/test_2016_flickr.de.gz")
    parser.add_argument("--quick", action="store_true", help="about a minute in all")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also where a training step's time goes (profile_train.py)",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "peak":
            result = {"gflops": matmul_peak(rest[0])}
        elif kind == "train":
            result = train_worker(rest[0], rest[1], int(rest[2]), int(rest[3]), *rest[4:])
        else:
            result = decode_worker(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
        print(json.dumps(result))
        return

    import torch

    from seq2seq.device import native_bf16

    # Only what this machine computes natively: emulated bf16 on an AVX2-only CPU runs at
    # about 1 GFLOP/s and would take hours (README, "Speed").
    precisions = ["fp32", "bf16"] if native_bf16(torch.device("cpu")) else ["fp32"]
    steps, warmup = (15, 3) if args.quick else (80, 5)
    limit = 200 if args.quick else 1000
    print(
        f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}; config {args.config}"
    )
    peaks = {p: in_subprocess("peak", p)["gflops"] for p in precisions}
    print("matmul peak: " + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items()))
    if "bf16" not in precisions:
        print("bf16 skipped: this CPU has neither AVX-512 BF16 nor AMX")
    print()
    print(
        f"{'training':<10} {'tgt tok/s':>10} {'MFLOP/tok':>10} {'GFLOP/s':>8} {'% fp32 peak':>11} {'% own peak':>10} {'peak MB':>8}"
    )
    for precision in precisions:
        r = in_subprocess("train", args.config, precision, str(steps), str(warmup))
        achieved = r["tokens_per_s"] * r["flops_per_token"] / 1e9
        print(
            f"{precision:<10} {r['tokens_per_s']:10.0f} {r['flops_per_token'] / 1e6:10.1f} {achieved:8.0f}"
            f" {100 * achieved / peaks['fp32']:10.0f}% {100 * achieved / peaks[precision]:9.0f}% {r['peak_rss_mb']:8.0f}"
        )
    if args.profile:
        for precision in precisions:
            print()
            profile = [sys.executable, str(ROOT / "scripts" / "profile_train.py")]
            profile += ["--config", args.config, "--precision", precision]
            profile += ["--steps", str(min(steps, 20)), "--warmup", str(warmup)]
            subprocess.run(profile, check=True, cwd=ROOT)
    if args.model:
        print(
            f"\n{'decoding':<12} {'sent/s':>8} {'tok/s':>10} {'seconds':>8} {'peak MB':>8}   ({limit} sentences, batched)"
        )
        for beam, precision in itertools.product((1, 5), precisions):
            r = in_subprocess("decode", args.model, args.source, str(limit), str(beam), precision)
            name = ("greedy" if beam == 1 else f"beam {beam}") + f" {precision}"
            print(
                f"{name:<12} {r['sentences_per_s']:8.1f} {r['tokens_per_s']:10.0f} {r['seconds']:8.2f} {r['peak_rss_mb']:8.0f}"
            )


if __name__ == "__main__":
    main()
