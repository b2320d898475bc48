"""Experiment tracking with Weights & Biases, offline unless asked otherwise.

The mode comes from the config, else ``$WANDB_MODE``, else ``online`` when an
API key is configured and ``offline`` when none is (offline needs no network
and no account; ``wandb sync`` uploads the run later). ``disabled`` turns
tracking off. A process without a terminal never gets a login prompt: asking
for ``online`` there without a key is an error that says what to do.

Every point is logged with ``train/step`` (optimizer updates) as its x-axis,
never as W&B's own step, so the points a run repeats after ``kill -9`` and
``--resume`` are kept rather than dropped. A resumed run continues the same
W&B run when it was online and is online again; otherwise (W&B cannot resume
an offline run) it starts a new run in the group named after the first one.
Summaries keep the best validation values, not the last.
"""

from __future__ import annotations

import io
import logging
import netrc
import os
import re
import secrets
import string
import sys
from pathlib import Path

from seq2seq.config import WandbConfig, higher_is_better
from seq2seq.errors import UserError
from seq2seq.plots import attention_figure

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
SCORES = ("bleu", "loss", "ppl")  # what each validation entry holds
BEST = {f"valid/{k}": "max" if higher_is_better(k) else "min" for k in SCORES}
BEST["train/loss"] = "min"


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


def new_run_id() -> str:
    """A W&B-style run id, from the OS (the training RNGs are left alone)."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def plan_run(previous: dict | None, mode: str) -> tuple[str | None, str | None, bool]:
    """(run id, group, resume) for this process's run, given the run a checkpoint names.

    Only an online run continued online is the same W&B run; anything else is
    a new run grouped with the first. A fresh online run lets W&B (or a sweep
    agent) choose its id; a fresh offline run is a group of one, so a later
    resume can join it.
    """
    if previous is None:
        if mode == "online":
            return None, None, False
        run_id = os.environ.get("WANDB_RUN_ID") or new_run_id()
        return run_id, run_id, False
    if previous.get("mode") == "online" and mode == "online":
        return previous["id"], previous.get("group"), True
    return new_run_id(), previous.get("group") or previous["id"], False


def _best(history: list[dict], metric: str) -> dict:
    """The validation that made ``best.pt``: the first with the best score (BLEU up, losses down)."""
    sign = 1 if higher_is_better(metric) else -1
    return max(history, key=lambda entry: sign * entry[metric])


def _init(wandb, mode: str, **options):
    """``wandb.init`` with what every run here shares: no prompts, console captured."""
    settings = wandb.Settings(console="wrap", silent=True, init_timeout=60)
    return wandb.init(mode=mode, settings=settings, **options)


def _where(run, mode: str) -> str:
    if mode == "online":
        return f"W&B run {run.name}: {run.url}"
    return f"W&B run {run.name} saved offline; upload it with: wandb sync {Path(run.dir).parent}"


def _image(wandb, source: list[str], output: list[str], weights: list[list[float]]):
    """An attention heatmap (rows: output tokens, columns: source tokens) as a W&B image."""
    from PIL import Image

    png = io.BytesIO()
    attention_figure(source, output, weights).savefig(png, format="png", dpi=80)
    png.seek(0)
    return wandb.Image(Image.open(png), caption=" ".join(source))


class Tracker:
    """The training run's W&B side; every method is a no-op when tracking is disabled."""

    def __init__(
        self,
        config: WandbConfig,
        run_config: dict,
        output_dir: Path,
        previous: dict | None = None,
        enabled: bool = True,
    ):
        self.mode = resolve_mode(config) if enabled else "disabled"
        self.run, self.group, self._config, self._images = None, None, run_config, True
        if self.mode == "disabled":
            return
        import wandb

        self._wandb = wandb
        run_id, self.group, resume = plan_run(previous, self.mode)
        self.run = _init(
            wandb,
            self.mode,
            project=config.project,
            entity=config.entity,
            name=config.name or output_dir.name,
            tags=config.tags,
            group=self.group,
            job_type="train",
            config=run_config,
            dir=str(output_dir),
            id=run_id,
            resume="allow" if resume else None,
        )
        self.run.define_metric("train/step")
        self.run.define_metric("*", step_metric="train/step")
        for name, summary in BEST.items():
            self.run.define_metric(name, step_metric="train/step", summary=summary)
        log.info(_where(self.run, self.mode))

    @property
    def active(self) -> bool:
        return self.run is not None

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    @property
    def identity(self) -> dict | None:
        """What a checkpoint keeps to find this run again (``--resume``, ``evaluate --wandb``)."""
        if self.run is None:
            return None
        return {
            "id": self.run.id,
            "group": self.group,
            "mode": self.mode,
            "project": self.run.project,
            "entity": self.run.entity or None,
            "name": self.run.name,
        }

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            self.run.log({**metrics, "train/step": step})

    def describe(self, setup: dict, data_files: dict[str, Path]) -> None:
        """Put ``setup`` (parameters, vocabularies, device, ...) in the summary; link the data."""
        if self.run is None:
            return
        self.run.summary.update(setup)
        self._use_data(data_files)

    def log_validation(
        self,
        history: list[dict],
        metric: str,
        samples: list[list[str]],
        attention: list[tuple[list[str], list[str], list[list[float]]]],
    ) -> None:
        """The latest validation (``history[-1]``): scores, sample translations, attention heatmaps.

        The summary's ``best/*`` name the validation ``best.pt`` holds, over the whole
        training (a run continued offline included).
        """
        if self.run is None:
            return
        latest, best = history[-1], _best(history, metric)
        table = self._wandb.Table(columns=["source", "reference", "hypothesis"], data=samples)
        row = {**{f"valid/{k}": latest[k] for k in SCORES}, "valid/samples": table}
        if attention and self._images:
            try:
                for i, sample in enumerate(attention, start=1):  # one panel per sentence
                    row[f"valid/attention/{i}"] = _image(self._wandb, *sample)
            except ImportError:  # matplotlib is the optional [plot] extra
                self._images = False
                log.info("matplotlib is not installed: no attention images in W&B")
        self.log(row, latest["step"])
        self.run.summary.update(
            {"best/step": best["step"], **{f"best/valid_{k}": best[k] for k in SCORES}}
        )

    def log_checkpoints(
        self, output_dir: Path, history: list[dict], metric: str, step: int
    ) -> None:
        """``best.pt`` (alias ``best``) and ``last.pt`` (``latest``, at ``step``) as one model artifact.

        Each version's metadata: its step, the validation scores it was judged by
        (``validated_at`` that step) and the config.
        """
        if self.run is None or not history:
            return
        best, latest = _best(history, metric), history[-1]
        name = f"model-{self.group or self.run.id}"
        for file, alias, scores, at in (
            ("best.pt", "best", best, best["step"]),
            ("last.pt", "latest", latest, step),
        ):
            if not (output_dir / file).exists():
                continue
            metadata = {"step": at, "validated_at": scores["step"], "config": self._config}
            metadata.update({f"valid_{k}": scores[k] for k in SCORES})
            artifact = self._wandb.Artifact(name, type="model", metadata=metadata)
            artifact.add_file(str(output_dir / file), name=file)
            self.run.log_artifact(artifact, aliases=[alias])

    def _use_data(self, files: dict[str, Path]) -> None:
        """The corpora as a dataset artifact of references: paths and checksums, no upload."""
        first = next(iter(files.values()), None)
        if first is None:
            return
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"data-{first.resolve().parent.name}")
        artifact = self._wandb.Artifact(name, type="dataset")
        for role, path in files.items():
            artifact.add_reference(path.resolve().as_uri(), name=f"{role}/{path.name}")
        if self.mode == "online":
            self.run.use_artifact(artifact)
        else:  # W&B records an artifact's use only online: keep its checksums in the summary
            entries = artifact.manifest.entries.items()
            self.run.summary["data"] = {
                "artifact": name,
                "files": {path: {"uri": e.ref, "md5": e.digest} for path, e in entries},
            }

    def finish(self) -> None:
        if self.run is not None:
            where = _where(self.run, self.mode)
            self.run.finish()
            self.run = None
            log.info(where)


def log_evaluation(
    config: WandbConfig,
    training_run: dict | None,
    scores: dict[str, dict],
    rows: list[list[str]],
    folder: Path,
) -> None:
    """Write test scores, signatures and translations into the run that trained the model.

    That run is continued when it was online and W&B is online now; otherwise
    the scores go to a new ``evaluate`` run in the training run's group.
    """
    mode = resolve_mode(WandbConfig(mode=None))  # asked for on the command line: not the config's
    if mode == "disabled":
        log.info("W&B is disabled ($WANDB_MODE=disabled): the evaluation is not logged")
        return
    import wandb

    previous = training_run or {}
    same = previous.get("mode") == "online" and mode == "online"
    run = _init(
        wandb,
        mode,
        project=previous.get("project") or config.project,
        entity=previous.get("entity") or config.entity,
        dir=str(folder),
        **(
            {"id": previous["id"], "resume": "allow"}
            if same
            else {
                "id": new_run_id(),
                "group": previous.get("group") or previous.get("id"),
                "job_type": "evaluate",
                "name": f"{previous.get('name') or folder.name}-evaluate",
            }
        ),
    )
    summary = {f"test/{name}": entry["score"] for name, entry in scores.items()}
    summary.update({f"test/{name}_signature": entry["signature"] for name, entry in scores.items()})
    run.summary.update(summary)
    columns = ["source", "reference", "hypothesis"]
    run.log({"test/translations": wandb.Table(columns=columns, data=rows)})
    where = _where(run, mode)
    run.finish()
    log.info(where)
