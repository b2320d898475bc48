"""`seq2seq serve`: the real server in a subprocess, spoken to over real HTTP (127.0.0.1 only)."""

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from seq2seq.translate import Translator

from .conftest import ROOT
from .test_streaming import toy_lines

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.slow  # needs the trained toy model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint, log_path, *options) -> tuple[subprocess.Popen, str]:
    """``seq2seq serve`` on a free port, its output in ``log_path`` (a pipe could fill up)."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "seq2seq", "serve", "--model", str(checkpoint), "--port",
             str(port), "--device", "cpu", *options],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, open(log_path).read()
        try:
            if call(url + "/health")[0] == 200:
                return process, url
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.2)


def stop_server(process: subprocess.Popen) -> int:
    process.terminate()
    return process.wait(timeout=60)


def call(url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 60):
    """(status, headers, body) of one request; the body parsed if it is JSON."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, body, headers), timeout=timeout
        ) as r:
            status, answer_headers, data = r.status, r.headers, r.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, data = error.code, error.headers, error.read()
    is_json = answer_headers.get("Content-Type", "").startswith("application/json")
    return status, answer_headers, json.loads(data) if is_json else data


def request(url: str, body: bytes | None = None) -> tuple[int, dict]:
    status, _, answer = call(url, body)
    return status, answer


def translate(url: str, payload, headers: dict | None = None) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, answer = call(url + "/translate", body, headers)
    return status, answer


def metric(url: str, name: str) -> float:
    """One sample of ``GET /metrics``, e.g. ``seq2seq_queue_lines`` or ``x_total{reason="y"}``."""
    for line in call(url + "/metrics")[2].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not in /metrics")


@pytest.fixture(scope="module")
def server(toy_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    process, url = start_server(
        toy_checkpoint, log, "--beam", "3", "--max-lines", "40", "--max-chars", "2000"
    )
    yield url
    assert stop_server(process) == 0, log.read_text()


def test_answers_equal_file_mode(server, toy_checkpoint):
    lines = toy_lines(30)
    translator = Translator.from_checkpoint(toy_checkpoint, "cpu")
    for beam in (1, 3):
        status, answer = translate(server, {"text": lines, "beam": beam})
        assert status == 200
        assert answer["translations"] == translator.translate(lines, beam=beam)
    assert translate(server, {"text": ["a b c"]}) == (200, {"translations": ["c b a"]})  # beam 3
    assert translate(server, {"text": []}) == (200, {"translations": []})


def test_concurrent_clients_get_their_own_lines(server, toy_checkpoint):
    lines = toy_lines(240, seed=3)
    requests = [lines[i : i + n] for i, n in zip(range(0, 240, 12), [1, 5, 12, 7] * 5, strict=True)]
    expected = Translator.from_checkpoint(toy_checkpoint, "cpu").translate(lines, beam=3)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda text: translate(server, {"text": text}), requests))
    for text, (status, answer) in zip(requests, answers, strict=True):
        assert status == 200
        assert answer["translations"] == [expected[lines.index(t)] for t in text]


@pytest.mark.parametrize(
    "payload, status, message",
    [
        (b"{not json", 400, "not valid JSON"),
        ({"lines": ["a"]}, 400, "text: missing"),
        ({"text": "a b"}, 400, "text: Input should be a valid list"),
        ({"text": ["a", 3]}, 400, "text.1: Input should be a valid string"),
        ({"text": ["a"], "beam": "3"}, 400, "beam"),
        ([1, 2], 400, "body"),
        ({"text": ["a"] * 41}, 413, "at most 40 per request"),
        ({"text": ["a" * 2001]}, 413, "at most 2000 per request"),
        ({"text": ["a"], "beam": 0}, 422, "beam must be between 1 and 16"),
        ({"text": ["a"], "beam": 17}, 422, "beam must be between 1 and 16"),
        (b'{"text": ["a b", "Ein \\ud800 Hund"]}', 400, "text.1: character 4 is a lone surrogate"),
        ({"text": ["a " + "'" * 201]}, 400, "text.0: a word of 201 characters; at most 200"),
        (b"[" * 5000 + b"]" * 5000, 400, "error parsing the body"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(server, payload, status, message):
    got, answer = translate(server, payload)
    assert got == status and message in answer["error"], answer
    assert translate(server, {"text": ["a b"]}) == (200, {"translations": ["b a"]})


def test_a_bad_line_fails_only_its_own_request(server, toy_checkpoint):
    """A lone surrogate in one of 8 concurrent requests: that one gets 400, the others their
    translations. NUL characters tokenize fine (checked here too)."""
    texts = [toy_lines(5, seed=i) for i in range(8)]
    texts[0][1] = "a \x00 b"
    texts[3][2] = "Ein \ud800 Hund"  # json.dumps writes it as the escape \ud800
    expected = Translator.from_checkpoint(toy_checkpoint, "cpu")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda text: translate(server, {"text": text}), texts))
    for i, (text, (status, answer)) in enumerate(zip(texts, answers, strict=True)):
        if i == 3:
            assert status == 400 and answer["error"].startswith("text.2: character 4"), answer
        else:
            assert (status, answer) == (200, {"translations": expected.translate(text, beam=3)})


def send_raw(port: int, body: bytes, chunked: bool) -> tuple[int, bytes, float]:
    """POST ``body`` over a plain socket, stopping when the server stops reading; then read
    the answer: (status, body, seconds)."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        head = f"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\n{length}\r\n"
        sock.sendall(f"{head}Content-Type: application/json\r\n\r\n".encode())
        sock.settimeout(0.3)
        try:
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sock.sendall(b"0\r\n\r\n" if chunked else b"")
        except OSError:  # the server answered and closed: the rest is not read
            pass
        sock.settimeout(5)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, answer.read(), time.monotonic() - began


@pytest.mark.parametrize("how", ["urllib", "chunked", "20 MB declared"])
def test_a_big_body_is_refused_within_a_second(server, how):
    """2 MB sent whole by urllib (it reads the answer only after sending: the server reads on
    and drops the rest of the body), or chunked; 20 MB declared is refused unread."""
    size = 20_000_000 if how == "20 MB declared" else 2_000_000
    body = json.dumps({"text": ["a" * size]}).encode()
    if how == "urllib":
        began = time.monotonic()
        status, _, answer = call(server + "/translate", body)
        seconds = time.monotonic() - began
    else:
        port = int(server.rsplit(":", 1)[1])
        status, answer, seconds = send_raw(port, body, chunked=how == "chunked")
        answer = json.loads(answer)
    assert status == 413 and seconds < 1, (status, seconds)
    assert "larger than" in answer["error"]
    assert translate(server, {"text": ["a b"]}) == (200, {"translations": ["b a"]})


def test_an_unknown_host_header_is_refused(server):
    port = server.rsplit(":", 1)[1]
    status, answer = translate(server, {"text": ["a b"]}, {"Host": f"evil.example:{port}"})
    assert status == 400 and "Host header" in answer["error"]
    assert translate(server, {"text": ["a b"]}, {"Host": f"localhost:{port}"})[0] == 200


def test_health_ready_metrics_and_docs_name_the_model_not_its_path(server, toy_checkpoint):
    status, health = request(server + "/health")
    assert (status, health) == (200, {"status": "ok", "model": "best"})
    assert request(server + "/ready") == (200, {"status": "ready", "queued_lines": 0})
    status, schema = request(server + "/openapi.json")
    assert status == 200 and "/translate" in schema["paths"]
    assert "Model: best." in schema["info"]["description"]
    assert str(toy_checkpoint.parent) not in json.dumps(schema)
    status, headers, text = call(server + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for name in ("requests_total", "request_seconds", "lines_translated_total", "batch_lines",
                 "queue_lines", "rejected_requests_total", "dropped_lines_total"):  # fmt: skip
        assert f"seq2seq_{name}" in text.decode()
    assert metric(server, 'seq2seq_requests_total{path="/health",status="200"}') >= 1
    assert metric(server, "seq2seq_lines_translated_total") > 0


def test_a_request_can_sample(server, toy_checkpoint):
    from seq2seq.config import DecodeOptions

    lines = toy_lines(20, seed=4)
    translator = Translator.from_checkpoint(toy_checkpoint, "cpu")
    asked = {"sample": True, "temperature": 1.5, "top_k": 5, "seed": 11}
    status, answer = translate(server, {"text": lines, **asked})
    assert status == 200
    assert answer["translations"] == translator.translate(lines, DecodeOptions(**asked))
    status, answer = translate(server, {"text": lines, "sample": True, "top_p": 0})
    assert status == 422 and "top_p" in answer["error"]


def test_attention_details_match_file_mode(server, toy_checkpoint):
    lines = toy_lines(12, seed=6)
    translator = Translator.from_checkpoint(toy_checkpoint, "cpu")
    status, answer = translate(server, {"text": lines, "beam": 3, "n_best": 2, "attention": True})
    assert status == 200
    expected = translator.translate_detailed(lines, beam=3, n_best=2, keep_attention=True)
    assert answer["translations"] == [t.text for t in expected]
    for details, want in zip(answer["details"], expected, strict=True):
        assert details["source"] == want.source_tokens
        assert [c["text"] for c in details["candidates"]] == [c.text for c in want.candidates]
        if want.candidates:
            assert details["output"] == want.candidates[0].tokens + ["</s>"]
            assert len(details["attention"]) == len(details["output"])
            assert all(len(row) == len(details["source"]) for row in details["attention"])
            assert all(abs(sum(row) - 1) < 1e-4 for row in details["attention"])
    assert "details" not in translate(server, {"text": lines})[1]  # off by default
    status, answer = translate(server, {"text": lines, "beam": 2, "n_best": 3})
    assert status == 422 and "n-best" in answer["error"]


def test_the_page_is_served_and_self_contained(server):
    status, headers, page = call(server + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = page.decode()
    assert 'id="translate"' in text and '"attention": true' not in text  # JS builds the body
    assert "http://" not in text and "https://" not in text  # no CDN: works offline
    schema = call(server + "/openapi.json")[2]
    assert "LineDetails" in json.dumps(schema) and '"/"' not in json.dumps(schema["paths"])
