"""The server's Prometheus metrics (``GET /metrics``), in a registry of their own per app.

A registry per app, not prometheus-client's global one, so two apps in one
process (the tests make many) count separately. Needs ``prometheus-client``
(the ``serve`` extra).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Why a request was refused: each has its own status code (docs/guide/serving.md).
REJECTIONS = (
    "bad_host",  # 400: the Host header names no allowed host
    "invalid",  # 400: not JSON, or not {"text": [strings], "beam": int}
    "bad_text",  # 400: a line that cannot be tokenized
    "unauthorized",  # 401: no or a wrong API key
    "timeout",  # 408 while the body arrives, 504 while it waits or decodes
    "too_large",  # 413: too many bytes, lines or characters
    "beam",  # 422: beam outside 1..max_beam
    "options",  # 422: decoding options DecodeOptions refuses (n_best > beam, top_p 0, ...)
    "queue_full",  # 503: the queue has no room for the request's lines
    "shutting_down",  # 503: SIGTERM came; only requests already in flight are answered
    "failed",  # 500: decoding the request failed (the server logs why)
)
DROPS = ("client_disconnected", "timeout", "shutting_down")  # queued lines never decoded
PATHS = ("/translate", "/health", "/ready", "/metrics", "/docs", "/openapi.json")


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "seq2seq_requests", "HTTP requests answered", ["path", "status"], registry=registry
        )
        self.latency = Histogram(
            "seq2seq_request_seconds",
            "seconds from a POST /translate arriving to its answer",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.lines = Counter("seq2seq_lines_translated", "lines decoded", registry=registry)
        self.batch_lines = Histogram(
            "seq2seq_batch_lines",
            "lines decoded together in one translate call",
            buckets=tuple(2**i for i in range(11)),  # 1 .. 1024
            registry=registry,
        )
        self.queue_lines = Gauge(
            "seq2seq_queue_lines", "lines waiting for a batch", registry=registry
        )
        self.decoding_lines = Gauge(
            "seq2seq_decoding_lines", "lines being decoded now", registry=registry
        )
        self.accepted_lines = Gauge(
            "seq2seq_accepted_lines",
            "lines accepted and not yet decoded or dropped (at most --max-queue-lines)",
            registry=registry,
        )
        self.rejected = Counter(
            "seq2seq_rejected_requests",
            "requests refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.dropped = Counter(
            "seq2seq_dropped_lines",
            "queued lines dropped before decoding, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in REJECTIONS:  # every series exists from the start, at 0
            self.rejected.labels(reason)
        for reason in DROPS:
            self.dropped.labels(reason)

    def answered(self, path: str, status: int) -> None:
        """One answered request; paths outside ``PATHS`` count as ``other`` (bounded labels)."""
        self.requests.labels(path if path in PATHS else "other", str(status)).inc()

    def text(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
