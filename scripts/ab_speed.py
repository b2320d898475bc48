"""Training throughput of two commits on this machine, in alternating rounds (issue 26).

    python scripts/ab_speed.py --old ec8f161 [--new HEAD] [--config configs/multi30k_de_en.yaml] \
        [--steps 300] [--rounds 2] [--threads 2] [--set train.precision=fp32]

The AVX2-only case on any x86 CPU: ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
ONEDNN_MAX_CPU_ISA=AVX2 in the environment (both commits' runs inherit it), in fp32.

A figure measured on another day or another machine instance of the same CPU kind
is no evidence of a regression: this script checks out both commits (git worktrees
in a temporary folder, sharing this checkout's data/ and virtual environment), trains
each for --steps steps from the same config and seed, old and new in turn, and
prints the target tokens/s of each round's log lines after the first (which includes
start-up). The ratio of medians measured in one run is what it reports.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
RATE = re.compile(r"step (\d+) \|.*\| (\d+) tgt tok/s")


def worktree(rev: str, parent: Path) -> Path:
    """A checkout of ``rev`` whose data/ is this checkout's."""
    path = parent / rev.replace("/", "_")
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(path), rev], cwd=ROOT, check=True
    )
    (path / "data").mkdir(exist_ok=True)
    for corpus in (ROOT / "data").iterdir():
        target = path / "data" / corpus.name
        if not target.exists():
            target.symlink_to(corpus)
    return path


def rates(tree: Path, args, out: Path) -> list[float]:
    """One training run of ``tree``'s code; the log lines' tokens/s after the first."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "OMP_NUM_THREADS": str(args.threads),
        "WANDB_MODE": "disabled",
    }
    overrides = [f"train.max_steps={args.steps}", "train.max_minutes=0",
                 f"train.num_threads={args.threads}", f"train.valid_every={10 * args.steps}",
                 "train.log_every=50", "wandb.mode=disabled", *args.set]  # fmt: skip
    command = [sys.executable, "-m", "seq2seq", "train", "--config", args.config,
               "--output-dir", str(out)] + [a for o in overrides for a in ("--set", o)]  # fmt: skip
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ab_speed: {tree.name} failed:\n{done.stderr[-2000:]}")
    found = [float(m.group(2)) for m in RATE.finditer(done.stdout + done.stderr)]
    if len(found) < 2:
        sys.exit(f"ab_speed: {tree.name} logged {len(found)} rates; raise --steps")
    return found[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for both commits, e.g. train.precision=fp32")  # fmt: skip
    args = parser.parse_args()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "unknown CPU",
    )
    with tempfile.TemporaryDirectory(prefix="ab_speed_") as tmp:
        trees = {rev: worktree(rev, Path(tmp)) for rev in (args.old, args.new)}
        measured: dict[str, list[float]] = {rev: [] for rev in trees}
        try:
            for round_ in range(args.rounds):
                for rev, tree in trees.items():
                    found = rates(tree, args, Path(tmp) / f"run_{round_}_{tree.name}")
                    print(f"round {round_ + 1} {rev}: {', '.join(f'{r:.0f}' for r in found)}")
                    measured[rev] += found
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    isa = " ".join(f"{k}={os.environ[k]}" for k in ISA_VARIABLES if k in os.environ)
    print(
        f"\n{cpu}, {args.threads} threads, {args.config}, {args.steps} steps x {args.rounds} "
        f"rounds{', ' + ' '.join(args.set) if args.set else ''}{', ' + isa if isa else ''}\n"
    )
    print("| commit | median target tokens/s | min | max |\n|---|---|---|---|")
    for rev, found in measured.items():
        print(
            f"| {rev} | {statistics.median(found):,.0f} | {min(found):,.0f} | {max(found):,.0f} |"
        )
    old, new = (statistics.median(measured[r]) for r in (args.old, args.new))
    print(f"\n{args.new} / {args.old}: {new / old:.2f}x")


if __name__ == "__main__":
    main()
