"""Streaming translation: peak memory against input size, and how to split the cores.

    python scripts/bench_stream.py --model runs/x/best.pt [--sizes 10000,100000,1000000]
        [--source data/tatoeba_de_en/train.de.gz] [--beam 1] [--workers-input FILE]

Table 1: ``seq2seq translate`` on the source's lines repeated to each size, each in
a fresh process (whole process: start, model load, translation); peak RSS is the
process's maximum resident set (``getrusage``), so it counts the model and torch.
Table 2: the same command on ``--workers-input`` with 1 worker x all cores against
N workers x (cores / N) threads, and whether their outputs are identical.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seq2seq.corpus import iter_lines  # noqa: E402

# Runs one command and prints its wall time and its peak RSS (KiB): a fresh parent per
# measurement, so RUSAGE_CHILDREN holds that command alone (and its worker processes).
MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line), "?"
    )
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    wanted = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"]
    return (
        f"{name}, {os.cpu_count()} cores, flags: {' '.join(f for f in wanted if f' {f}' in flags)}"
    )


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``command``."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True
    ).stdout.split()
    if out[2] != "0":
        raise SystemExit(f"failed ({out[2]}): {' '.join(command)}")
    return float(out[0]), int(out[1]) / 1024


def translate_command(model: str, source: Path, output: Path, beam: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "seq2seq", "-q", "translate", "--model", model, "--input",
        str(source), "--output", str(output), "--beam", str(beam), "--workers", str(workers),
        "--device", "cpu",
    ]  # fmt: skip


def memory_table(args, folder: Path) -> None:
    source_lines = [line for line in iter_lines(args.source) if line.strip()]
    print(
        f"\nStreaming memory ({cpu_name()}; beam {args.beam}, 1 worker, default chunks of 10,000 lines)"
    )
    print("| input lines | seconds | lines/s | peak RSS (MB) | x smallest |")
    print("|---|---|---|---|---|")
    first = None
    for size in args.sizes:
        path = folder / f"in_{size}.txt"
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in islice(cycle(source_lines), size))
        seconds, peak = measure(
            translate_command(args.model, path, folder / "out.txt", args.beam, 1)
        )
        first = first or peak
        print(
            f"| {size:,} | {seconds:.1f} | {size / seconds:,.0f} | {peak:,.0f} | {peak / first:.2f} |"
        )
        path.unlink()


def workers_table(args, folder: Path) -> None:
    cores = os.cpu_count() or 1
    print(f"\nWorkers on {args.workers_input} (beam {args.beam}, whole process, {cpu_name()})")
    print("| workers x threads | seconds | peak RSS per process (MB) | output identical |")
    print("|---|---|---|---|")
    reference = None
    for workers in sorted({1, *args.workers}):
        out = folder / f"out_w{workers}.txt"
        command = translate_command(args.model, Path(args.workers_input), out, args.beam, workers)
        seconds, peak = measure(command)
        reference = reference or out
        same = filecmp.cmp(reference, out, shallow=False)
        print(f"| {workers} x {max(1, cores // workers)} | {seconds:.2f} | {peak:,.0f} | {same} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--source", default=str(ROOT / "data/tatoeba_de_en/train.de.gz"))
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--workers-input", help="also compare worker splits on this file")
    parser.add_argument("--workers", default="2", help="worker counts to compare with 1")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if not args.skip_memory:
            memory_table(args, Path(tmp))
        if args.workers_input:
            workers_table(args, Path(tmp))
        print(f"\n({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
