"""Serve a model over HTTP: ``POST /translate``; ``GET /health``, ``/ready``, ``/metrics``; ``/docs``.

A request passes, in order: the Host check, the API key (``--api-key-file``),
the body's byte limit (read before anything parses it), JSON validation, the
limits on lines, characters and beam, and the text check (lines that cannot be
tokenized get a 400 naming them). Its lines then wait in a bounded queue (503
with ``Retry-After`` when it is full) for the batcher (``serve_batcher``),
which decodes concurrent requests together; a line's translation does not
depend on its batch, so answers equal what ``seq2seq translate`` writes. Past
its deadline a request gets 504, and a request whose client disconnected is
dropped from the queue. On SIGTERM the server stops taking requests (503,
``/ready`` fails), answers those in flight for up to ``shutdown_timeout_s``,
and exits. Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from seq2seq.config import ConfigError, DecodeOptions
from seq2seq.serve_batcher import Abandoned, Batcher, DecodeFailed, QueueFull, ShuttingDown
from seq2seq.serve_guard import (
    ARRIVED,
    MAX_PROBLEMS,
    ApiKey,
    BodyLimit,
    Front,
    HostCheck,
    ServeError,
    ServeState,
    is_loopback,
    json_error,
    printable,
    text_problems,
)
from seq2seq.serve_metrics import ServeMetrics
from seq2seq.serve_page import add_page
from seq2seq.serve_shutdown import DrainingServer
from seq2seq.tokenization import SpacyTokenizer
from seq2seq.translation import attention_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    max_beam: int = 16
    max_lines: int = 512  # per request
    max_chars: int = 100_000  # per request, all lines together
    max_body_bytes: int | None = None  # per request; None: see body_limit()
    max_word_chars: int = 200  # characters between spaces, with a spaCy tokenizer
    max_wait_ms: float = 20.0  # how long the first request of a batch waits for company
    max_batch_lines: int = 1024  # lines decoded together at most
    max_queue_lines: int = 2048  # lines accepted at most: waiting, or being decoded
    timeout_s: float = 30.0  # from a request's arrival to its answer
    shutdown_timeout_s: float = 20.0  # after SIGTERM, for the requests in flight
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")  # Host header names
    api_key: bytes | None = field(default=None, repr=False)  # None: no key needed
    decode: DecodeOptions = DecodeOptions()  # alpha, max_len_ratio, ...; beam per request

    def body_limit(self) -> int:
        """Bytes per request body: ``max_body_bytes``, or enough for ``max_chars`` characters
        written as JSON escapes (``\\u00fc``: 6 bytes) in ``max_lines`` quoted lines."""
        return self.max_body_bytes or 6 * self.max_chars + 4 * self.max_lines + 4096

    def check(self) -> None:
        if not 1 <= self.decode.beam <= self.max_beam:
            raise ServeError(f"--beam {self.decode.beam} exceeds --max-beam {self.max_beam}")
        if self.timeout_s <= 0 or self.shutdown_timeout_s < 0:
            raise ServeError("--timeout-s must be above 0 and --shutdown-timeout at least 0")
        if self.max_lines > self.max_queue_lines:
            raise ServeError(
                f"--max-lines {self.max_lines} exceeds --max-queue-lines {self.max_queue_lines}: "
                "such a request would never fit in the queue"
            )


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: list[StrictStr] = Field(description="lines to translate, raw text")
    beam: StrictInt | None = Field(
        None, description="beam size; 1 is greedy; default: the server's"
    )
    sample: bool | None = Field(
        None, description="draw each token instead of searching; default: the server's"
    )
    temperature: float | None = Field(None, description="sampling temperature; near 0: greedy")
    top_k: StrictInt | None = Field(None, description="sample among the K most probable; 0: all")
    top_p: float | None = Field(None, description="sample within probability mass P (nucleus)")
    seed: StrictInt | None = Field(
        None, description="a line's draws depend on this and the line only"
    )
    n_best: StrictInt | None = Field(
        None, description="candidates per line in details (at most the beam); default 1"
    )
    attention: bool = Field(
        False, description="also answer details per line: tokens, candidates, attention weights"
    )


class Candidate(BaseModel):
    text: str
    score: float = Field(description="log-probability / length penalty (what beam search ranks)")


class LineDetails(BaseModel):
    source: list[str] = Field(description="the source tokens")
    output: list[str] = Field(description="the best candidate's tokens, then </s>")
    attention: list[list[float]] = Field(
        description="weights: one row per output token (with </s>), one column per source token"
    )
    candidates: list[Candidate] = Field(description="the n-best, best first")


class TranslateResponse(BaseModel):
    translations: list[str] = Field(description="one per input line, in order")
    details: list[LineDetails] | None = Field(
        None, description='with "attention": true, one per input line'
    )


class ErrorResponse(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 408, 413, 422, 500, 503, 504)}


class RequestError(Exception):
    def __init__(self, status: int, message: str, reason: str | None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers  # reason: for /metrics


def _check(
    request: TranslateRequest, settings: ServeSettings, word_limit: int | None
) -> tuple[DecodeOptions, bool]:
    """How to decode the request (the server's options with its own fields) and whether it
    wants details; a RequestError for what the limits or the text do not allow."""
    lines = request.text
    if len(lines) > settings.max_lines:
        message = f"text has {len(lines)} lines; at most {settings.max_lines} per request"
        raise RequestError(413, message, "too_large")
    characters = sum(len(line) for line in lines)
    if characters > settings.max_chars:
        message = f"text has {characters} characters; at most {settings.max_chars} per request"
        raise RequestError(413, message, "too_large")
    beam = settings.decode.beam if request.beam is None else request.beam
    if not 1 <= beam <= settings.max_beam:
        message = f"beam must be between 1 and {settings.max_beam}, got {beam}"
        raise RequestError(422, message, "beam")
    problems = text_problems(lines, word_limit)
    if problems:
        raise RequestError(400, problems, "bad_text")
    asked = {
        name: getattr(request, name)
        for name in ("sample", "temperature", "top_k", "top_p", "seed")
        if getattr(request, name) is not None
    }
    if request.n_best is not None:
        asked["n_best"] = request.n_best
    try:
        return replace(settings.decode, beam=beam, **asked), request.attention
    except ConfigError as error:
        raise RequestError(422, str(error), "options") from None


def decode_lines(translator, lines: list[str], search: tuple[DecodeOptions, bool]) -> list:
    """What the batcher runs: translations, or with details (``search[1]``) one dict per line."""
    options, details = search
    if not details:
        return translator.translate(lines, options)
    answers = []
    for index, translation in enumerate(
        translator.translate_detailed(lines, options, keep_attention=True)
    ):
        record = attention_record(index, translation)
        answers.append(
            {
                "text": translation.text,
                "source": record["source"],
                "output": record["output"],
                "attention": record["attention"],
                "candidates": [{"text": c.text, "score": c.score} for c in translation.candidates],
            }
        )
    return answers


def _validation_message(error: RequestValidationError, content_type: str) -> str:
    """One short line from pydantic's list of problems: the first few, each cut short."""
    problems, items = [], error.errors()
    if "json" not in content_type:  # FastAPI parses JSON only when told it is JSON
        problems.append("send the body with the header 'Content-Type: application/json'")
    for item in items[:MAX_PROBLEMS]:
        where = printable(".".join(str(part) for part in item.get("loc", ()) if part != "body"))
        if item.get("type") == "json_invalid":
            problems.append("the request body is not valid JSON")
        elif item.get("type") == "missing":
            problems.append(f'{where}: missing (send {{"text": ["line", ...]}})')
        else:
            problems.append(f"{where or 'body'}: {printable(str(item.get('msg', 'invalid')))}")
    if len(items) > MAX_PROBLEMS:
        problems.append(f"and {len(items) - MAX_PROBLEMS} more")
    return "; ".join(problems) or "invalid request"


def _refusal(error: Exception) -> RequestError:
    """What the client hears when its queued request did not end in translations."""
    if isinstance(error, QueueFull):
        message = f"the queue is full; retry in {error.retry_after} s"
        return RequestError(503, message, "queue_full", {"Retry-After": str(error.retry_after)})
    if isinstance(error, Abandoned) and error.reason == "timeout":
        return RequestError(504, "no translation within --timeout-s; send fewer lines", "timeout")
    if isinstance(error, Abandoned):  # nobody is listening; 499, as nginx logs it
        return RequestError(499, "the client disconnected", None)
    if isinstance(error, ShuttingDown):
        message = "the server shut down before this request was decoded"
        return RequestError(503, message, "shutting_down", {"Retry-After": "1"})
    message = "decoding this request failed (the server's log has the details)"
    return RequestError(500, message, "failed")


async def _disconnected(receive) -> None:
    """Returns once the client has disconnected (the body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _add_error_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    """Every error as ``{"error": "..."}``, a few hundred bytes at most, no traceback."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        metrics.rejected.labels("invalid").inc()
        content_type = request.headers.get("content-type", "")
        return json_error(400, _validation_message(error, content_type))

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        if error.reason is not None:
            metrics.rejected.labels(error.reason).inc()
        return json_error(error.status, str(error), error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 400:  # FastAPI's "There was an error parsing the body"
            metrics.rejected.labels("invalid").inc()
        return json_error(error.status_code, printable(str(error.detail), 200), error.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, error: Exception) -> JSONResponse:
        return json_error(500, "internal error (the server's log has the details)")


def _add_probes(app: FastAPI, model_name: str) -> None:
    """``/health`` (liveness), ``/ready`` (readiness) and ``/metrics``."""
    state: ServeState = app.state.serve
    batcher: Batcher = app.state.batcher

    @app.get("/health", responses={503: {"model": ErrorResponse}})
    async def health():
        """Liveness: 200 while the process and its batcher run."""
        if not batcher.alive():
            return json_error(503, "the batcher stopped; restart the server")
        return {"status": "ok", "model": model_name}

    @app.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready():
        """Readiness: 200 when a request would be taken (model loaded, not shutting down,
        queue not full)."""
        if state.draining_since is not None:
            return json_error(503, "shutting down")
        if not batcher.alive():
            return json_error(503, "the batcher stopped")
        if batcher.full():
            return json_error(503, "the queue is full", {"Retry-After": str(batcher.retry_after())})
        return {"status": "ready", "queued_lines": batcher.queued_lines}

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics (text exposition format)."""
        body, content_type = batcher.metrics.text()
        return Response(body, media_type=content_type)


def create_app(translator, settings: ServeSettings, model_name: str = "") -> FastAPI:
    """The server as an ASGI app; ``model_name`` (a name, never a path) shows in /health and /docs."""
    metrics, state = ServeMetrics(), ServeState()
    batcher = Batcher(
        lambda lines, search: decode_lines(translator, lines, search),
        metrics,
        settings.max_wait_ms,
        settings.max_batch_lines,
        settings.max_queue_lines,
    )
    spacy = isinstance(translator.loaded.src_tokenizer, SpacyTokenizer)
    word_limit = settings.max_word_chars if spacy else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="seq2seq translation server",
        description=f"Model: {model_name}. Concurrent requests are batched together.",
        lifespan=lifespan,
    )
    app.state.serve, app.state.batcher = state, batcher  # for the server's shutdown
    _add_error_handlers(app, metrics)
    app.add_middleware(BodyLimit, settings.body_limit(), settings.timeout_s, metrics)
    app.add_middleware(ApiKey, settings.api_key, metrics)
    app.add_middleware(HostCheck, settings.allowed_hosts, metrics)
    app.add_middleware(Front, state, metrics)  # added last: the outermost
    _add_probes(app, model_name)
    add_page(app)

    @app.post(
        "/translate",
        response_model=TranslateResponse,
        responses=ERRORS,
        response_model_exclude_none=True,
    )
    async def translate(body: TranslateRequest, request: Request) -> TranslateResponse:
        """Translate lines; the answer holds one translation per line, in order."""
        search = _check(body, settings, word_limit)
        if not body.text:
            return TranslateResponse(translations=[], details=[] if body.attention else None)
        arrived = request.scope.get(ARRIVED, time.monotonic())
        try:
            pending = batcher.submit(body.text, search)
            remaining = arrived + settings.timeout_s - time.monotonic()
            lines = await batcher.result(pending, remaining, _disconnected(request.receive))
        except (QueueFull, Abandoned, DecodeFailed, ShuttingDown) as error:
            raise _refusal(error) from None
        if body.attention:
            return TranslateResponse(translations=[d["text"] for d in lines], details=lines)
        return TranslateResponse(translations=lines)

    return app


def serve(translator, settings: ServeSettings, host: str, port: int, model_name: str) -> None:
    """Serve until SIGTERM or SIGINT, then drain (``DrainingServer``) and return."""
    settings.check()
    app = create_app(translator, settings, model_name)
    if settings.api_key is None and not is_loopback(host):
        log.warning(
            "listening on %s without --api-key-file: anyone who reaches the port can use the model",
            host,
        )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=2,  # for answers already on their way; the drain came first
    )  # fmt: skip
    log.info(
        "serving %s on http://%s:%d (docs at /docs; Host names: %s)",
        model_name, host, port, ", ".join(settings.allowed_hosts),
    )  # fmt: skip
    DrainingServer(config, app, settings.shutdown_timeout_s).run()
    log.info("shut down")
