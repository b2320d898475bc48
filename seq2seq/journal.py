"""What makes a file translation crash-safe: partial outputs, the progress journal, the lock.

Into a file, output goes to ``.NAME.partial`` beside it, with a journal
``.NAME.progress`` (JSON: lines done, the byte size of each output so far, a
SHA-256 of the input lines done, and the settings that decide those bytes).
After every chunk the outputs are fsynced, then the journal is replaced
atomically (written under a ``mkstemp`` name, fsynced, renamed), so the journal
never claims bytes that are not on disk. ``.NAME.lock`` is held (``flock``)
while a run writes, so a second run into the same output is refused instead of
interleaving its bytes with the first's.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path

from seq2seq.errors import UserError

JOURNAL_FORMAT = "seq2seq-translate-progress"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class ResumeError(UserError, ValueError):
    """An interrupted translation cannot be continued as asked."""


class OutputError(UserError, OSError):
    """An output that cannot be written: in use by another run, or no space left."""


def journal_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.progress")


class Output:
    """One output written chunk by chunk: stdout, or a file under a temporary name."""

    def __init__(self, name: str, resume_size: int | None = None):
        self.final = None if name == "-" else Path(name)
        if self.final is None:
            self.handle = sys.stdout.buffer
            return
        self.partial = self.final.with_name(f".{self.final.name}.partial")
        if resume_size is None:
            self.handle = open(self.partial, "wb")
            return
        if not self.partial.is_file() or self.partial.stat().st_size < resume_size:
            raise ResumeError(
                f"{self.partial}: missing or shorter than its journal says; "
                f"delete {self.partial.name} and {journal_path(self.final).name} to start over"
            )
        self.handle = open(self.partial, "r+b")
        self.handle.truncate(resume_size)  # drop what a killed run wrote after its last chunk
        self.handle.seek(resume_size)

    def write(self, text: str) -> None:
        self.handle.write(text.encode("utf-8"))

    def sync(self) -> int:
        """Flush to the disk; the byte size written so far."""
        self.handle.flush()
        if self.final is None:
            return 0
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def finish(self) -> None:
        self.sync()
        if self.final is not None:
            self.handle.close()
            os.replace(self.partial, self.final)

    def close(self) -> None:
        """Close without finishing; bytes past the journal's sizes are dropped on resume."""
        if self.final is not None and not self.handle.closed:
            try:
                self.handle.close()
            except OSError:  # a flush that cannot succeed (full disk): nothing to keep
                pass


def write_journal(path: Path, record: dict) -> None:
    """Replace ``path`` atomically with ``record`` (lines, sizes, digest, settings)."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"format": JOURNAL_FORMAT, **record}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_journal(path: Path, settings: dict) -> dict:
    """The record of the interrupted run, if it used ``settings``; else a ResumeError."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        assert record["format"] == JOURNAL_FORMAT and "digest" in record
    except (OSError, ValueError, KeyError, AssertionError):
        raise ResumeError(
            f"{path}: not a readable translation journal (or one of an older seq2seq); "
            f"delete it and the .partial file to start over"
        ) from None
    differ = [k for k in settings if record["settings"].get(k) != settings[k]]
    if differ == ["input"]:
        raise ResumeError(
            f"--resume: {_input_change(record['settings']['input'], settings['input'])} since "
            "the interrupted run; a changed input would pair new lines with old translations: "
            f"delete {path.name} and its .partial file to start over"
        )
    if differ:
        raise ResumeError(
            f"--resume: the interrupted run used other settings ({', '.join(differ)} differ); "
            f"rerun it with the same model, input and options, or delete {path.name} "
            "and its .partial file to start over"
        )
    return record


def _input_change(before, now) -> str:
    if not isinstance(before, list) or not isinstance(now, list) or before[0] != now[0]:
        return "the input is another file"
    name = Path(now[0]).name
    if before[1] != now[1]:
        return f"{name} changed size ({before[1]} -> {now[1]} bytes)"
    return f"{name} was modified (its modification time changed)"


class OutputLock:
    """``.NAME.lock`` beside an output, held with ``flock`` while a run writes the output."""

    def __init__(self, output: Path):
        self.path = output.with_name(f".{output.name}.lock")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(
                    f"{output}: another seq2seq translate is writing it ({self.path.name} is "
                    "locked); wait for it to finish, or choose another --output"
                ) from None
            try:  # the file we locked must still be the one under that name
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # a finishing run removed it between our open and flock: again
        self.fd = fd

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing releases the lock
