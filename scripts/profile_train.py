"""Where a training step's time goes: by part of the model, and by operator (issue 26).

    python scripts/profile_train.py [--config configs/multi30k_de_en.yaml] [--precision bf16]
                                    [--steps 20] [--warmup 5] [--threads N] [--compare]

Runs the training loop's own step (step.train_step) on the config's data and
model, under torch.profiler, after ``--warmup`` unprofiled steps. Parts are
labelled from outside the model (its functions wrapped with
``record_function``, nothing in the package changes): the encoder, the
decoder's teacher-forced loop (of which attention; the LSTM cell updates of both
are shown apart), the output layer, the loss, the backward pass (all of it:
autograd runs the parts' gradients interleaved) and the optimizer (clipping
and the update). A part's share is its time over the profiled steps' total;
the profiler adds overhead, so the unprofiled step time is printed beside it.
Prints two tables (markdown) and the CPU with its flags.

``--compare`` also times the decoder's weight gradients both ways in this one
process, on the same batches, in alternating rounds: one product over all
steps (weight_grads.LoopLinear, the default) against autograd's per-step
products (what the training step did before), and prints their ratio.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = {
    "encoder": "forward: encoder (BiLSTM)",
    "decoder": "forward: decoder loop (all steps)",
    "attention": "  of which attention",
    "cell": "LSTM cell updates, encoder's and decoder's (within the two above)",
    "output": "forward: output layer",
    "loss": "forward: loss",
    "backward": "backward (all parts)",
    "clip": "optimizer: clip",
    "update": "optimizer: update",
}


def labelled(name: str, function):
    import torch

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with torch.profiler.record_function(name):
            return function(*args, **kwargs)

    return wrapper


def label_parts(trainable) -> None:
    import torch

    from seq2seq import model, recurrence, step

    model.Encoder.forward = labelled("encoder", model.Encoder.forward)
    model.Decoder.forward = labelled("decoder", model.Decoder.forward)
    model.attend = labelled("attention", model.attend)
    model.lstm_update = recurrence.lstm_update = labelled("cell", model.lstm_update)
    model.Decoder.logits = labelled("output", model.Decoder.logits)
    step.token_loss_sum = labelled("loss", step.token_loss_sum)
    torch.Tensor.backward = labelled("backward", torch.Tensor.backward)
    step.nn.utils.clip_grad_norm_ = labelled("clip", step.nn.utils.clip_grad_norm_)
    trainable.optimizer.step = labelled("update", trainable.optimizer.step)


def compare_weight_grads(trainable, batches, cfg, rounds: int = 3) -> None:
    """Seconds for the same batches with LoopLinear and with per-step weight gradients,
    alternating so that both see the same machine; prints a table and the ratio."""
    from seq2seq.step import train_step

    decoder = trainable.model.decoder
    times = {"one product over all steps (LoopLinear)": [], "per step (autograd)": []}
    for _ in range(rounds):
        for name in times:
            if name.startswith("per step"):
                decoder.__dict__["loop_layers"] = decoder.step_layers
            start = time.perf_counter()
            for batch in batches:
                train_step(trainable, [batch], batch.n_tokens, cfg.lr, cfg, 1.0)
            times[name].append(time.perf_counter() - start)
            decoder.__dict__.pop("loop_layers", None)
    tokens = sum(batch.n_tokens for batch in batches)
    print("| decoder weight gradients | best of rounds: ms per step | target tokens/s |")
    print("|---|---|---|")
    for name, seconds in times.items():
        best = min(seconds)
        print(f"| {name} | {best / len(batches) * 1000:.1f} | {tokens / best:,.0f} |")
    loop, step = (min(v) for v in times.values())
    print(f"\nLoopLinear: {step / loop:.2f}x the per-step rate ({rounds} rounds of "
          f"{len(batches)} steps each, alternating)\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "multi30k_de_en.yaml"))
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: the default")
    parser.add_argument("--ops", type=int, default=15, help="operators listed")
    parser.add_argument("--compare", action="store_true", help="LoopLinear against per-step")
    args = parser.parse_args()

    import torch

    from seq2seq import config as config_module
    from seq2seq.data import batch_stream, build_training_data
    from seq2seq.model import Seq2Seq
    from seq2seq.schedule import gold_probability, learning_rate
    from seq2seq.step import make_trainable, train_step

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_module.load(args.config)
    cfg = config.train
    data = build_training_data(config.data)
    stream = batch_stream(data, cfg.batch_tokens, cfg.seed, 0, 0)
    torch.manual_seed(0)
    model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab))
    trainable = make_trainable(model.train(), cfg, torch.device("cpu"), args.precision)

    def run(steps: int) -> tuple[float, int]:
        tokens, start = 0, time.perf_counter()
        for i in range(steps):
            batches = [batch for _, batch in (next(stream) for _ in range(cfg.accumulate))]
            step_tokens = sum(batch.n_tokens for batch in batches)
            lr = learning_rate(cfg, i, 1.0, 0.0)
            train_step(trainable, batches, step_tokens, lr, cfg, gold_probability(cfg, i))
            tokens += step_tokens
        return time.perf_counter() - start, tokens

    run(args.warmup)
    if args.compare:
        compare_weight_grads(trainable, [next(stream)[1] for _ in range(args.steps)], cfg)
    plain_s, plain_tokens = run(args.steps)
    label_parts(trainable)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        profiled_s, _ = run(args.steps)
    events = profile.key_averages()
    totals = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in PARTS}
    flags = open("/proc/cpuinfo").read()
    model_name = next(line for line in flags.splitlines() if line.startswith("model name"))
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
    print(f"## Training step profile: {Path(args.config).name}, {args.precision}")
    print()
    print(f"- CPU: {model_name.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads; "
          f"flags: {' '.join(f for f in wanted if f' {f}' in flags)}")  # fmt: skip
    print(f"- torch {torch.__version__}; {args.steps} steps after {args.warmup} warm-up steps")
    print(f"- unprofiled: {plain_s / args.steps * 1000:.1f} ms per step, "
          f"{plain_tokens / plain_s:,.0f} target tokens/s; profiled: "
          f"{profiled_s / args.steps * 1000:.1f} ms per step")  # fmt: skip
    print()
    print("| part | ms per step | share |")
    print("|---|---|---|")
    for key, name in PARTS.items():
        seconds = totals.get(key, 0.0)
        print(f"| {name} | {seconds / args.steps * 1000:.1f} | {100 * seconds / profiled_s:.1f}% |")
    print()
    print("| operator | self ms per step | share | calls per step |")
    print("|---|---|---|---|")
    ops = sorted(
        (e for e in events if e.key not in PARTS), key=lambda e: e.self_cpu_time_total, reverse=True
    )
    for event in ops[: args.ops]:
        seconds = event.self_cpu_time_total / 1e6
        print(
            f"| `{event.key}` | {seconds / args.steps * 1000:.1f} | "
            f"{100 * seconds / profiled_s:.1f}% | {event.count / args.steps:.0f} |"
        )


if __name__ == "__main__":
    main()
