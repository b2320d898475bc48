"""The pruning curve: prune a model by 0/25/50/75%, fine-tune each briefly, measure, plot.

    python scripts/prune_curve.py --model runs/multi30k_de_en/best.pt \
        --config configs/multi30k_de_en.yaml [--steps 200] [--threads 0] [--measure-only]

For each amount: ``seq2seq prune``, then ``seq2seq train --init-from`` for
``--steps`` steps (amount 0 is fine-tuned the same way, so every row had the
same extra training), then parameters, checkpoint size, whole-process decode
time of test_2016_flickr (greedy and beam 5) and BLEU (beam 5). Prints a
markdown table and writes ``runs/prune_curve/curve.png`` and ``curve.json``.
``--measure-only`` re-measures existing fine-tuned models (e.g. on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AMOUNTS = (0.0, 0.25, 0.5, 0.75)


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def seq2seq(*args: str) -> str:
    return run(sys.executable, "-m", "seq2seq", *args)


def timed_translation(model: Path, source: Path, beam: int, output: Path) -> float:
    start = time.perf_counter()
    seq2seq("translate", "--model", str(model), "--beam", str(beam), "--input", str(source),
            "--output", str(output), "--device", "cpu")  # fmt: skip
    return time.perf_counter() - start


def measure(model: Path, source: Path, reference: Path, folder: Path) -> dict:
    import torch

    payload = torch.load(model, map_location="cpu", weights_only=True)
    row = {
        "parameters": sum(t.numel() for t in payload["model"].values()),
        "size_mb": model.stat().st_size / 1e6,
        "greedy_s": timed_translation(model, source, 1, folder / "greedy.txt"),
        "beam5_s": timed_translation(model, source, 5, folder / "beam5.txt"),
    }
    scores = seq2seq("evaluate", "--hyp", str(folder / "beam5.txt"), "--ref", str(reference),
                     "--metrics", "bleu", "--json")  # fmt: skip
    row["bleu"] = json.loads(scores)["bleu"]["score"]
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    amounts = [100 * r["amount"] for r in rows]
    figure, left = plt.subplots(figsize=(6, 4))
    left.plot(amounts, [r["bleu"] for r in rows], "o-", color="tab:blue", label="BLEU (beam 5)")
    left.set_xlabel("units pruned (%)")
    left.set_ylabel("BLEU, test_2016_flickr", color="tab:blue")
    right = left.twinx()
    right.plot(amounts, [r["beam5_s"] for r in rows], "s--", color="tab:red", label="beam 5 s")
    right.plot(amounts, [r["greedy_s"] for r in rows], "^--", color="tab:orange", label="greedy s")
    right.set_ylabel("decode time, whole process (s)", color="tab:red")
    for row, x in zip(rows, amounts, strict=True):
        left.annotate(f"{row['parameters'] / 1e6:.1f}M", (x, row["bleu"]), textcoords="offset points",
                      xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    figure.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/multi30k_de_en/best.pt")
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps per amount")
    parser.add_argument("--threads", type=int, default=0, help="train.num_threads (0: all)")
    parser.add_argument("--source", default="data/multi30k/test_2016_flickr.de.gz")
    parser.add_argument("--reference", default="data/multi30k/test_2016_flickr.en.gz")
    parser.add_argument("--out", default="runs/prune_curve")
    parser.add_argument("--measure-only", action="store_true")
    args = parser.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for amount in AMOUNTS:
        folder = out / f"amount_{int(100 * amount)}"
        tuned = folder / "best.pt"
        if not args.measure_only and not tuned.exists():
            pruned = out / f"pruned_{int(100 * amount)}.pt"
            seq2seq(
                "prune", "--model", args.model, "--amount", str(amount), "--output", str(pruned)
            )
            seq2seq("train", "--config", args.config, "--output-dir", str(folder), "--overwrite",
                    "--init-from", str(pruned), "--set", f"train.max_steps={args.steps}",
                    "--set", "train.max_minutes=0", "--set", f"train.valid_every={args.steps}",
                    "--set", f"train.num_threads={args.threads}")  # fmt: skip
        row = {
            "amount": amount,
            **measure(tuned, ROOT / args.source, ROOT / args.reference, folder),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "curve.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / "curve.png")
    print("\n| pruned | parameters | checkpoint MB | greedy s | beam 5 s | BLEU (beam 5) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {100 * r['amount']:.0f}% | {r['parameters'] / 1e6:.2f}M | {r['size_mb']:.1f} "
              f"| {r['greedy_s']:.1f} | {r['beam5_s']:.1f} | {r['bleu']:.1f} |")  # fmt: skip
    print(f"\nplot: {out / 'curve.png'}")


if __name__ == "__main__":
    main()
