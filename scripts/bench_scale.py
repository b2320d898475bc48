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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--work", default="runs/scale")
    parser.add_argument("--precision", default="bf16", help="fp32 or bf16")
    args = parser.parse_args()
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
        worker = subprocess.run(  # bench.py's training worker, in a fresh process
            [
                sys.executable,
                str(ROOT / "scripts" / "bench.py"),
                "--worker",
                "train",
                str(config_path),
                args.precision,
                str(args.steps),
                "3",
                str(prepared),
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
