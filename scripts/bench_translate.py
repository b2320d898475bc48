"""Decoding speed: batched vs one sentence at a time, greedy and beam 5.

    python scripts/bench_translate.py --model runs/multi30k_de_en/best.pt \
        --input data/multi30k/test_2016_flickr.de.gz [--limit 1000] [--threads 2]

Prints a table of sentences/s and target tokens/s; also the BLEU of each
setting when --ref is given (batching must not change the translations).
"""

from __future__ import annotations

import argparse
import time

import torch

from seq2seq.corpus import read_lines
from seq2seq.metrics import bleu
from seq2seq.translate import Translator


def run(translator: Translator, lines: list[str], beam: int, batched: bool) -> tuple[float, list]:
    start = time.perf_counter()
    if batched:
        results = translator.translate_detailed(lines, beam=beam)
    else:
        results = [translator.translate_detailed([line], beam=beam)[0] for line in lines]
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--ref", help="references, to check BLEU is unchanged by batching")
    parser.add_argument("--limit", type=int, default=1000, help="first N sentences")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    translator = Translator.from_checkpoint(args.model, device="cpu")
    lines = read_lines(args.input)[: args.limit]
    refs = read_lines(args.ref)[: args.limit] if args.ref else None
    translator.translate(lines[:20], beam=5)  # warm-up
    print(f"{len(lines)} sentences, {torch.get_num_threads()} threads, {args.model}")
    print(f"{'search':<8} {'mode':<10} {'seconds':>8} {'sent/s':>8} {'tok/s':>8} {'BLEU':>6}")
    seconds_by = {}
    for beam in (1, 5):
        for batched in (True, False):
            seconds, results = run(translator, lines, beam, batched)
            seconds_by[beam, batched] = seconds
            tokens = sum(len(r.candidates[0].tokens) + 1 for r in results if r.candidates)
            score = f"{bleu([r.text for r in results], refs).score:6.2f}" if refs else "     -"
            name = "greedy" if beam == 1 else f"beam {beam}"
            mode = "batched" if batched else "one-by-one"
            print(
                f"{name:<8} {mode:<10} {seconds:8.2f} {len(lines) / seconds:8.1f} {tokens / seconds:8.0f} {score}"
            )
    for beam in (1, 5):
        name = "greedy" if beam == 1 else f"beam {beam}"
        print(
            f"speed-up from batching, {name}: {seconds_by[beam, False] / seconds_by[beam, True]:.1f}x"
        )


if __name__ == "__main__":
    main()
