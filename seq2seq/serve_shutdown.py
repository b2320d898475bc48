"""How the server stops: on SIGTERM it drains rather than dropping the requests in flight.

uvicorn alone closes the listening socket at once, so new clients meet a refused
connection and load balancers keep sending until they notice. Here the first
SIGTERM (or SIGINT) only marks the server as draining: ``/ready`` answers 503,
new ``/translate`` requests get 503 (``serve_guard.Front``), and those in flight
are answered. Once none is left, or after ``shutdown_timeout_s`` (those still
waiting then get 503), uvicorn's own shutdown runs and ``run()`` returns: the
process exits with 0. A second signal stops at once.
"""

from __future__ import annotations

import logging
import time

import uvicorn
from fastapi import FastAPI

from seq2seq.serve_batcher import Batcher, ShuttingDown
from seq2seq.serve_guard import ServeState

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but the first SIGTERM or SIGINT drains before stopping: new requests
    get 503 while those in flight are answered, for up to ``shutdown_timeout_s``; a second
    signal stops at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, shutdown_timeout_s: float):
        super().__init__(config)
        self.state: ServeState = app.state.serve
        self.batcher: Batcher = app.state.batcher
        self.shutdown_timeout_s = shutdown_timeout_s

    def handle_exit(self, sig: int, frame) -> None:
        if self.state.draining_since is None:
            self.state.draining_since = time.monotonic()
        else:
            self.should_exit = self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        since = self.state.draining_since
        if since is not None and not self.should_exit:
            if self.state.in_flight == 0:
                self.should_exit = True
            elif time.monotonic() - since > self.shutdown_timeout_s:
                log.warning(
                    "%d requests still in flight after --shutdown-timeout %g s: answering 503",
                    self.state.in_flight,
                    self.shutdown_timeout_s,
                )
                self.batcher.fail_all(ShuttingDown())
                self.should_exit = True
        return await super().on_tick(counter)
