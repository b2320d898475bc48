"""Learning rate x batch size sweep: short trainings, a table, a plot of validation BLEU and
every run's learning curves (seq2seq plot) in one figure.

    python scripts/sweep.py --config configs/multi30k_de_en.yaml \
        --lr 0.0005 0.001 0.002 --batch-tokens 1000 2000 4000 --minutes 5 [--out runs/sweep]

Each run is an ordinary `seq2seq train --set train.lr=... --set train.batch_tokens=...`
(the same command a `wandb sweep` agent can drive: see configs/sweeps/sweep_wandb.yaml).
Runs one at a time (the CPU has few cores); an existing finished run is reused.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from pathlib import Path

import torch


def best_bleu(run: Path) -> float:
    history = torch.load(run / "last.pt", weights_only=True)["progress"]["history"]
    return max(entry["bleu"] for entry in history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--lr", type=float, nargs="+", default=[0.0005, 0.001, 0.002])
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per run")
    parser.add_argument("--out", default="runs/sweep")
    parser.add_argument("--set", action="append", default=[], help="more overrides for every run")
    args = parser.parse_args()
    out = Path(args.out)
    results = {}
    for lr, batch_tokens in itertools.product(args.lr, args.batch_tokens):
        run = out / f"lr{lr:g}_bt{batch_tokens}"
        if not (run / "last.pt").exists():
            command = [
                sys.executable,
                "-m",
                "seq2seq",
                "-q",
                "train",
                "--config",
                args.config,
                "--output-dir",
                str(run),
                "--overwrite",
                "--set",
                f"train.lr={lr}",
                "--set",
                f"train.batch_tokens={batch_tokens}",
                "--set",
                f"train.max_minutes={args.minutes}",
                "--set",
                "wandb.mode=disabled",
                *[x for s in args.set for x in ("--set", s)],
            ]
            print("+ " + " ".join(command[2:]), file=sys.stderr, flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        results[lr, batch_tokens] = best_bleu(run)

    header = "lr \\ batch tokens"
    print(f"{header:>18} " + " ".join(f"{b:>8}" for b in args.batch_tokens))
    for lr in args.lr:
        print(f"{lr:>18g} " + " ".join(f"{results[lr, b]:8.2f}" for b in args.batch_tokens))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for batch_tokens in args.batch_tokens:
        axes.plot(
            args.lr,
            [results[lr, batch_tokens] for lr in args.lr],
            marker="o",
            label=f"{batch_tokens} tokens",
        )
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel(f"best validation BLEU after {args.minutes:g} min")
    axes.legend(title="batch size")
    figure.tight_layout()
    figure.savefig(out / "sweep.png", dpi=120)
    print(f"plot: {out / 'sweep.png'}")
    from seq2seq.curves import plot  # every run's learning curves on one figure

    runs = [out / f"lr{lr:g}_bt{b}" for lr, b in itertools.product(args.lr, args.batch_tokens)]
    print(f"curves: {plot(runs, out / 'curves.png')}")


if __name__ == "__main__":
    main()
