"""Choose a model (or an ensemble) and a length penalty on val only; score only that on test.

    python scripts/choose_on_val.py --src de --tgt en \
        --candidate best=runs/q_de_en/best.pt --candidate avg3=runs/q_de_en/avg3.pt \
        --candidate both=runs/q_de_en/avg3.pt,runs/q_de_en_cosine/best.pt

A candidate is NAME=CKPT[,CKPT...]; several checkpoints are an ensemble. Each
candidate is loaded once and translates val with beam 5 for every alpha. The
pair with the highest val BLEU is the choice; only it translates the test set,
scored with detokenized, cased sacrebleu BLEU and chrF. Prints a table and
writes it, with every translation, to --out-dir (choice.json, val_*.txt, test_*.txt).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from seq2seq.config import DecodeOptions
from seq2seq.corpus import read_lines
from seq2seq.metrics import corpus_score
from seq2seq.translate import Translator


def parse_candidate(text: str) -> tuple[str, list[str]]:
    name, sep, models = text.partition("=")
    if not sep or not name or not models:
        raise argparse.ArgumentTypeError(f"expected NAME=CKPT[,CKPT...], got {text!r}")
    for path in models.split(","):
        if not Path(path).is_file():
            raise argparse.ArgumentTypeError(f"{path}: no such checkpoint (candidate {name})")
    return name, models.split(",")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", required=True)
    parser.add_argument("--tgt", required=True)
    parser.add_argument("--candidate", type=parse_candidate, action="append", required=True)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.6, 1.0, 1.4])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--data", default="data/multi30k")
    parser.add_argument("--val", default="val")
    parser.add_argument("--test", default="test_2016_flickr")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def corpus(split: str) -> tuple[list[str], list[str]]:
        return (
            read_lines(f"{args.data}/{split}.{args.src}.gz"),
            read_lines(f"{args.data}/{split}.{args.tgt}.gz"),
        )

    val_src, val_ref = corpus(args.val)
    table, choice = [], None
    for name, models in args.candidate:
        translator = Translator.from_checkpoint(models, args.device)
        for alpha in args.alphas:
            hyps = translator.translate(val_src, DecodeOptions(beam=args.beam, alpha=alpha))
            (out / f"val_{name}_{alpha}.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
            bleu = corpus_score("bleu", hyps, [val_ref]).score
            table.append({"candidate": name, "models": models, "alpha": alpha, "val_bleu": bleu})
            print(f"val BLEU, beam {args.beam}: {name} alpha {alpha}: {bleu:.2f}", flush=True)
            if choice is None or bleu > choice["val_bleu"]:
                choice = table[-1]
    test_src, test_ref = corpus(args.test)
    translator = Translator.from_checkpoint(choice["models"], args.device)
    hyps = translator.translate(test_src, DecodeOptions(beam=args.beam, alpha=choice["alpha"]))
    name = f"test_{choice['candidate']}_{choice['alpha']}.txt"
    (out / name).write_text("\n".join(hyps) + "\n", encoding="utf-8")
    bleu, chrf = (corpus_score(m, hyps, [test_ref]) for m in ("bleu", "chrf"))
    result = {"val": table, "choice": choice, "test_bleu": bleu.score, "test_chrf": chrf.score,
              "bleu_signature": bleu.signature}  # fmt: skip
    (out / "choice.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| candidate | alpha | val BLEU |\n|---|---|---|")
    for row in table:
        mark = " (chosen)" if row is choice else ""
        print(f"| {row['candidate']} | {row['alpha']} | {row['val_bleu']:.2f}{mark} |")
    print(f"test ({args.test}): {choice['candidate']} alpha {choice['alpha']}: "
          f"BLEU {bleu.score:.2f}, chrF {chrf.score:.2f}  [{bleu.signature}]")  # fmt: skip


if __name__ == "__main__":
    main()
