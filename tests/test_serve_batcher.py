"""The server's batcher and app in this process, with a stand-in translator (no model, quick)."""

import asyncio
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from seq2seq.serve import ServeSettings, create_app  # noqa: E402
from seq2seq.serve_batcher import (  # noqa: E402
    Abandoned,
    Batcher,
    DecodeFailed,
    QueueFull,
    ShuttingDown,
)
from seq2seq.serve_metrics import ServeMetrics  # noqa: E402


class Reverser:
    """Translates a line by reversing it; fails on any batch holding "boom"; counts its calls."""

    loaded = SimpleNamespace(src_tokenizer=None)  # not spaCy: no word limit

    def __init__(self, seconds: float = 0.0):
        self.seconds, self.calls = seconds, []

    def translate(self, lines, options=None, beam=1):
        self.calls.append(list(lines))
        time.sleep(self.seconds)
        if any("boom" in line for line in lines):
            raise RuntimeError("/home/someone/secret/model.pt: tensor exploded")
        return [line[::-1] for line in lines]


def counter(metrics: ServeMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_failing_batch_is_retried_request_by_request():
    reverser, metrics = Reverser(), ServeMetrics()

    async def scenario():
        batcher = Batcher(lambda lines, beam: reverser.translate(lines), metrics, max_wait_ms=50)
        batcher.start()
        texts = [[f"line {i}", f"more {i}"] for i in range(8)]
        texts[5] = ["boom", "x"]
        pending = [batcher.submit(text, 1) for text in texts]
        answers = await asyncio.gather(
            *(batcher.result(p, 10) for p in pending), return_exceptions=True
        )
        alive = batcher.alive()
        await batcher.stop()
        return texts, answers, alive

    texts, answers, alive = asyncio.run(scenario())
    for i, (text, answer) in enumerate(zip(texts, answers, strict=True)):
        if i == 5:
            assert isinstance(answer, DecodeFailed)
        else:
            assert answer == [line[::-1] for line in text]
    assert alive
    assert len(reverser.calls[0]) == 16  # all together first, then one request a call
    assert reverser.calls[1:] == texts
    assert counter(metrics, "seq2seq_lines_translated_total") == 14


def test_the_queue_is_bounded_and_abandoned_lines_are_never_decoded():
    reverser, metrics = Reverser(seconds=0.3), ServeMetrics()

    async def scenario():
        batcher = Batcher(
            lambda lines, beam: reverser.translate(lines), metrics, max_queue_lines=10
        )
        batcher.start()
        first = batcher.submit(["a"], 1)
        await asyncio.sleep(0.1)  # the first request is decoding now
        waiting = batcher.submit(["b"] * 6, 1)
        with pytest.raises(QueueFull) as full:
            batcher.submit(["c"] * 5, 1)  # 6 + 5 > 10
        gone = asyncio.get_running_loop().create_future()
        gone.set_result(None)  # the client has disconnected already
        with pytest.raises(Abandoned, match="client_disconnected"):
            await batcher.result(waiting, 10, gone)
        late = batcher.submit(["d"] * 4, 1)
        with pytest.raises(Abandoned, match="timeout"):
            await batcher.result(late, 0.05)
        assert batcher.queued_lines == 0
        assert await batcher.result(first, 10) == ["a"]
        await asyncio.sleep(0.1)
        await batcher.stop()
        return full.value.retry_after

    assert asyncio.run(scenario()) >= 1
    assert reverser.calls == [["a"]]
    assert counter(metrics, "seq2seq_dropped_lines_total", reason="client_disconnected") == 6
    assert counter(metrics, "seq2seq_dropped_lines_total", reason="timeout") == 4


def test_fail_all_answers_waiting_and_decoding_requests():
    async def scenario():
        batcher = Batcher(lambda lines, beam: Reverser(0.3).translate(lines), ServeMetrics())
        batcher.start()
        decoding = batcher.submit(["a"], 1)
        await asyncio.sleep(0.1)
        waiting = batcher.submit(["b"], 1)
        batcher.fail_all(ShuttingDown())
        for pending in (decoding, waiting):
            with pytest.raises(ShuttingDown):
                await batcher.result(pending, 10)
        await batcher.stop()

    asyncio.run(scenario())


def client(reverser: Reverser, **settings) -> TestClient:
    options = ServeSettings(allowed_hosts=("testserver",), **settings)
    return TestClient(create_app(reverser, options, "toy"), raise_server_exceptions=False)


def test_a_failed_decode_is_a_json_500_without_traceback_or_path():
    with client(Reverser()) as http:
        answer = http.post("/translate", json={"text": ["boom"]})
        assert answer.status_code == 500
        assert set(answer.json()) == {"error"}
        assert "secret" not in answer.text and "Traceback" not in answer.text
        assert http.post("/translate", json={"text": ["ab"]}).json() == {"translations": ["ba"]}
        assert http.get("/health").json() == {"status": "ok", "model": "toy"}


def test_liveness_fails_when_the_batcher_dies():
    with client(Reverser()) as http:
        assert http.get("/health").status_code == 200
        http.app.state.batcher.task.cancel()
        time.sleep(0.1)
        answer = http.get("/health")
        assert answer.status_code == 503 and "batcher" in answer.json()["error"]
        assert http.get("/ready").status_code == 503


def test_an_error_reply_names_a_handful_of_problems():
    """400 KB of ``{"text": [0, 0, ...]}`` fits the default byte limit; its reply stays small."""
    body = b'{"text": [' + b",".join([b"0"] * 200_000) + b"]}"
    with client(Reverser(), max_lines=300_000) as http:
        answer = http.post("/translate", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert len(answer.content) < 1000, len(answer.content)
    assert "text.0: Input should be a valid string" in answer.json()["error"]
    assert "and 199995 more" in answer.json()["error"]


def test_chunked_bodies_are_capped_while_they_arrive():
    def chunks():
        for _ in range(100):
            yield b'{"text": ["' + b"a" * 10_000

    with client(Reverser(), max_body_bytes=50_000) as http:
        answer = http.post("/translate", content=chunks())  # no Content-Length: chunked
    assert answer.status_code == 413
    assert "larger than 50000 bytes" in answer.json()["error"]
