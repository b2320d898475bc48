"""Training: ``train(config, output_dir)`` reads top to bottom.

batch -> forward (teacher forcing) -> loss -> backward -> clip -> step -> log,
validating every ``train.valid_every`` steps (loss, perplexity, greedy BLEU),
keeping ``best.pt`` and ``last.pt``. ``resume=True`` continues from
``last.pt`` exactly: weights, optimizer, schedule, step, RNG state and the
position in the data.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from seq2seq import checkpoint
from seq2seq import config as config_module
from seq2seq.config import Config, TrainConfig
from seq2seq.data import Batch, TrainingData, build_training_data, collate, epoch_batches
from seq2seq.metrics import bleu
from seq2seq.model import Seq2Seq
from seq2seq.search import decode_corpus
from seq2seq.tracking import Tracker
from seq2seq.vocab import PAD_ID

log = logging.getLogger(__name__)

MAX_BAD_STEPS = 20  # consecutive non-finite losses before training gives up


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived; ``last.pt`` has been saved."""


@dataclass
class Progress:
    """Everything besides weights and optimizer that an exact resume needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # next batch to read in this epoch
    elapsed: float = 0.0  # seconds of training so far
    lr_scale: float = 1.0  # reduce-on-plateau multiplier
    best: float | None = None  # best validation score so far
    validations_since_best: int = 0
    bad_steps: int = 0  # non-finite losses skipped, in total
    wandb_run_id: str | None = None
    history: list[dict] = field(default_factory=list)  # one entry per validation


def learning_rate(config: TrainConfig, step: int, lr_scale: float) -> float:
    """The learning rate for optimizer step ``step`` (0-based)."""
    warmup = config.warmup_steps
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if config.lr_schedule == "inverse_sqrt":
        factor *= math.sqrt(max(warmup, 1) / max(step + 1, warmup, 1))
    elif config.lr_schedule == "cosine" and step >= warmup:
        progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))
        low = config.min_lr / config.lr
        factor = low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return max(config.lr * factor * lr_scale, min(config.min_lr, config.lr))


def higher_is_better(metric: str) -> bool:
    return metric == "bleu"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"train.device is {name} but CUDA is not available; use auto or cpu")
    return device


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def batch_stream(
    data: TrainingData, config: TrainConfig, progress: Progress
) -> Iterator[tuple[int, int, Batch]]:
    """Endless training batches from the saved position on.

    Yields (epoch, batch index) of the position after the batch, then the batch.
    """
    epoch, start = progress.epoch, progress.batch_in_epoch
    while True:
        batches = epoch_batches(
            data.train_src,
            data.train_tgt,
            data.train_indices,
            config.batch_tokens,
            config.seed,
            epoch,
        )
        for index in range(start, len(batches)):
            batch = collate(data.train_src, data.train_tgt, batches[index])
            if index + 1 < len(batches):
                yield epoch, index + 1, batch
            else:
                yield epoch + 1, 0, batch
        epoch, start = epoch + 1, 0


def token_loss_sum(
    logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float
) -> torch.Tensor:
    """Summed cross-entropy over real target tokens; logits (B, T, V), tgt_out (B, T)."""
    return F.cross_entropy(
        logits.float().flatten(0, 1),  # (B*T, V)
        tgt_out.flatten(),  # (B*T,)
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


def forward_logits(model: Seq2Seq, batch: Batch, teacher_forcing_ratio: float) -> torch.Tensor:
    """Logits (B, T, V); with ratio < 1 (scheduled sampling) some inputs are the model's own guesses."""
    if teacher_forcing_ratio >= 1.0:
        return model(batch.src, batch.src_lengths, batch.tgt_in)
    encoded = model.encode(batch.src, batch.src_lengths)
    state = model.decoder.init_state(encoded)
    prev = batch.tgt_in[:, 0]  # (B,) BOS
    steps = []
    for t in range(batch.tgt_in.size(1)):
        output, state, _ = model.decoder.step(prev, state, encoded)
        logits = model.decoder.logits(output)  # (B, V)
        steps.append(logits)
        if t + 1 < batch.tgt_in.size(1):
            use_gold = torch.rand(prev.size(0), device=prev.device) < teacher_forcing_ratio
            prev = torch.where(use_gold, batch.tgt_in[:, t + 1], logits.argmax(-1))
    return torch.stack(steps, dim=1)  # (B, T, V)


@torch.no_grad()
def validate(model: Seq2Seq, data: TrainingData, config: TrainConfig, device: torch.device) -> dict:
    """Validation loss and perplexity (teacher forcing, no smoothing) and greedy BLEU."""
    model.eval()
    dtype = autocast_dtype(config.precision)
    pairs = [
        i for i, (s, t) in enumerate(zip(data.valid_src, data.valid_tgt, strict=True)) if s and t
    ]
    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(pairs), 64):
        batch = collate(data.valid_src, data.valid_tgt, pairs[start : start + 64]).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        total_loss += float(token_loss_sum(logits, batch.tgt_out, 0.0))
        total_tokens += batch.n_tokens
    hypotheses = decode_corpus(
        model, data.valid_src, 4 * config.batch_tokens, device, config.valid_max_len_ratio, dtype
    )
    texts = [data.tgt_tokenizer.decode(data.tgt_vocab.decode(h.tokens)) for h in hypotheses]
    model.train()
    loss = total_loss / max(total_tokens, 1)
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 100.0)),
        "bleu": bleu(texts, data.valid_ref_lines).score,
        "hypotheses": texts,
    }


def _check_output_dir(output_dir: Path, config: Config, resume: bool, overwrite: bool) -> None:
    last = output_dir / "last.pt"
    if resume:
        if not last.exists():
            raise TrainingError(f"--resume: {last} does not exist; start without --resume")
        return
    if last.exists() and not overwrite:
        raise TrainingError(
            f"{output_dir} already holds a training run ({last.name}); "
            "add --resume to continue it, --overwrite to replace it, or choose another --output-dir"
        )


def _restore(payload: dict, config: Config, output_dir: Path) -> tuple[Progress, tuple]:
    stored = config_module.from_dict(payload["config"], where=f"{output_dir / 'last.pt'}")
    for section in ("data", "model"):
        if getattr(stored, section) != getattr(config, section):
            raise TrainingError(
                f"--resume: the {section} section of the config differs from the run in {output_dir}; "
                "resume with the same data and model settings or start a new --output-dir"
            )
    loaded = checkpoint.load_model(output_dir / "last.pt", payload)
    stored_parts = (loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.src_vocab, loaded.tgt_vocab)
    return Progress(**payload["progress"]), stored_parts


def train(
    config: Config, output_dir: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train a model; returns the path of the best checkpoint."""
    output_dir = Path(output_dir)
    _check_output_dir(output_dir, config, resume, overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    file_log = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package_log = logging.getLogger("seq2seq")
    if (
        package_log.level == logging.NOTSET
    ):  # the log file gets INFO even when the caller set nothing
        package_log.setLevel(logging.INFO)
    package_log.addHandler(file_log)
    try:
        return _train(config, output_dir, resume)
    finally:
        logging.getLogger("seq2seq").removeHandler(file_log)
        file_log.close()


def _train(config: Config, output_dir: Path, resume: bool) -> Path:
    cfg = config.train
    device = pick_device(cfg.device)
    torch.set_num_threads(cfg.num_threads or os.cpu_count() or 1)
    dtype = autocast_dtype(cfg.precision)
    if cfg.precision == "fp16" and device.type != "cuda":
        raise TrainingError("train.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")

    payload = checkpoint.load(output_dir / "last.pt") if resume else None
    progress, stored = _restore(payload, config, output_dir) if payload else (Progress(), None)
    data = build_training_data(config.data, stored)
    (output_dir / "config.yaml").write_text(config_module.dump(config), encoding="utf-8")

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab)).to(device)
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    if payload:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"]["cpu"])
        if device.type == "cuda" and payload["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"], device)
        log.info("resumed from %s at step %d", output_dir / "last.pt", progress.step)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %.2fM parameters on %s, precision %s", n_params / 1e6, device, cfg.precision)

    tracker = Tracker(
        config.wandb, config_module.to_dict(config), output_dir, progress.wandb_run_id
    )
    progress.wandb_run_id = tracker.run_id
    better = higher_is_better(cfg.valid_metric)

    def save(name: str, with_state: bool) -> None:
        parts = checkpoint.model_payload(
            config, model, data.src_vocab, data.tgt_vocab, data.src_tokenizer, data.tgt_tokenizer
        )
        if with_state:
            parts["optimizer"] = optimizer.state_dict()
            parts["progress"] = asdict(progress)
            parts["rng"] = {
                "cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            }
        checkpoint.save(output_dir / name, parts)

    def run_validation() -> bool:
        """Validate, checkpoint, adjust the schedule; True when early stopping says stop."""
        result = validate(model, data, cfg, device)
        score = result[cfg.valid_metric]
        improved = progress.best is None or (
            score > progress.best if better else score < progress.best
        )
        if improved:
            progress.best, progress.validations_since_best = score, 0
        else:
            progress.validations_since_best += 1
            if (
                cfg.lr_schedule == "plateau"
                and progress.validations_since_best % max(cfg.lr_patience, 1) == 0
            ):
                progress.lr_scale *= cfg.lr_decay_factor
        entry = {k: result[k] for k in ("loss", "ppl", "bleu")}
        entry.update(step=progress.step, epoch=progress.epoch, minutes=progress.elapsed / 60)
        progress.history.append(entry)
        log.info(
            "validation at step %d (%.1f min): loss %.3f, ppl %.2f, BLEU %.2f%s",
            progress.step,
            progress.elapsed / 60,
            result["loss"],
            result["ppl"],
            result["bleu"],
            " (best)" if improved else "",
        )
        samples = [
            [data.valid_src_lines[i], data.valid_ref_lines[i], result["hypotheses"][i]]
            for i in range(min(cfg.num_samples, len(data.valid_src_lines)))
        ]
        for source, reference, hypothesis in samples:
            log.info("  src: %s\n  ref: %s\n  hyp: %s", source, reference, hypothesis)
        tracker.log({f"valid/{k}": result[k] for k in ("loss", "ppl", "bleu")}, progress.step)
        tracker.log_table(
            "valid/samples", ["source", "reference", "hypothesis"], samples, progress.step
        )
        if improved:
            save("best.pt", with_state=False)
        save("last.pt", with_state=True)
        return (
            cfg.early_stopping_patience > 0
            and progress.validations_since_best >= cfg.early_stopping_patience
        )

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    stream = batch_stream(data, cfg, progress)
    bar = tqdm(
        total=cfg.max_steps or None,
        initial=progress.step,
        unit="step",
        dynamic_ncols=True,
        disable=None,
    )
    window_tokens, window_loss, window_start = 0, 0.0, time.perf_counter()
    clock = time.perf_counter()
    model.train()
    try:
        while True:
            if cfg.max_steps and progress.step >= cfg.max_steps:
                break
            if cfg.max_epochs and progress.epoch >= cfg.max_epochs:
                break
            if cfg.max_minutes and progress.elapsed >= 60 * cfg.max_minutes:
                break
            group = [next(stream) for _ in range(cfg.accumulate)]
            position = group[-1][:2]  # where the data resumes once this step is done
            step_tokens = sum(batch.n_tokens for _, _, batch in group)
            lr = learning_rate(cfg, progress.step, progress.lr_scale)
            for group_param in optimizer.param_groups:
                group_param["lr"] = lr
            step_loss = torch.zeros((), device=device)
            for _, _, batch in group:
                batch = batch.to(device)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = forward_logits(model, batch, cfg.teacher_forcing_ratio)  # (B, T, V)
                loss = token_loss_sum(logits, batch.tgt_out, cfg.label_smoothing) / step_tokens
                scaler.scale(loss).backward()
                step_loss += loss.detach()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), cfg.clip_norm or float("inf")
            )
            if not torch.isfinite(grad_norm) and cfg.precision != "fp16":
                # A NaN/inf step would poison the weights: skip it, and give up if it keeps happening.
                optimizer.zero_grad(set_to_none=True)
                progress.epoch, progress.batch_in_epoch = position
                progress.bad_steps += 1
                log.warning("non-finite loss or gradient at step %d: step skipped", progress.step)
                if progress.bad_steps >= MAX_BAD_STEPS:
                    raise TrainingError(
                        f"{progress.bad_steps} steps had a non-finite loss; lower train.lr, "
                        "set train.clip_norm, or use fp32"
                    )
                continue
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            progress.epoch, progress.batch_in_epoch = position
            now = time.perf_counter()
            progress.elapsed += now - clock
            clock = now
            window_tokens += step_tokens
            window_loss += float(step_loss)
            bar.update(1)
            if progress.step % cfg.log_every == 0:
                speed = window_tokens / max(now - window_start, 1e-9)
                mean_loss = window_loss / cfg.log_every
                bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{speed:.0f}", refresh=False)
                log.info(
                    "step %d | epoch %d | loss %.3f | lr %.2e | grad norm %.2f | %.0f tgt tok/s",
                    progress.step,
                    progress.epoch + 1,
                    mean_loss,
                    lr,
                    float(grad_norm),
                    speed,
                )
                tracker.log(
                    {
                        "train/loss": mean_loss,
                        "train/lr": lr,
                        "train/grad_norm": float(grad_norm),
                        "train/tokens_per_s": speed,
                        "train/epoch": progress.epoch,
                    },
                    progress.step,
                )
                window_tokens, window_loss, window_start = 0, 0.0, now
            if progress.step % cfg.valid_every == 0:
                stop = run_validation()  # counts toward elapsed time, not toward tokens/s
                window_start = time.perf_counter()
                if stop:
                    log.info(
                        "early stopping: no improvement in %d validations",
                        cfg.early_stopping_patience,
                    )
                    break
        if not progress.history or progress.history[-1]["step"] != progress.step:
            run_validation()
    except KeyboardInterrupt:
        save("last.pt", with_state=True)
        raise Interrupted(
            f"interrupted at step {progress.step}; {output_dir / 'last.pt'} saved. Resume with: "
            f"seq2seq train --config {output_dir / 'config.yaml'} --output-dir {output_dir} --resume"
        ) from None
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous_handler)
        tracker.finish()
    best = progress.best if progress.best is not None else float("nan")
    log.info(
        "done: %d steps, %.1f min, best validation %s %.2f",
        progress.step,
        progress.elapsed / 60,
        cfg.valid_metric,
        best,
    )
    return output_dir / "best.pt"
