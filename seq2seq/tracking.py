"""Experiment tracking with Weights & Biases, offline unless asked otherwise.

The mode comes from the config, else ``$WANDB_MODE``, else ``online`` when an
API key is configured and ``offline`` when none is (offline needs no network
and no account; ``wandb sync`` uploads the run later). ``disabled`` turns
tracking off. A process without a terminal never gets a login prompt: asking
for ``online`` there without a key is an error that says what to do.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path

from seq2seq.config import WandbConfig
from seq2seq.errors import UserError

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")


class TrackingError(UserError, RuntimeError):
    """W&B cannot run in the mode that was asked for."""


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(config: WandbConfig) -> str:
    mode = (
        config.mode or os.environ.get("WANDB_MODE") or ("online" if _has_api_key() else "offline")
    )
    if mode == "dryrun":  # W&B's old name for offline
        mode = "offline"
    if mode not in MODES:
        raise TrackingError(f"WANDB_MODE={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "online" and not _has_api_key() and not sys.stdin.isatty():
        raise TrackingError(
            "W&B mode is online but no API key is set and there is no terminal to log in from: "
            "set WANDB_API_KEY, or use wandb.mode: offline (then `wandb sync`) or disabled"
        )
    return mode


class Tracker:
    """Logs scalars and tables to a W&B run; a no-op when tracking is disabled."""

    def __init__(
        self,
        config: WandbConfig,
        run_config: dict,
        output_dir: Path,
        run_id: str | None = None,
        enabled: bool = True,
    ):
        self.mode = resolve_mode(config) if enabled else "disabled"
        self.run = None
        if self.mode == "disabled":
            return
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            mode=self.mode,
            project=config.project,
            entity=config.entity,
            name=config.name or output_dir.name,
            tags=config.tags,
            config=run_config,
            dir=str(output_dir),
            id=run_id,
            resume="allow" if run_id else None,
            settings=wandb.Settings(console="off", silent=True, init_timeout=60),
        )
        log.info("W&B run %s (%s) in %s", self.run.id, self.mode, self.run.dir)

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        if self.run is not None:
            self.run.log({name: self._wandb.Table(columns=columns, data=rows)}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
