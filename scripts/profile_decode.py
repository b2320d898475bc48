"""Where decoding time goes: PyTorch's profiler over a Translator, ops grouped by part of the step.

    python scripts/profile_decode.py --model runs/multi30k_de_en/best.pt [--beam 5] [--lines 300]
        [--shortlist] [--quantize int8]

Prints the top operators by self CPU time and a summary per part of the decoder step
(recurrent matmuls, attention, output layer, softmax/top-k, beam bookkeeping).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from seq2seq.corpus import read_lines
from seq2seq.translate import Translator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/multi30k_de_en/best.pt")
    parser.add_argument("--source", default="data/multi30k/test_2016_flickr.de.gz")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--quantize", choices=["int8"])
    parser.add_argument("--shortlist", action="store_true")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    translator = Translator.from_checkpoint(args.model, "cpu", "fp32", args.quantize)
    lines = read_lines(args.source)[: args.lines]
    translator.translate(lines[:20], beam=args.beam)  # warm-up
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        translator.translate(lines, beam=args.beam)
    seconds = time.perf_counter() - start
    print(f"{len(lines)} lines, beam {args.beam}: {seconds:.2f} s under the profiler "
          f"({torch.get_num_threads()} threads)")  # fmt: skip
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
