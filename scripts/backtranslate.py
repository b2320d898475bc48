"""Back-translation of Multi30k task 2's monolingual captions (issue 24), resumable at every stage.

    python scripts/backtranslate.py --direction de-en --variant tagged-beam \
        [--reverse runs/q_en_de_1h/best.pt] [--workdir runs/bt_de_en] \
        [--final-minutes 55] [--weight 1.0] [--threads 1] [--init-from runs/q_de_en_1h/best.pt]

For de->en the target side is English: English captions are translated into
German by the reverse (en->de) model, and the synthetic German with the real
English joins the real pairs to train the final de->en model (Sennrich,
Haddow and Birch 2016). Stages, each skipped when its output is complete:

1. reverse  the reverse model: --reverse CKPT, or trained here from
            configs/quality/multi30k_{tgt}_{src}_1h.yaml (`seq2seq train --resume`)
2. mono     the target-language captions of data/multi30k_task2 (`seq2seq download
            multi30k --task 2`), each once, without the lines already in task 1's train
3. translate  the reverse model translates them (`seq2seq translate --resume`): beam 5
            (variant beam, tagged-beam), sampling (sample, tagged-sample: temperature 1,
            Edunov et al. 2018), or beam 5 with noise (noised-beam: Edunov et al.'s
            deletions, filler tokens and local swaps, Lample et al. 2018)
4. corpus   data/bt/{workdir name}.{src,tgt}.gz: synthetic source, real target; pairs with an empty
            synthetic side are dropped
5. final    the final model on real + synthetic pairs: the reverse recipe's architecture
            and schedule, data.train a list (the real corpus at weight 1, the synthetic one
            at --weight, tagged <bt> for the tagged variants: Caswell et al. 2019), chosen
            on val BLEU (train.valid_metric), --final-minutes of training; with --init-from,
            it starts from that forward model (its tokenizers; a tag joins its vocabulary)
6. score    the final model on val and test_2016_flickr (beam 5), into {workdir}/scores.json

Each stage's time is written to {workdir}/times.json, with the CPU's model name.
Run stages one after another in one process (as this script does) or again after
an interruption: finished stages are skipped, a stopped training or translation resumes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("beam", "tagged-beam", "sample", "tagged-sample", "noised-beam")
TAG = "<bt>"


def run(*args: str, threads: int, capture: bool = False) -> str:
    """A seq2seq command with ``threads`` threads; its failure stops the recipe."""
    command = [sys.executable, "-m", "seq2seq", *args]
    print("+ seq2seq", " ".join(args), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE if capture else None, text=True
    )
    if done.returncode != 0:
        sys.exit(f"backtranslate: stage failed: seq2seq {' '.join(args)}")
    return done.stdout or ""


def read(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def write(path: Path, lines: list[str]) -> None:
    """Atomically: a stage's output exists only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(partial, "wt", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
    partial.replace(path)


def monolingual(lang: str, out: Path, data: Path = ROOT / "data") -> int:
    """Task 2's captions in ``lang``, each once (spaces normalized), minus task 1's training
    side in ``lang``: the lines the final model would otherwise see twice."""
    folder = data / "multi30k_task2"
    files = sorted(folder.glob(f"train.*.{lang}.gz"))
    if len(files) != 5:
        sys.exit(
            f"backtranslate: {folder} lacks train.1-5.{lang}.gz; run: seq2seq download multi30k --task 2"
        )
    parallel = {" ".join(line.split()) for line in read(data / "multi30k" / f"train.{lang}.gz")}
    seen, kept = set(), []
    for path in files:
        for line in read(path):
            line = " ".join(line.split())
            if line and line not in parallel and line not in seen:
                seen.add(line)
                kept.append(line)
    write(out, kept)
    return len(kept)


def noised(line: str, rng: random.Random) -> str:
    """Edunov et al. 2018's noise: each word deleted (p 0.1) or replaced by a filler (p 0.1),
    then words shuffled by at most 3 positions (Lample et al. 2018's local swaps)."""
    words = []
    for word in line.split():
        draw = rng.random()
        if draw < 0.1:
            continue
        words.append("<blank>" if draw < 0.2 else word)
    keys = [i + rng.uniform(0, 3) for i in range(len(words))]
    return " ".join(w for _, w in sorted(zip(keys, words, strict=True)))


def final_config(args, corpus_prefix: Path, out: Path) -> None:
    """The forward recipe with data.train as a list: the real pairs and the synthetic ones."""
    import yaml

    src, tgt = args.direction.split("-")
    forward = yaml.safe_load((ROOT / f"configs/quality/multi30k_{src}_{tgt}_1h.yaml").read_text())
    synthetic = {"prefix": str(corpus_prefix), "weight": args.weight}
    if args.variant.startswith("tagged"):
        synthetic["tag"] = TAG
    forward["data"]["train"] = [{"prefix": "data/multi30k/train", "weight": 1.0}, synthetic]
    forward["train"]["max_minutes"] = args.final_minutes
    forward["train"]["num_threads"] = args.threads
    if args.init_from:  # warm start: the forward model's weights, tokenizers and vocabularies
        forward["train"]["init_from"] = str(args.init_from)
    forward["wandb"] = {"project": "seq2seq-backtranslation"}
    out.write_text(
        f"# Written by scripts/backtranslate.py ({args.direction}, {args.variant}).\n"
        + yaml.safe_dump(forward, sort_keys=False)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--direction", choices=["de-en", "en-de"], required=True)
    parser.add_argument("--variant", choices=VARIANTS, default="tagged-beam")
    parser.add_argument("--reverse", help="the reverse model (default: trained here)")
    parser.add_argument("--workdir", help="default: runs/bt_{direction}_{variant}")
    parser.add_argument("--final-minutes", type=float, default=55)
    parser.add_argument("--weight", type=float, default=1.0, help="the synthetic corpus's weight")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0, help="back-translate the first N only")
    parser.add_argument(
        "--init-from",
        help="start the final model from this forward checkpoint (its tokenizers and "
        "vocabularies; the tagged variants add <bt> to its source vocabulary)",
    )
    args = parser.parse_args()
    src, tgt = args.direction.split("-")
    work = Path(args.workdir or ROOT / "runs" / f"bt_{src}_{tgt}_{args.variant}")
    work.mkdir(parents=True, exist_ok=True)
    times_path = work / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        "unknown CPU",
    )

    def stage(name: str, done: bool, action) -> None:
        if done:
            print(f"stage {name}: done before, skipped", flush=True)
            return
        began = time.monotonic()
        action()
        times[name] = {
            "minutes": round((time.monotonic() - began) / 60, 2),
            "cpu": cpu,
            "threads": args.threads,
        }
        times_path.write_text(json.dumps(times, indent=1))

    reverse_config = ROOT / f"configs/quality/multi30k_{tgt}_{src}_1h.yaml"
    reverse = Path(args.reverse) if args.reverse else work / "reverse" / "best.pt"
    reverse_done = work / "reverse" / "DONE"
    stage(
        "reverse",
        bool(args.reverse) or reverse_done.exists(),
        lambda: (
            run("train", "--config", str(reverse_config), "--output-dir", str(work / "reverse"),
                *(["--resume"] if (work / "reverse" / "last.pt").exists() else []), threads=args.threads),
            reverse_done.touch(),
        ),
    )  # fmt: skip
    mono = work / f"mono.{tgt}.gz"
    stage(
        "mono", mono.exists(), lambda: print(f"{monolingual(tgt, mono)} {tgt} captions", flush=True)
    )
    source = mono
    if args.limit:
        source = work / f"mono.{tgt}.first{args.limit}.gz"
        if not source.exists():
            write(source, read(mono)[: args.limit])
    translated = work / f"synthetic.{src}.txt"
    search = ["--sample", "--seed", "1"] if "sample" in args.variant else ["--beam", "5"]
    resume = ["--resume"] if (work / f".synthetic.{src}.txt.progress").exists() else []
    translated_done = work / "translate.DONE"
    if translated.exists() and not resume:  # finished, but stopped before its marker
        translated_done.touch()
    stage(
        "translate",
        translated_done.exists(),
        lambda: (
            run("-q", "translate", "--model", str(reverse), "--input", str(source), "--output",
                str(translated), *search, *resume, threads=args.threads),
            translated_done.touch(),
        ),
    )  # fmt: skip
    prefix = ROOT / "data" / "bt" / work.name  # one corpus per workdir: rounds never collide
    corpus_done = Path(f"{prefix}.{tgt}.gz")

    def make_corpus() -> None:
        synthetic, real = read(translated), read(source)
        rng = random.Random(1)
        if args.variant == "noised-beam":
            synthetic = [noised(line, rng) for line in synthetic]
        pairs = [(s, t) for s, t in zip(synthetic, real, strict=True) if s.strip()]
        write(Path(f"{prefix}.{src}.gz"), [s for s, _ in pairs])
        write(corpus_done, [t for _, t in pairs])
        print(f"{len(pairs)} synthetic pairs in {prefix}.{{{src},{tgt}}}.gz", flush=True)

    stage("corpus", corpus_done.exists(), make_corpus)
    config = work / "final.yaml"
    if not config.exists():
        final_config(args, prefix, config)
    final_done = work / "final" / "DONE"
    stage(
        "final",
        final_done.exists(),
        lambda: (
            run("train", "--config", str(config), "--output-dir", str(work / "final"),
                *(["--resume"] if (work / "final" / "last.pt").exists() else []), threads=args.threads),
            final_done.touch(),
        ),
    )  # fmt: skip
    scores = work / "scores.json"

    def score() -> None:
        results = {}
        for split in ("val", "test_2016_flickr"):
            data = ROOT / "data" / "multi30k"
            report = run("-q", "evaluate", "--model", str(work / "final" / "best.pt"), "--src",
                         str(data / f"{split}.{src}.gz"), "--ref", str(data / f"{split}.{tgt}.gz"),
                         "--output", str(work / f"{split}.{tgt}.txt"), "--json",
                         threads=args.threads, capture=True)  # fmt: skip
            results[split] = json.loads(report)
        scores.write_text(json.dumps(results, indent=1))

    stage("score", scores.exists(), score)
    curves = [work / "final"] + (
        [reverse.parent] if (reverse.parent / "train.log").exists() else []
    )
    run("plot", *map(str, curves), "--output", str(work / "curves.png"), threads=args.threads)
    print(json.dumps(times, indent=1))


if __name__ == "__main__":
    main()
