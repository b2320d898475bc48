"""Dynamic batching for the server: a bounded queue of requests, decoded a batch at a time.

One batcher task takes the first waiting request, waits up to ``max_wait_ms``
for more (as long as the batch stays within ``max_batch_lines`` lines) and
decodes all their lines in one call per search setting (a beam size, or sampling), in a
the server keeps accepting requests. At most ``max_queue_lines`` lines are
accepted at a time (waiting, or in the batch being decoded): ``submit``
refuses a request that does not fit (``QueueFull``), so the work ahead of a
new request, and so its wait, stays bounded.

A request whose client gave up (its deadline passed, or it disconnected) is
``abandon``-ed: taken out of the queue, so its lines are never decoded. A
batch whose decoding fails is retried request by request, so only the request
that caused it fails (``DecodeFailed``); the batcher itself keeps running.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from seq2seq.serve_metrics import ServeMetrics

log = logging.getLogger(__name__)

# (lines, search) -> one translation per line; search: how to decode (serve.py passes
# DecodeOptions), any hashable value: requests with equal ones are decoded together
Decode = Callable[[list[str], Hashable], list[str]]


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after  # seconds


class DecodeFailed(Exception):
    """Decoding this request failed; the traceback is in the server's log, not in the answer."""


class ShuttingDown(Exception):
    """The server stopped before this request was decoded."""


class Abandoned(Exception):
    """The client gave up: ``reason`` is ``timeout`` or ``client_disconnected``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)  # compared by identity: the queue removes this very request
class Pending:
    lines: list[str]
    search: Hashable
    future: asyncio.Future
    decoding: bool = False  # its batch is in the decoding thread: too late to drop its lines
    finished: bool = False  # decoded, failed or dropped: its lines no longer count as accepted


class Batcher:
    def __init__(
        self,
        decode: Decode,
        metrics: ServeMetrics,
        max_wait_ms: float = 20.0,
        max_batch_lines: int = 1024,
        max_queue_lines: int = 2048,
    ):
        self.decode, self.metrics = decode, metrics
        self.max_wait_ms, self.max_batch_lines = max_wait_ms, max_batch_lines
        self.max_queue_lines = max_queue_lines
        self.queue: collections.deque[Pending] = collections.deque()
        self.queued_lines = 0  # lines in ``queue``
        self.accepted_lines = 0  # lines of unfinished requests: queued, or in ``batch``
        self.batch: list[Pending] = []  # taken from the queue, being decoded
        self.decoding_lines = 0  # lines in the decoding thread now
        self.rate = 0.0  # lines per second of the last batch: what Retry-After is estimated from
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="decode")
        self.task: asyncio.Task | None = None
        self._arrived = asyncio.Event()
        metrics.queue_lines.set_function(lambda: self.queued_lines)
        metrics.decoding_lines.set_function(lambda: self.decoding_lines)
        metrics.accepted_lines.set_function(lambda: self.accepted_lines)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, lines: list[str], search: Hashable) -> Pending:
        """Queue a request's lines; ``QueueFull`` if they do not fit."""
        if self.accepted_lines + len(lines) > self.max_queue_lines:
            raise QueueFull(self.retry_after())
        pending = Pending(lines, search, asyncio.get_running_loop().create_future())
        self.queue.append(pending)
        self.queued_lines += len(lines)
        self.accepted_lines += len(lines)
        self._arrived.set()
        return pending

    async def result(
        self, pending: Pending, timeout: float, gone: Awaitable[None] | None = None
    ) -> list[str]:
        """The request's translations, or ``Abandoned`` past ``timeout`` seconds or as soon as
        ``gone`` (the client disconnecting) completes; its lines are then dropped if still queued."""
        watcher = asyncio.ensure_future(gone) if gone is not None else None
        try:
            waiters = {pending.future} | ({watcher} if watcher else set())
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # the server cancelled the request's task
            self.abandon(pending, "shutting_down")
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        if pending.future.done():
            return pending.future.result()
        reason = "client_disconnected" if watcher in done else "timeout"
        self.abandon(pending, reason)
        raise Abandoned(reason)

    def full(self) -> bool:
        return self.accepted_lines >= self.max_queue_lines

    def retry_after(self) -> int:
        """Seconds until the lines accepted now are decoded, at the last batch's rate (1 to 60)."""
        if self.rate <= 0:
            return 1
        return min(60, max(1, math.ceil(self.accepted_lines / self.rate)))

    def _finish(self, pending: Pending) -> None:
        if not pending.finished:
            pending.finished = True
            self.accepted_lines -= len(pending.lines)

    def abandon(self, pending: Pending, reason: str) -> bool:
        """Nobody waits for this request any more: drop its lines unless they are being decoded.

        True if the lines were dropped (they will never be decoded).
        """
        pending.future.cancel()
        if pending.decoding:
            return False
        if pending in self.queue:  # else the collector holds it and will skip it
            self.queue.remove(pending)
            self.queued_lines -= len(pending.lines)
        self._finish(pending)
        self.metrics.dropped.labels(reason).inc(len(pending.lines))
        return True

    def fail_all(self, error: Exception) -> None:
        """Answer every request still waiting or in the current batch with ``error`` (at shutdown)."""
        for pending in [*self.queue, *self.batch]:
            if pending.future.done():
                continue
            if not pending.decoding:
                self.metrics.dropped.labels("shutting_down").inc(len(pending.lines))
            pending.future.set_exception(error)
            self._finish(pending)
        self.queue.clear()
        self.queued_lines = 0

    def _take(self) -> Pending:
        pending = self.queue.popleft()
        self.queued_lines -= len(pending.lines)
        return pending

    async def _collect(self) -> list[Pending]:
        """The first waiting request, and what else arrives within ``max_wait_ms`` and fits."""
        while not self.queue:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        batch = [self._take()]
        size = len(batch[0].lines)
        deadline = loop.time() + self.max_wait_ms / 1000
        while True:
            if self.queue:
                if size + len(self.queue[0].lines) > self.max_batch_lines:
                    break
                batch.append(self._take())
                size += len(batch[-1].lines)
                continue
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            self.batch = await self._collect()
            try:
                for search in sorted({p.search for p in self.batch}, key=repr):
                    await self._decode([p for p in self.batch if p.search == search], search)
            except Exception:  # a bug of ours, not of a request: answer them, keep serving
                log.exception("the batcher failed on a batch of %d requests", len(self.batch))
                for pending in self.batch:
                    if not pending.future.done():
                        pending.future.set_exception(DecodeFailed())
            for pending in self.batch:
                self._finish(pending)
            self.batch = []

    async def _decode(self, group: list[Pending], search: Hashable) -> None:
        """Decode the requests of one search setting together; if that fails, one by one."""
        try:
            await self._decode_together(group, search)
        finally:  # decoded, failed or skipped, these no longer count as accepted
            for pending in group:
                self._finish(pending)

    async def _decode_together(self, group: list[Pending], search: Hashable) -> None:
        group = [p for p in group if not p.future.done()]  # skip those abandoned meanwhile
        if not group:
            return
        lines = [line for p in group for line in p.lines]
        try:
            outputs = await self._in_thread(group, lines, search)
        except Exception:
            if len(group) == 1:
                log.exception("decoding a request of %d lines failed", len(lines))
                if not group[0].future.done():
                    group[0].future.set_exception(DecodeFailed())
                return
            log.warning("decoding %d requests together failed; one by one now", len(group))
            for pending in group:  # waiting again: a client that leaves now drops its lines
                pending.decoding = False
            for pending in group:
                await self._decode_together([pending], search)
            return
        start = 0
        for pending in group:  # a client that gave up meanwhile left a cancelled future
            if not pending.future.done():
                pending.future.set_result(outputs[start : start + len(pending.lines)])
            start += len(pending.lines)

    async def _in_thread(
        self, group: list[Pending], lines: list[str], search: Hashable
    ) -> list[str]:
        """``decode(lines, search)`` in the decoding thread, counted for /metrics and Retry-After."""
        for pending in group:
            pending.decoding = True
        self.decoding_lines = len(lines)
        began = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self.executor, self.decode, lines, search)
        finally:
            self.decoding_lines = 0
        self.rate = len(lines) / max(time.perf_counter() - began, 1e-6)
        self.metrics.lines.inc(len(lines))
        self.metrics.batch_lines.observe(len(lines))
        return outputs
