"""Serve a model over HTTP: ``POST /translate``, ``GET /health``, OpenAPI docs at ``/docs``.

Requests that arrive together are decoded together (dynamic batching): a
single batcher task takes the first waiting request, waits up to
``max_wait_ms`` for more (or until ``max_batch_lines`` lines are waiting),
decodes all their lines in one ``translate`` call per beam size, in a
background thread so the server keeps accepting requests, and answers each
request with its own lines. A line's translation does not depend on what else
is in its batch, so answers equal what ``seq2seq translate`` writes for the
same lines. Needs the ``serve`` extra (FastAPI and uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from seq2seq.config import DecodeOptions
from seq2seq.translate import Translator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    max_beam: int = 16
    max_lines: int = 512  # per request
    max_chars: int = 100_000  # per request, all lines together
    max_wait_ms: float = 20.0  # how long the first request of a batch waits for company
    max_batch_lines: int = 1024  # lines decoded together at most
    decode: DecodeOptions = DecodeOptions()  # alpha, max_len_ratio, ...; beam per request


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: list[StrictStr] = Field(description="lines to translate, raw text")
    beam: StrictInt | None = Field(
        None, description="beam size; 1 is greedy; default: the server's"
    )


class TranslateResponse(BaseModel):
    translations: list[str] = Field(description="one per input line, in order")


class ErrorResponse(BaseModel):
    error: str


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Pending:
    lines: list[str]
    beam: int
    future: asyncio.Future


class Batcher:
    """Collects concurrent requests and decodes them in shared batches, one batch at a time."""

    def __init__(self, translator: Translator, settings: ServeSettings):
        self.translator, self.settings = translator, settings
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="decode")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def translate(self, lines: list[str], beam: int) -> list[str]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(lines, beam, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        """The first waiting request, and what else arrives within ``max_wait_ms``."""
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        size = len(batch[0].lines)
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while size < self.settings.max_batch_lines:
            if self.queue.empty():
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
            else:
                pending = self.queue.get_nowait()
            batch.append(pending)
            size += len(pending.lines)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            for beam in sorted({p.beam for p in batch}):
                group = [p for p in batch if p.beam == beam]
                lines = [line for p in group for line in p.lines]
                try:
                    outputs = await loop.run_in_executor(self.executor, self._decode, lines, beam)
                except Exception as error:  # answer the requests; keep serving
                    log.exception("decoding failed")
                    for p in group:
                        if not p.future.done():
                            p.future.set_exception(error)
                    continue
                start = 0
                for p in group:
                    if not p.future.done():  # a client that went away leaves a cancelled future
                        p.future.set_result(outputs[start : start + len(p.lines)])
                    start += len(p.lines)

    def _decode(self, lines: list[str], beam: int) -> list[str]:
        return self.translator.translate(lines, self.settings.decode, beam=beam)


def _check(request: TranslateRequest, settings: ServeSettings) -> int:
    """The request's beam; a RequestError for what the limits do not allow."""
    if len(request.text) > settings.max_lines:
        raise RequestError(
            413, f"text has {len(request.text)} lines; at most {settings.max_lines} per request"
        )
    characters = sum(len(line) for line in request.text)
    if characters > settings.max_chars:
        raise RequestError(
            413, f"text has {characters} characters; at most {settings.max_chars} per request"
        )
    beam = settings.decode.beam if request.beam is None else request.beam
    if not 1 <= beam <= settings.max_beam:
        raise RequestError(422, f"beam must be between 1 and {settings.max_beam}, got {beam}")
    return beam


def _validation_message(error: RequestValidationError) -> str:
    """One readable line from pydantic's list of problems."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        if item.get("type") == "json_invalid":
            problems.append("the request body is not valid JSON")
        elif item.get("type") == "missing":
            problems.append(f'{where}: missing (send {{"text": ["line", ...]}})')
        else:
            problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


def create_app(translator: Translator, settings: ServeSettings, model_name: str = "") -> FastAPI:
    batcher = Batcher(translator, settings)

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

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(error)}, status_code=400)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.get("/health")
    async def health() -> dict:
        """200 once the model is loaded (it is loaded before the server starts listening)."""
        return {"status": "ok", "model": model_name}

    @app.post(
        "/translate",
        response_model=TranslateResponse,
        responses={
            400: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
        },
    )
    async def translate(request: TranslateRequest) -> TranslateResponse:
        """Translate lines; the answer holds one translation per line, in order."""
        beam = _check(request, settings)
        if not request.text:
            return TranslateResponse(translations=[])
        return TranslateResponse(translations=await batcher.translate(request.text, beam))

    return app


def serve(
    translator: Translator, settings: ServeSettings, host: str, port: int, model_name: str
) -> None:
    import uvicorn

    app = create_app(translator, settings, model_name)
    log.info("serving %s on http://%s:%d (docs at /docs)", model_name, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
