"""Read what an offline W&B run wrote: its ``run-*.wandb`` file, a LevelDB-style log of protobuf records."""

from __future__ import annotations

import glob
import json
import struct
from pathlib import Path


def run_files(folder: Path) -> list[str]:
    """The offline runs under a training folder, oldest first, once W&B has written them.

    ``run.finish()`` returns before W&B's service process has flushed every
    record; ``wandb.teardown()`` (what process exit does) waits for it.
    """
    import wandb

    wandb.teardown()
    return sorted(glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb")))


def records(run_file: str) -> list:
    from wandb.proto import wandb_internal_pb2

    data = open(run_file, "rb").read()
    block, position, chunk, found = 32768, 7, b"", []  # 7: the header ":W&B" + magic + version
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # block trailer
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            found.append(record)
    return found


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def history(run_file: str) -> list[dict]:
    """One dict per ``run.log`` call; nested keys joined with ``/``."""
    return [_items(r.history.item) for r in records(run_file) if r.HasField("history")]


def summary(run_file: str) -> dict:
    """The run's final summary: every summary update applied in order."""
    merged = {}
    for record in records(run_file):
        if record.HasField("summary"):
            merged.update(_items(record.summary.update))
    return merged


def artifacts(run_file: str) -> list[dict]:
    return [
        {
            "name": r.artifact.name,
            "type": r.artifact.type,
            "aliases": list(r.artifact.aliases),
            "metadata": json.loads(r.artifact.metadata or "{}"),
            "files": [entry.path for entry in r.artifact.manifest.contents],
        }
        for r in records(run_file)
        if r.HasField("artifact")
    ]


def run_info(run_file: str) -> dict:
    run = next(r.run for r in records(run_file) if r.HasField("run"))
    return {"id": run.run_id, "group": run.run_group, "job_type": run.job_type}


def console(run_file: str) -> str:
    """The captured console output (stdout and stderr)."""
    return "".join(r.output_raw.line for r in records(run_file) if r.HasField("output_raw"))
