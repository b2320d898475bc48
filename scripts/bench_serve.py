"""Load test of ``seq2seq serve`` against file-mode throughput on the same machine.

    python scripts/bench_serve.py --model runs/x/best.pt
        [--input data/multi30k/test_2016_flickr.de.gz] [--beam 5] [--clients 1,4,16]
        [--overload-clients 64] [--overload-queue-lines 64] [--overload-timeout-s 10]

File mode: the Translator on the whole input at once (model loaded and warmed
up; what ``seq2seq translate`` spends after start-up), the better of two runs.
Server: ``seq2seq serve`` in a subprocess; the input is cut into requests of
1-32 lines (seeded), and N client threads send them over HTTP as fast as
answers come back. Reports sentences/s (lines answered 200 per second),
latency p50/p95/p99 of the accepted requests, the count of answers by status,
and the server's peak RSS during the row.

The overload row: a second server whose queue holds only
``--overload-queue-lines`` lines, and ``--overload-clients`` clients. A client
that gets 503 waits the ``Retry-After`` it was given and sends the request
again; a 504 is counted and the request given up. Every request must get an
answer: a client that waits 120 s for one counts as hung (the run fails).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_stream import cpu_name  # noqa: E402

from seq2seq.corpus import read_lines  # noqa: E402
from seq2seq.translate import Translator  # noqa: E402

HUNG_S = 120  # a request unanswered this long counts as hung


def post(url: str, lines: list[str], beam: int) -> tuple[int, list[str] | None, int]:
    """(status, translations or None, Retry-After seconds or 0)."""
    body = json.dumps({"text": lines, "beam": beam}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HUNG_S) as response:
            return response.status, json.loads(response.read())["translations"], 0
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, None, int(error.headers.get("Retry-After") or 0)


def start_server(model: str, beam: int, port: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "seq2seq", "-q", "serve", "--model", model, "--port",
               str(port), "--beam", str(beam), "--device", "cpu", *extra]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


class PeakRss:
    """The largest resident set of process ``pid`` while the block runs (MB), sampled every 0.1 s."""

    def __init__(self, pid: int):
        self.path, self.peak, self.done = Path(f"/proc/{pid}/status"), 0.0, threading.Event()

    def _sample(self) -> None:
        while not self.done.wait(0.1):
            for line in self.path.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak = max(self.peak, int(line.split()[1]) / 1024)

    def __enter__(self) -> PeakRss:
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def load(url: str, requests: list[list[str]], beam: int, clients: int):
    """Send every request once (again after a 503, as Retry-After says) from ``clients``
    threads: (seconds, lines answered 200, latencies of the 200s, Counter of statuses)."""
    work: queue.Queue = queue.Queue()
    for item in requests:
        work.put(item)
    latencies: list[float] = []
    statuses: Counter = Counter()
    answered = [0]

    def client() -> None:
        while True:
            try:
                lines = work.get_nowait()
            except queue.Empty:
                return
            while True:
                start = time.perf_counter()
                try:
                    status, answer, retry_after = post(url, lines, beam)
                except OSError:  # no answer within HUNG_S, or the connection broke
                    status, answer, retry_after = "no answer", None, 0
                statuses[status] += 1
                if status != 503:
                    break
                time.sleep(retry_after or 1)
            if status == 200:
                latencies.append(time.perf_counter() - start)
                answered[0] += len(lines)
                assert len(answer) == len(lines)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, answered[0], latencies, statuses


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rows(args, requests, file_rate, rows: list[tuple[str, int]], extra: list[str]) -> Counter:
    """One server, one table row per (label, clients); all statuses seen."""
    port = free_port()
    server = start_server(args.model, args.beam, port, extra)
    url = f"http://127.0.0.1:{port}/translate"
    seen: Counter = Counter()
    try:
        for label, clients in rows:
            with PeakRss(server.pid) as rss:
                seconds, lines, latencies, statuses = load(url, requests, args.beam, clients)
            seen += statuses
            rate = lines / seconds
            codes = "/".join(str(statuses[code]) for code in (200, 503, 504))
            p50, p95, p99 = (percentile(latencies, q) for q in (0.5, 0.95, 0.99))
            print(
                f"| {label} | {rate:.1f} | {p50:.3f} | {p95:.3f} | {p99:.3f} | "
                f"{rate / file_rate:.2f} | {codes} | {rss.peak:.0f} |",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", default=str(ROOT / "data/multi30k/test_2016_flickr.de.gz"))
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--overload-clients", type=int, default=64)
    parser.add_argument("--overload-queue-lines", type=int, default=64)
    parser.add_argument("--overload-timeout-s", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--server-args", default="", help="more `seq2seq serve` options, e.g. '--max-wait-ms 20'"
    )
    args = parser.parse_args()
    if args.overload_queue_lines < 32:
        parser.error("--overload-queue-lines must hold the largest request (32 lines)")
    lines = read_lines(args.input)
    rng = random.Random(args.seed)
    requests, start = [], 0
    while start < len(lines):
        size = rng.randint(1, 32)
        requests.append(lines[start : start + size])
        start += size

    translator = Translator.from_checkpoint(args.model, "cpu")
    translator.translate(lines[:50], beam=args.beam)  # warm-up
    file_rate = 0.0
    for _ in range(2):  # the better of two runs: the machine is noisy
        began = time.perf_counter()
        expected = translator.translate(lines, beam=args.beam)
        file_rate = max(file_rate, len(lines) / (time.perf_counter() - began))
    del translator

    port = free_port()
    server = start_server(args.model, args.beam, port, args.server_args.split())
    try:
        status, answer, _ = post(f"http://127.0.0.1:{port}/translate", lines[:64], args.beam)
        assert (status, answer) == (200, expected[:64]), "server differs from file mode"
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(
        f"\n{cpu_name()}; {len(lines)} lines in {len(requests)} requests of 1-32 lines, "
        f"beam {args.beam}; {os.cpu_count()} CPUs"
    )
    print("| mode | sentences/s | p50 latency (s) | p95 latency (s) | p99 latency (s) "
          "| x file mode | answers 200/503/504 | server peak RSS (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print(f"| file mode | {file_rate:.1f} | | | | 1.00 | | |", flush=True)
    rows = [
        (f"server, {c} client{'s' if c > 1 else ''}", c) for c in map(int, args.clients.split(","))
    ]
    seen = run_rows(args, requests, file_rate, rows, args.server_args.split())
    overload = [(f"overload: {args.overload_clients} clients, queue {args.overload_queue_lines} lines",
                 args.overload_clients)]  # fmt: skip
    limits = ["--max-queue-lines", str(args.overload_queue_lines),
              "--max-lines", str(args.overload_queue_lines),
              "--timeout-s", str(args.overload_timeout_s)]  # fmt: skip
    seen += run_rows(args, requests, file_rate, overload, args.server_args.split() + limits)
    unexpected = {status: n for status, n in seen.items() if status not in (200, 503, 504)}
    print(f"\nanswers by status, all rows: {dict(seen)}")
    if unexpected:
        raise SystemExit(f"unexpected answers (hung or failed requests): {unexpected}")


if __name__ == "__main__":
    main()
