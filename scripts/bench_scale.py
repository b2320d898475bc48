"""How cost grows with the corpus: prepare time, training speed and peak memory.

    python scripts/bench_scale.py [--sizes 100000 1000000 5000000] [--steps 60] [--work runs/scale]

For each size it writes a corpus by replicating Multi30k train (data/multi30k,
see `seq2seq download multi30k`) line by line up to that many pairs (plain text,
made here, never committed), runs `seq2seq prepare` on it, then trains the
reference model from the prepared, memory-mapped folder for a few steps in a
fresh process. Peak memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_corpus(prefix: Path, size: int) -> None:
    from seq2seq.corpus import read_lines

    for lang in ("de", "en"):
        path = Path(f"{prefix}.{lang}")
        if path.exists():
            continue
        lines = read_lines(ROOT / "data" / "multi30k" / f"train.{lang}.gz")
        with open(f"{path}.tmp", "w", encoding="utf-8") as out:
            for start in range(0, size, len(lines)):
                out.write("\n".join(lines[: min(len(lines), size - start)]) + "\n")
        Path(f"{path}.tmp").replace(path)


def train_worker(config_path: str, prepared: str, steps: int) -> dict:
    import torch

    from seq2seq import config as config_module
    from seq2seq.data import build_training_data, collate, epoch_batches
    from seq2seq.distributed import autocast_dtype, resolve_precision
    from seq2seq.model import Seq2Seq
    from seq2seq.validate import token_loss_sum

    config = config_module.load(config_path)
    data_config = dataclasses.replace(config.data, prepared=prepared)
    start = time.perf_counter()
    data = build_training_data(data_config)
    batches = epoch_batches(
        data.train_src, data.train_tgt, data.train_indices, config.train.batch_tokens, 1, 0
    )
    ready = time.perf_counter() - start
    torch.manual_seed(0)
    model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    dtype = autocast_dtype(resolve_precision(config.train.precision, torch.device("cpu")))
    tokens = 0
    for i, indices in enumerate(batches[: steps + 3]):
        if i == 3:
            start, tokens = time.perf_counter(), 0
        batch = collate(data.train_src, data.train_tgt, indices)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = token_loss_sum(logits, batch.tgt_out, 0.1) / batch.n_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += batch.n_tokens
    return {
        "startup_s": ready,
        "tokens_per_s": tokens / (time.perf_counter() - start),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batches_per_epoch": len(batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--work", default="runs/scale")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(train_worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        prefix = work / f"corpus_{size}" / "train"
        prefix.parent.mkdir(parents=True, exist_ok=True)
        make_corpus(prefix, size)
        prepared = work / f"prepared_{size}"
        start = time.perf_counter()
        prepare = subprocess.run(
            [
                sys.executable,
                "-m",
                "seq2seq",
                "-q",
                "prepare",
                "--config",
                args.config,
                "--output",
                str(prepared),
                "--set",
                f"data.train={prefix}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if prepare.returncode != 0:
            raise SystemExit(prepare.stderr)
        prepare_s = time.perf_counter() - start
        prepare_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        # The training config must name the same corpus the folder was prepared from.
        config_path = work / f"config_{size}.yaml"
        config_path.write_text(
            (ROOT / args.config)
            .read_text()
            .replace("train: data/multi30k/train", f"train: {prefix}")
        )
        worker = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                str(config_path),
                str(prepared),
                str(args.steps),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if worker.returncode != 0:
            raise SystemExit(worker.stderr)
        result = json.loads(worker.stdout.strip().splitlines()[-1])
        rows.append((size, prepare_s, prepare_rss, result))
        print(f"done {size}: prepare {prepare_s:.1f}s", file=sys.stderr, flush=True)

    base = rows[0]
    print(
        f"{'pairs':>10} {'prepare s':>10} {'s/M pairs':>10} {'load s':>7} {'tgt tok/s':>10} {'train peak MB':>14} {'x smallest':>10}"
    )
    for size, prepare_s, _, r in rows:
        print(
            f"{size:>10} {prepare_s:10.1f} {prepare_s / size * 1e6:10.1f} {r['startup_s']:7.1f} {r['tokens_per_s']:10.0f}"
            f" {r['peak_rss_mb']:14.0f} {r['peak_rss_mb'] / base[3]['peak_rss_mb']:10.2f}"
        )


if __name__ == "__main__":
    main()
