"""``seq2seq plot``: learning curves of training runs without W&B, from their own folders.

A run folder's ``last.pt`` holds every validation (step, epoch, minutes, loss,
ppl, BLEU) in its resume state; a folder without it (kept best.pt only) is
read from ``train.log``'s validation lines instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from seq2seq.errors import UserError

LOG_LINE = re.compile(
    r"validation at step (\d+) \(([\d.]+) min\): loss ([\d.]+), ppl ([\d.]+), BLEU ([\d.]+)"
)


class PlotError(UserError, ValueError):
    """A folder that holds no training run, or no plotting library."""


def history(folder: str | Path) -> list[dict]:
    """The validations of the run in ``folder``, in order."""
    folder = Path(folder)
    last = folder / "last.pt"
    if last.is_file():
        from seq2seq import checkpoint

        progress = checkpoint.load(last).get("progress") or {}
        if progress.get("history"):
            return list(progress["history"])
    log = folder / "train.log"
    if not log.is_file():
        raise PlotError(f"{folder}: no last.pt or train.log; give the folders seq2seq train wrote")
    entries = []
    for match in LOG_LINE.finditer(log.read_text(encoding="utf-8", errors="replace")):
        step, minutes, loss, ppl, bleu = match.groups()
        entries.append(
            {"step": int(step), "minutes": float(minutes), "loss": float(loss), "ppl": float(ppl),
             "bleu": float(bleu)}
        )  # fmt: skip
    if not entries:
        raise PlotError(f"{log}: no validation yet")
    return entries


def plot(folders: list[str | Path], output: str | Path) -> Path:
    """One figure of all ``folders``' curves (named by folder) into ``output`` (PNG, SVG, PDF)."""
    try:
        import matplotlib  # noqa: F401

        from seq2seq.plots import curves_figure
    except ImportError:
        raise PlotError("seq2seq plot needs matplotlib: pip install 'seq2seq-nmt[plot]'") from None
    names = [Path(f).name or str(f) for f in folders]
    if len(set(names)) < len(names):
        names = [str(f) for f in folders]
    runs = {name: history(folder) for name, folder in zip(names, folders, strict=True)}
    output = Path(output)
    curves_figure(runs).savefig(output, dpi=100)
    return output
