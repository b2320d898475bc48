"""`seq2seq serve`: the real server in a subprocess, spoken to over real HTTP."""

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
pytestmark = pytest.mark.slow  # needs the trained toy model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(toy_checkpoint):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "seq2seq", "serve", "--model", str(toy_checkpoint), "--port",
         str(port), "--beam", "3", "--max-lines", "40", "--max-chars", "2000", "--device", "cpu"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stdout.read()
        try:
            if request(url + "/health")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)


def translate(url: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(url + "/translate", body)


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
    ],
)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(server, payload, status, message):
    got, answer = translate(server, payload)
    assert got == status and message in answer["error"], answer
    assert translate(server, {"text": ["a b"]}) == (200, {"translations": ["b a"]})


def test_health_and_openapi_docs(server):
    status, health = request(server + "/health")
    assert status == 200 and health["status"] == "ok"
    status, schema = request(server + "/openapi.json")
    assert status == 200 and "/translate" in schema["paths"]
