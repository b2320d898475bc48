"""Reproduce a results-table row from scratch: train, pick a checkpoint, translate test, score.

    python scripts/reproduce.py --config configs/multi30k_de_en.yaml \
        --test data/multi30k/test_2016_flickr [--average 5] [--beam 5] [--alpha 0.6] \
        [--output-dir runs/reproduce_de_en] [--set train.max_minutes=25 ...]

Runs ordinary `seq2seq` commands (printed as they run), so each step can be
repeated by hand. --average K averages the weights of the last K validation
checkpoints (it sets train.keep_checkpoints=K); otherwise best.pt is used.
Prints a Markdown row: direction, test set, BLEU, chrF, signature, time, command.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from seq2seq import config as config_module


def run(args: list[str]) -> str:
    print("+ seq2seq " + shlex.join(args), file=sys.stderr, flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], stdout=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"seq2seq {args[0]} failed with exit code {result.returncode}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--test", required=True, help="test prefix, e.g. data/multi30k/test_2016_flickr"
    )
    parser.add_argument("--output-dir")
    parser.add_argument("--average", type=int, default=0, help="average the last K checkpoints")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.6)
    parser.add_argument("--precision", default="auto", help="decoding precision: auto, fp32, bf16")
    parser.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    parser.add_argument(
        "--skip-training", action="store_true", help="reuse the output folder's run"
    )
    args = parser.parse_args()

    overrides = list(args.set) + (
        [f"train.keep_checkpoints={args.average}"] if args.average else []
    )
    config = config_module.load(args.config, overrides)
    src, tgt = config.data.src_lang, config.data.tgt_lang
    out = Path(args.output_dir or f"runs/reproduce_{Path(args.config).stem}")
    sets = [x for item in overrides for x in ("--set", item)]
    start = time.time()
    if not args.skip_training:
        run(["train", "--config", args.config, "--output-dir", str(out), "--overwrite", *sets])
    minutes = torch.load(out / "last.pt", weights_only=True)["progress"]["elapsed"] / 60
    model = out / "best.pt"
    if args.average:
        model = out / f"average_last{args.average}.pt"
        run(["average", "--run", str(out), "--last", str(args.average), "--output", str(model)])
    test_src = next(
        p for p in (Path(f"{args.test}.{src}"), Path(f"{args.test}.{src}.gz")) if p.exists()
    )
    test_ref = next(
        p for p in (Path(f"{args.test}.{tgt}"), Path(f"{args.test}.{tgt}.gz")) if p.exists()
    )
    hyp = out / f"{Path(args.test).name}.{tgt}.hyp"
    report = json.loads(
        run(
            [
                "evaluate",
                "--model",
                str(model),
                "--src",
                str(test_src),
                "--ref",
                str(test_ref),
                "--output",
                str(hyp),
                "--beam",
                str(args.beam),
                "--alpha",
                str(args.alpha),
                "--precision",
                args.precision,
                "--metrics",
                "bleu,chrf",
                "--json",
            ]
        )
    )
    hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    command = (
        f"python scripts/reproduce.py --config {args.config} --test {args.test}"
        + (f" --average {args.average}" if args.average else "")
        + "".join(f" --set {s}" for s in args.set)
    )
    print(
        f"| {src}->{tgt} | {Path(args.test).name} | {report['bleu']['score']:.1f} | "
        f"{report['chrf']['score']:.1f} | `{report['bleu']['signature']}` | "
        f"{minutes:.0f} min training ({hardware}) | `{command}` |"
    )
    print(f"total wall-clock: {(time.time() - start) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
