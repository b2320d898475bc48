"""Training: ``train(config, output_dir)`` reads top to bottom.

batch -> forward (teacher forcing) -> loss -> backward -> clip -> step -> log
(``step.train_step``), validating every ``train.valid_every`` steps (loss,
perplexity, greedy BLEU) and keeping ``best.pt`` and ``last.pt``.
``resume=True`` continues from ``last.pt`` exactly: weights, optimizer,
schedule, step, RNG state and the position in the data (run.py). Under
``torchrun`` each rank trains on its share of every step's batches (see
``distributed.py``).
"""

from __future__ import annotations

import logging
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from seq2seq import distributed
from seq2seq.checkpoint import step_checkpoints
from seq2seq.config import Config
from seq2seq.console import TrainingBar
from seq2seq.data import batch_stream, worker_batch_stream
from seq2seq.run import (
    Run,
    TrainingError,
    build_run,
    check_output_dir,
    follow_init_from,
    remove_old_run,
    save_checkpoint,
)
from seq2seq.schedule import gold_probability, learning_rate
from seq2seq.step import train_step
from seq2seq.validate import attention_samples, validate

__all__ = ["Interrupted", "TrainingError", "train"]

log = logging.getLogger(__name__)

MAX_BAD_STEPS = 20  # non-finite losses before training gives up


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived; ``last.pt`` has been saved."""


class _StopAsked(Exception):
    """Ctrl-C or SIGTERM arrived; raised at the next step boundary."""


def train(
    config: Config, output_dir: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train a model; returns the path of the best checkpoint."""
    output_dir = Path(output_dir)
    device = distributed.init(config.train.device)
    if config.train.precision == "fp16" and device.type != "cuda":
        raise TrainingError("train.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")
    check_output_dir(output_dir, resume, overwrite)
    if overwrite and not resume and distributed.is_main():
        remove_old_run(output_dir)
    config = follow_init_from(config)
    finished = False
    try:
        with _log_file(output_dir):
            run = build_run(config, output_dir, resume, device)
            with _StopSignals() as signals:
                _train(run, signals)
        finished = True
    finally:
        distributed.shutdown(finished)
    return output_dir / "best.pt"


def _train(run: Run, signals: _StopSignals) -> None:
    """The loop, then a last validation; an interruption saves ``last.pt`` and says how to resume."""
    progress, cfg = run.progress, run.config.train
    resume_hint = (
        f"Resume with: seq2seq train --config {run.output_dir / 'config.yaml'} "
        f"--output-dir {run.output_dir} --resume"
    )
    try:
        _loop(run, signals)
        _finish(run)
    except _StopAsked:
        save_checkpoint(run, "last.pt", with_state=True)
        run.tracker.log_checkpoints(
            run.output_dir, progress.history, cfg.valid_metric, progress.step
        )
        raise Interrupted(
            f"interrupted at step {progress.step}; {run.output_dir / 'last.pt'} saved. {resume_hint}"
        ) from None
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped at once during step {progress.step + 1}; {run.output_dir / 'last.pt'} from "
            f"the last validation is unchanged. {resume_hint}"
        ) from None
    finally:
        run.tracker.finish()
    best = progress.best if progress.best is not None else float("nan")
    log.info(
        "done: %d steps, %.1f min, best validation %s %.2f",
        progress.step,
        progress.elapsed / 60,
        cfg.valid_metric,
        best,
    )


def _loop(run: Run, signals: _StopSignals) -> None:
    """Train until a limit, early stopping or a signal (raised as ``_StopAsked``)."""
    cfg, progress = run.config.train, run.progress
    world, rank = distributed.world_size(), distributed.rank()
    stream = _batches(run)
    meter = _Meter()
    clock = time.perf_counter()
    run.model.train()
    main = distributed.is_main()
    with TrainingBar(
        cfg, progress.step, progress.epoch, progress.elapsed, None if main else False
    ) as bar:
        while not _done(run, signals):
            # One step reads world x accumulate batches; this rank trains on its share.
            group = [next(stream) for _ in range(world * cfg.accumulate)]
            mine = [b for _, b in group[rank * cfg.accumulate : (rank + 1) * cfg.accumulate]]
            step_tokens = sum(batch.n_tokens for _, batch in group)  # all ranks' tokens
            lr = learning_rate(cfg, progress.step, progress.lr_scale, progress.elapsed)
            gold = gold_probability(cfg, progress.step)
            result = train_step(run.trainable, mine, step_tokens, lr, cfg, gold)
            progress.epoch, progress.batch_in_epoch = group[-1][0]  # where the data resumes
            if not result.applied:
                _count_bad_step(progress)
                continue
            progress.step += 1
            now = time.perf_counter()
            progress.elapsed, clock = progress.elapsed + now - clock, now
            meter.add(step_tokens, result.loss)
            speed = None
            if progress.step % cfg.log_every == 0:
                speed = _log_training(run, meter.take(now), lr, result.grad_norm)
            bar.update(progress.step, progress.epoch, progress.elapsed, speed)
            if progress.step % cfg.valid_every == 0:
                stop = validate_and_checkpoint(run)  # counts toward elapsed time, not tokens/s
                bar.score(progress.history[-1][cfg.valid_metric])
                meter.restart()
                if stop:
                    log.info(
                        "early stopping: no improvement in %d validations",
                        cfg.early_stopping_patience,
                    )
                    return


def _batches(run: Run):
    cfg, progress = run.config.train, run.progress
    start = (cfg.batch_tokens, cfg.seed, progress.epoch, progress.batch_in_epoch)
    if run.trainable.device.type == "cuda":  # pad in a worker process, copy from page-locked memory
        return worker_batch_stream(run.data, *start, pin_memory=True)
    return batch_stream(run.data, *start)


def _done(run: Run, signals: _StopSignals) -> bool:
    """Whether a limit is reached; a signal raises ``_StopAsked``. Rank 0 decides for all ranks.

    Every rank also takes rank 0's clock: the cosine over ``max_minutes`` reads
    it, and ranks with their own clocks would apply different learning rates.
    """
    cfg, progress = run.config.train, run.progress
    stop, progress.elapsed = distributed.broadcast((signals.asked is not None, progress.elapsed))
    if stop:
        raise _StopAsked
    return bool(
        (cfg.max_minutes and progress.elapsed >= 60 * cfg.max_minutes)
        or (cfg.max_steps and progress.step >= cfg.max_steps)
        or (cfg.max_epochs and progress.epoch >= cfg.max_epochs)
    )


def _count_bad_step(progress) -> None:
    progress.bad_steps += 1
    log.warning("non-finite loss or gradient at step %d: step skipped", progress.step)
    if progress.bad_steps >= MAX_BAD_STEPS:
        raise TrainingError(
            f"{progress.bad_steps} steps had a non-finite loss; lower train.lr, set train.clip_norm, or use fp32"
        )


class _Meter:
    """Tokens and loss since the last log line, for tokens/s and the mean loss."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.tokens, self.loss, self.steps, self.start = 0, 0.0, 0, time.perf_counter()

    def add(self, tokens: int, loss: float) -> None:
        self.tokens, self.loss, self.steps = self.tokens + tokens, self.loss + loss, self.steps + 1

    def take(self, now: float) -> tuple[float, float]:
        """(mean loss, tokens/s) since the last take; starts a new window."""
        values = self.loss / max(self.steps, 1), self.tokens / max(now - self.start, 1e-9)
        self.restart()
        return values


def _log_training(run: Run, window: tuple[float, float], lr: float, grad_norm: float) -> float:
    """The log line of the last ``log_every`` steps; returns their target tokens/s."""
    progress = run.progress
    mean_loss, speed = window
    log.info(
        "step %d | epoch %d | loss %.3f | lr %.2e | grad norm %.2f | %.0f tgt tok/s",
        progress.step,
        progress.epoch + 1,
        mean_loss,
        lr,
        grad_norm,
        speed,
    )
    metrics = {
        "loss": mean_loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": speed,
        "epoch": progress.epoch,
    }
    run.tracker.log({f"train/{k}": v for k, v in metrics.items()}, progress.step)
    return speed


def validate_and_checkpoint(run: Run) -> bool:
    """Validate on rank 0, share the scores, log, checkpoint; True when early stopping says stop."""
    cfg, progress, data = run.config.train, run.progress, run.data
    device, dtype = run.trainable.device, run.trainable.autocast_dtype
    result = None
    if distributed.is_main():
        result = validate(
            run.model, data, device, 4 * cfg.batch_tokens, cfg.valid_max_len_ratio, dtype
        )
    result = distributed.broadcast(result)
    improved, stop = progress.record_validation(cfg, result[cfg.valid_metric])
    entry = {k: result[k] for k in ("loss", "ppl", "bleu")}
    minutes = progress.elapsed / 60
    progress.history.append(
        {**entry, "step": progress.step, "epoch": progress.epoch, "minutes": minutes}
    )
    log.info(
        "validation at step %d (%.1f min): loss %.3f, ppl %.2f, BLEU %.2f%s",
        progress.step,
        minutes,
        result["loss"],
        result["ppl"],
        result["bleu"],
        " (best)" if improved else "",
    )
    count = min(cfg.num_samples, len(data.valid_src_lines))
    samples = [
        [data.valid_src_lines[i], data.valid_ref_lines[i], result["hypotheses"][i]]
        for i in range(count)
    ]
    for source, reference, hypothesis in samples:
        log.info("  src: %s\n  ref: %s\n  hyp: %s", source, reference, hypothesis)
    attention = []
    if run.tracker.active:
        attention = attention_samples(
            run.model, data, count, device, cfg.valid_max_len_ratio, dtype
        )
    run.tracker.log_validation(progress.history, cfg.valid_metric, samples, attention)
    _save_after_validation(run, improved)
    return stop


def _save_after_validation(run: Run, improved: bool) -> None:
    cfg = run.config.train
    if improved:
        save_checkpoint(run, "best.pt", with_state=False)
    if cfg.keep_checkpoints:  # the weights of the last K validations, for averaging
        save_checkpoint(run, f"step_{run.progress.step}.pt", with_state=False)
        kept = step_checkpoints(run.output_dir)
        for old in kept[: -cfg.keep_checkpoints] if distributed.is_main() else []:
            old.unlink()
    save_checkpoint(run, "last.pt", with_state=True)


def _finish(run: Run) -> None:
    """Check that all ranks agree, validate the final weights unless just done, log artifacts."""
    progress, world = run.progress, distributed.world_size()
    if world > 1:
        progress.rank_digests = distributed.gather(distributed.parameter_digest(run.model))
        if len(set(progress.rank_digests)) != 1:
            raise TrainingError("ranks ended with different weights: the distributed run is broken")
        log.info("parameters identical on all %d ranks", world)
    if not progress.history or progress.history[-1]["step"] != progress.step:
        validate_and_checkpoint(run)
    elif world > 1:
        save_checkpoint(run, "last.pt", with_state=True)  # records rank_digests
    metric = run.config.train.valid_metric
    run.tracker.log_checkpoints(run.output_dir, progress.history, metric, progress.step)


class _StopSignals:
    """Ctrl-C and SIGTERM only ask to stop: the loop stops at the next step boundary.

    There weights, optimizer, data position and RNG agree, so resuming is
    exact. A second signal stops at once (the last validation's ``last.pt``
    is then kept as it is).
    """

    def __init__(self):
        self.asked: str | None = None

    def __enter__(self) -> _StopSignals:
        self.previous = {
            s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = signal.Signals(signum).name
        log.warning("%s: stopping after this step (send it again to stop at once)", self.asked)


@contextmanager
def _log_file(output_dir: Path):
    """INFO and above into ``output_dir/train.log`` on rank 0; other ranks only warn."""
    package_log = logging.getLogger("seq2seq")
    if not distributed.is_main():
        package_log.setLevel(logging.WARNING)  # one rank speaks
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    file_log = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if package_log.level == logging.NOTSET:  # the log file gets INFO whatever the caller set
        package_log.setLevel(logging.INFO)
    package_log.addHandler(file_log)
    try:
        yield
    finally:
        package_log.removeHandler(file_log)
        file_log.close()
