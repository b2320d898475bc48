"""What the server checks before a request reaches the model: who asks, for how much, in what text.

Pure ASGI middlewares, stacked by ``serve.create_app`` (outermost first):

- ``Front`` counts every answer for ``/metrics``, tracks the ``/translate``
  requests in flight, and refuses new ones with 503 once shutdown began;
- ``HostCheck``: Starlette's ``TrustedHostMiddleware``, answering in JSON;
- ``ApiKey``: ``Authorization: Bearer KEY``, compared in constant time;
- ``BodyLimit`` reads the body before anything parses it, and stops at
  ``max_bytes`` (413, Content-Length and chunked bodies alike; the bytes past
  the limit are never kept) or at the request's deadline (408).

Every refusal is a small JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seq2seq.errors import UserError
from seq2seq.serve_metrics import ServeMetrics

ARRIVED = "seq2seq.arrived"  # scope key: time.monotonic() when the request arrived
OPEN_PATHS = ("/health", "/ready")  # probes need no API key
MAX_PROBLEMS = 5  # an error names at most this many problems
DRAIN_BYTES, DRAIN_S = 16 * 2**20, 1.0  # how much of a refused body is read on, and dropped
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


class ServeError(UserError):
    """A server option that cannot work."""


@dataclass
class ServeState:
    """What the middlewares, the routes and the shutdown share."""

    draining_since: float | None = None  # time.monotonic() of the SIGTERM; None: serving
    in_flight: int = 0  # POST /translate requests being answered


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def printable(text: str, limit: int = 100) -> str:
    """``text`` safe to echo in an error: short, and lone surrogates escaped (JSON needs UTF-8)."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def text_problems(lines: Sequence[str], max_word_chars: int | None) -> str | None:
    """Why some lines cannot be tokenized (the first ``MAX_PROBLEMS``), or None.

    Lone surrogates (JSON's ``"\\ud800"`` decodes to one) are not text: the
    tokenizers fail on them. ``max_word_chars`` (spaCy tokenizers only): its
    prefix and suffix rules take time quadratic in a word's length, so a word
    of 100,000 apostrophes would tie up the decoding thread for many minutes.
    """
    problems = []
    for index, line in enumerate(lines):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as error:
            code = ord(line[error.start])
            problems.append(
                f"text.{index}: character {error.start} is a lone surrogate (U+{code:04X}), "
                "not text"
            )
            continue
        if max_word_chars is not None:
            longest = max(map(len, line.split()), default=0)
            if longest > max_word_chars:
                problems.append(
                    f"text.{index}: a word of {longest} characters; at most {max_word_chars} "
                    "(--max-word-chars); add spaces or shorten it"
                )
        if len(problems) == MAX_PROBLEMS:
            break
    return "; ".join(problems) or None


def read_api_key(path: str | Path) -> bytes:
    """The key in ``path``: one line of printable ASCII without spaces."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ServeError(f"--api-key-file {path}: cannot read it ({error})") from None
    if not key or not all("!" <= c <= "~" for c in key):
        raise ServeError(
            f"--api-key-file {path}: expected one line of printable ASCII without spaces, e.g. from "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key.encode()


def _host_name(address: str) -> str:
    return f"[{address}]" if ":" in address else address  # an IPv6 literal, as a Host header has it


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host header names accepted: the bound address's names, and ``extra``."""
    names = {_host_name(host)}
    if is_loopback(host) or host in WILDCARD_ADDRESSES:
        names |= {"localhost", "127.0.0.1", "[::1]"}
    if host in WILDCARD_ADDRESSES:
        names |= {socket.gethostname(), socket.getfqdn()} - {""}
    for name in extra:
        if "*" in name[1:] or (name.startswith("*") and name != "*" and not name.startswith("*.")):
            raise ServeError(f"--allowed-host {name!r}: a wildcard is '*' or '*.example.com'")
    return sorted({n.lower() for n in names} | {_host_name(n).lower() for n in extra})


class Front:
    def __init__(self, app: ASGIApp, state: ServeState, metrics: ServeMetrics):
        self.app, self.state, self.metrics = app, state, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope[ARRIVED] = arrived = time.monotonic()
        translate = scope["path"] == "/translate"
        status = 500  # what the client gets if the app raises (ServerErrorMiddleware answers)

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if translate and self.state.draining_since is not None:
                self.metrics.rejected.labels("shutting_down").inc()
                refusal = json_error(503, "the server is shutting down", {"Retry-After": "1"})
                return await refusal(scope, receive, send_counted)
            counted = 1 if translate else 0
            self.state.in_flight += counted
            try:
                await self.app(scope, receive, send_counted)
            finally:
                self.state.in_flight -= counted
        finally:
            self.metrics.answered(scope["path"], status)
            if translate:
                self.metrics.latency.observe(time.monotonic() - arrived)


class HostCheck:
    """Starlette's ``TrustedHostMiddleware``, answering a refusal in JSON like every other error."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str], metrics: ServeMetrics):
        self.app, self.metrics = app, metrics
        self.trusted = TrustedHostMiddleware(self._allowed, list(hosts), www_redirect=False)
        self.message = "the Host header names no allowed name of this server (--allowed-host)"

    async def _allowed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["seq2seq.host_allowed"] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_or_refuse(message: Message) -> None:
            if scope.get("seq2seq.host_allowed"):
                await send(message)
            elif message["type"] == "http.response.start":  # the middleware's own plain 400
                self.metrics.rejected.labels("bad_host").inc()
                await json_error(400, self.message)(scope, receive, send)

        await self.trusted(scope, receive, send_or_refuse)


class ApiKey:
    def __init__(self, app: ASGIApp, key: bytes | None, metrics: ServeMetrics):
        self.app, self.key, self.metrics = app, key, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("latin-1"), self.key
        ):
            return await self.app(scope, receive, send)
        self.metrics.rejected.labels("unauthorized").inc()
        message = "this server needs its API key: send the header 'Authorization: Bearer KEY'"
        await json_error(401, message, {"WWW-Authenticate": "Bearer"})(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, metrics: ServeMetrics):
        self.app, self.max_bytes, self.timeout_s, self.metrics = app, max_bytes, timeout_s, metrics
        self.too_large = (
            f"the request body is larger than {max_bytes} bytes (--max-body-bytes); "
            "send fewer or shorter lines"
        )

    async def _refuse(self, scope: Scope, status: int, message: str, send: Send) -> None:
        self.metrics.rejected.labels("too_large" if status == 413 else "timeout").inc()
        refusal = json_error(status, message, {"Connection": "close"})

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await refusal(scope, nothing, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, more: bool) -> None:
        """413, once the rest of the body is read on and dropped (at most ``DRAIN_BYTES``, for
        at most ``DRAIN_S``): a client that sends it all before it reads (Python's urllib)
        then gets the answer rather than a broken pipe."""
        drained, end = 0, time.monotonic() + DRAIN_S
        while more and drained <= DRAIN_BYTES:
            try:
                message = await asyncio.wait_for(receive(), max(end - time.monotonic(), 0))
            except asyncio.TimeoutError:
                break
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        await self._refuse(scope, 413, self.too_large, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send, int(declared) <= DRAIN_BYTES)
        deadline = scope.get(ARRIVED, time.monotonic()) + self.timeout_s
        body, more = bytearray(), True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                late = f"the request body did not arrive within {self.timeout_s:g} s (--timeout-s)"
                return await self._refuse(scope, 408, late, send)
            if message["type"] == "http.disconnect":
                return  # the client left while sending: nobody to answer
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._too_large(scope, receive, send, more)
        replayed = False

        async def replay() -> Message:  # the body once, then the client's own messages (disconnect)
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)
