"""Fetch public corpora into ``data/``: from their public source, or from a local mirror."""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from seq2seq.errors import UserError

log = logging.getLogger(__name__)

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
MULTI30K_FILES = [
    f"{split}.{lang}.gz"
    for split in ("train", "val", "test_2016_flickr")
    for lang in ("de", "en", "fr", "cs")
]
# Task 2: five English and five German captions per training image, written independently
# (comparable text, not translations): in-domain monolingual data for back-translation.
# Only the training split: its val and test captions describe the images of task 1's val
# and test_2016_flickr.
MULTI30K_TASK2_URL = MULTI30K_URL.replace("task1", "task2")
MULTI30K_TASK2_FILES = [f"train.{k}.{lang}.gz" for k in range(1, 6) for lang in ("de", "en")]
TATOEBA_FILES = [
    f"{split}.{lang}.gz" for split in ("train", "dev", "test") for lang in ("de", "en")
]
# name -> (public URL of the folder, or None when the split exists only as a prepared copy; files)
CORPORA = {
    "multi30k": (MULTI30K_URL, MULTI30K_FILES),
    "multi30k_task2": (MULTI30K_TASK2_URL, MULTI30K_TASK2_FILES),  # download multi30k --task 2
    # The Anki/manythings.org German-English pairs minus the Tatoeba Challenge test
    # set, shuffled and split (see its README); only a prepared copy has this split.
    "tatoeba_de_en": (None, TATOEBA_FILES),
}


class DownloadError(UserError, RuntimeError):
    """A corpus could be fetched neither from its source nor from the given folder."""


def download(
    name: str, dest: str | Path, source: str | Path | None = None, timeout: float = 30.0
) -> Path:
    """Put corpus ``name`` into ``dest``; ``source`` is a local folder to copy from instead of the web.

    Files already present in ``dest`` are kept. Each file is written to a
    temporary name and renamed, so an interrupted download leaves no partial file.
    """
    if name not in CORPORA:
        raise DownloadError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    url, files = CORPORA[name]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for filename in files:
        target = dest / filename
        if target.exists():
            continue
        tmp = Path(tempfile.mkstemp(dir=dest, prefix=f".{filename}.")[1])
        try:
            if source is not None:
                origin = Path(source) / filename
                if not origin.is_file():
                    raise DownloadError(
                        f"{origin}: no such file; --from must name a folder holding {filename}"
                    )
                shutil.copyfile(origin, tmp)
            elif url is None:
                raise DownloadError(
                    f"{name} has no public download of this exact split; "
                    f"copy it from a prepared folder: seq2seq download {name} --from DIR"
                )
            else:
                _fetch(f"{url}/{filename}", tmp, timeout, name)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("%s -> %s", filename, target)
    return dest


def _fetch(url: str, target: Path, timeout: float, name: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"cannot download {url} ({reason}). Without internet, copy the files from a local "
            f"mirror: seq2seq download {name} --from DIR (e.g. ../shared/data/{name})"
        ) from None
