"""Teacher beam 5 against distilled student greedy: whole-process decoding time and BLEU.

    python scripts/bench_distill.py --teacher runs/multi30k_de_en/best.pt \
        --student runs/multi30k_de_en_student/best.pt --copies 1 5 --repeats 2

Each row is one `seq2seq translate` process (start-up, model load, decoding,
writing) on the test set repeated --copies times, so the start-up's share shows:
about 3 s of each run is importing torch and loading the model. Runs alternate
between the settings, and the table prints the median of --repeats runs and the
teacher/student ratio for each engine setting (fp32, int8) and input size.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seq2seq.corpus import read_lines
from seq2seq.metrics import corpus_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stream import cpu_name  # noqa: E402


def run(models: list[str], beam: int, extra: list[str], source: Path, output: Path) -> float:
    command = [sys.executable, "-m", "seq2seq.cli", "translate", "--model", *models,
               "--beam", str(beam), "--input", str(source), "--output", str(output), *extra]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", nargs="+", required=True, help="one checkpoint or an ensemble")
    parser.add_argument("--student", required=True)
    parser.add_argument("--src", default="data/multi30k/test_2016_flickr.de.gz")
    parser.add_argument("--ref", default="data/multi30k/test_2016_flickr.en.gz")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engines", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    args = parser.parse_args()
    lines = read_lines(args.src)
    refs = read_lines(args.ref)
    work = Path(tempfile.mkdtemp(prefix="bench_distill_"))
    print(f"CPU: {cpu_name()}")
    print(
        "| lines | engine | teacher beam 5 s | student greedy s | speed-up | teacher BLEU | student BLEU |"
    )
    print("|---|---|---|---|---|---|---|")
    for copies in args.copies:
        source = work / f"src_{copies}.txt"
        source.write_text("\n".join(lines * copies) + "\n", encoding="utf-8")
        for engine in args.engines:
            extra = ["--quantize", "int8"] if engine == "int8" else []
            settings = {"teacher": (args.teacher, 5), "student": ([args.student], 1)}
            times: dict[str, list[float]] = {name: [] for name in settings}
            for _ in range(args.repeats):
                for name, (models, beam) in settings.items():
                    out = work / f"{name}_{engine}_{copies}.txt"
                    times[name].append(run(models, beam, extra, source, out))
            bleu = {}
            for name in settings:
                hyps = read_lines(work / f"{name}_{engine}_{copies}.txt")[: len(lines)]
                bleu[name] = corpus_score("bleu", hyps, [refs]).score
            teacher, student = (statistics.median(times[n]) for n in settings)
            print(f"| {len(lines) * copies} | {engine} | {teacher:.2f} ({', '.join(f'{t:.2f}' for t in times['teacher'])}) "
                  f"| {student:.2f} ({', '.join(f'{t:.2f}' for t in times['student'])}) | {teacher / student:.2f}x "
                  f"| {bleu['teacher']:.2f} | {bleu['student']:.2f} |", flush=True)  # fmt: skip
    for path in work.iterdir():
        path.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
