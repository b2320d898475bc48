"""Training: ``train(config, output_dir)`` reads top to bottom.

batch -> forward (teacher forcing) -> loss -> backward -> clip -> step -> log,
validating every ``train.valid_every`` steps (loss, perplexity, greedy BLEU)
and keeping ``best.pt`` and ``last.pt``. ``resume=True`` continues from
``last.pt`` exactly: weights, optimizer, schedule, step, RNG state and the
position in the data. Under ``torchrun`` each rank trains on its share of
every step's batches (see ``distributed.py``).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from seq2seq import checkpoint, distributed
from seq2seq import config as config_module
from seq2seq.config import Config
from seq2seq.data import (
    TrainingData,
    batch_stream,
    build_training_data,
    corpus_files,
    worker_batch_stream,
)
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.schedule import Progress, learning_rate, record_validation
from seq2seq.tokenize import from_data
from seq2seq.tracking import Tracker
from seq2seq.validate import attention_samples, token_loss_sum, validate
from seq2seq.vocab import Vocab

log = logging.getLogger(__name__)

MAX_BAD_STEPS = 20  # non-finite losses before training gives up


class TrainingError(UserError, RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


class _StopAsked(Exception):
    """Ctrl-C or SIGTERM arrived; raised at the next step boundary."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived; ``last.pt`` has been saved."""


class TeacherForcing(nn.Module):
    """The training forward pass as one module, so DistributedDataParallel can wrap it.

    With ``ratio`` < 1 (scheduled sampling), each input token is the gold one
    with that probability and otherwise the model's own previous guess.
    """

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src, src_lengths, tgt_in, ratio: float) -> torch.Tensor:
        if ratio >= 1.0:
            return self.model(src, src_lengths, tgt_in)  # (B, T, V)
        decoder = self.model.decoder
        encoded = self.model.encode(src, src_lengths)
        state = decoder.init_state(encoded)
        prev, steps = tgt_in[:, 0], []  # BOS
        for t in range(tgt_in.size(1)):
            output, state, _ = decoder.step(prev, state, encoded)
            steps.append(decoder.logits(output))  # (B, V)
            if t + 1 < tgt_in.size(1):
                gold = torch.rand(prev.size(0), device=prev.device) < ratio
                prev = torch.where(gold, tgt_in[:, t + 1], steps[-1].argmax(-1))
        return torch.stack(steps, dim=1)  # (B, T, V)


def _check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    last = output_dir / "last.pt"
    if resume and not last.exists():
        raise TrainingError(f"--resume: {last} does not exist; start without --resume")
    if not resume and last.exists() and not overwrite:
        raise TrainingError(
            f"{output_dir} already holds a training run ({last.name}); "
            "add --resume to continue it, --overwrite to replace it, or choose another --output-dir"
        )


def _load_data(config: Config, payload: dict | None, output_dir: Path) -> TrainingData:
    """Tokenizers and vocabularies: from ``last.pt`` when resuming, else built (by rank 0 only)."""
    if payload is not None:
        saved = config_module.from_dict(payload["config"], where=str(output_dir / "last.pt"))
        for section in ("data", "model"):
            if getattr(saved, section) != getattr(config, section):
                raise TrainingError(
                    f"--resume: the {section} section of the config differs from the run in "
                    f"{output_dir}; resume with the same data and model settings or start a new --output-dir"
                )
        parts = [payload[k] for k in ("src_tokenizer", "tgt_tokenizer", "src_vocab", "tgt_vocab")]
    elif distributed.world_size() == 1:
        return build_training_data(config.data)
    else:  # SentencePiece training is not bit-reproducible across processes: rank 0 shares its own
        data = build_training_data(config.data) if distributed.is_main() else None
        parts = distributed.broadcast(
            [
                data.src_tokenizer.to_data(),
                data.tgt_tokenizer.to_data(),
                data.src_vocab.tokens,
                data.tgt_vocab.tokens,
            ]
            if data is not None
            else None
        )
        if data is not None:
            return data
    src_tok, tgt_tok, src_vocab, tgt_vocab = parts
    stored = (from_data(src_tok), from_data(tgt_tok), Vocab(src_vocab), Vocab(tgt_vocab))
    return build_training_data(config.data, stored)


def train(
    config: Config, output_dir: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train a model; returns the path of the best checkpoint."""
    output_dir = Path(output_dir)
    device = distributed.init(config.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"train.device is {config.train.device} but CUDA is not available")
    if config.train.precision == "fp16" and device.type != "cuda":
        raise TrainingError("train.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")
    _check_output_dir(output_dir, resume, overwrite)
    package_log = logging.getLogger("seq2seq")
    file_log = None
    if distributed.is_main():
        output_dir.mkdir(parents=True, exist_ok=True)
        file_log = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
        file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        if package_log.level == logging.NOTSET:  # the log file gets INFO whatever the caller set
            package_log.setLevel(logging.INFO)
        package_log.addHandler(file_log)
    else:
        package_log.setLevel(logging.WARNING)  # one rank speaks
    try:
        return _train(config, output_dir, resume, device)
    finally:
        if file_log is not None:
            package_log.removeHandler(file_log)
            file_log.close()
        distributed.shutdown()


def _train(config: Config, output_dir: Path, resume: bool, device: torch.device) -> Path:
    cfg = config.train
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // world))
    precision = distributed.resolve_precision(cfg.precision, device)
    dtype = distributed.autocast_dtype(precision)
    payload = checkpoint.load(output_dir / "last.pt") if resume else None
    progress = Progress(**payload["progress"]) if payload else Progress()
    data = _load_data(config, payload, output_dir)
    if main:
        (output_dir / "config.yaml").write_text(config_module.dump(config), encoding="utf-8")

    torch.manual_seed(cfg.seed)
    model = Seq2Seq.from_config(config.model, len(data.src_vocab), len(data.tgt_vocab)).to(device)
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    torch.manual_seed(cfg.seed + rank)  # dropout differs across ranks, as it would across batches
    if payload:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"]["cpu"][rank])
        if device.type == "cuda" and payload["rng"]["cuda"][rank] is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"][rank], device)
        log.info("resumed from %s at step %d", output_dir / "last.pt", progress.step)
    forward = TeacherForcing(model)
    if world > 1:
        forward = DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model: %.2fM parameters on %s x %d, precision %s",
        n_params / 1e6,
        device,
        world,
        precision,
    )

    previous_run = payload.get("wandb") if payload else None
    tracker = Tracker(
        config.wandb, config_module.to_dict(config), output_dir, previous_run, enabled=main
    )
    progress.wandb_run_id = tracker.run_id
    setup = {
        "parameters": n_params,
        "src_vocab_size": len(data.src_vocab),
        "tgt_vocab_size": len(data.tgt_vocab),
        "train_pairs": len(data.train_indices),
        "device": str(device),
        "precision": precision,
        "world_size": world,
    }
    tracker.describe(setup, corpus_files(config.data) if tracker.active else {})

    def save(name: str, with_state: bool) -> None:
        rng_states = distributed.gather(
            (
                torch.get_rng_state(),
                torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            )
        )  # every rank takes part; rank 0 writes
        if not main:
            return
        parts = checkpoint.model_payload(
            config, model, data.src_vocab, data.tgt_vocab, data.src_tokenizer, data.tgt_tokenizer
        )
        if with_state:
            parts["optimizer"] = optimizer.state_dict()
            parts["progress"] = asdict(progress)
            parts["rng"] = {"cpu": [s[0] for s in rng_states], "cuda": [s[1] for s in rng_states]}
        if tracker.identity:  # --resume and `evaluate --wandb` find the run through this
            parts["wandb"] = tracker.identity
        checkpoint.save(output_dir / name, parts)

    def run_validation() -> bool:
        """Validate on rank 0, share the scores, checkpoint; True when early stopping says stop."""
        result = None
        if main:
            result = validate(
                model, data, device, 4 * cfg.batch_tokens, cfg.valid_max_len_ratio, dtype
            )
        result = distributed.broadcast(result)
        improved, stop = record_validation(progress, cfg, result[cfg.valid_metric])
        entry = {k: result[k] for k in ("loss", "ppl", "bleu")}
        progress.history.append(
            {
                **entry,
                "step": progress.step,
                "epoch": progress.epoch,
                "minutes": progress.elapsed / 60,
            }
        )
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
        attention = []
        if tracker.active:
            attention = attention_samples(
                model, data, cfg.num_samples, device, cfg.valid_max_len_ratio, dtype
            )
        tracker.log_validation(progress.history, cfg.valid_metric, samples, attention)
        if improved:
            save("best.pt", with_state=False)
        if cfg.keep_checkpoints:
            save(f"step_{progress.step}.pt", with_state=False)
            kept = sorted(output_dir.glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
            for old in kept[: -cfg.keep_checkpoints] if main else []:
                old.unlink()
        save("last.pt", with_state=True)
        return stop

    # Ctrl-C / SIGTERM only ask to stop: the loop stops at the next step boundary, where
    # weights, optimizer, data position and RNG agree, so resuming is exact. A second
    # signal stops at once (the last validation's last.pt is then kept as it is).
    stop_asked: list[str] = []

    def on_signal(signum, frame):
        if stop_asked:
            raise KeyboardInterrupt
        stop_asked.append(signal.Signals(signum).name)
        log.warning("%s: stopping after this step (send it again to stop at once)", stop_asked[0])

    previous_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stream_start = (cfg.batch_tokens, cfg.seed, progress.epoch, progress.batch_in_epoch)
    if device.type == "cuda":  # pad in a worker process, copy from page-locked memory
        stream = worker_batch_stream(data, *stream_start, pin_memory=True)
    else:
        stream = batch_stream(data, *stream_start)
    bar = tqdm(
        total=cfg.max_steps or None,
        initial=progress.step,
        unit="step",
        dynamic_ncols=True,
        disable=None if main else True,
    )
    window_tokens, window_loss, window_start = 0, 0.0, time.perf_counter()
    clock = time.perf_counter()
    model.train()
    try:
        while True:
            out_of_time = cfg.max_minutes and progress.elapsed >= 60 * cfg.max_minutes
            # Rank 0's clock and signals decide for all ranks.
            stop, out_of_time = distributed.broadcast((bool(stop_asked), bool(out_of_time)))
            if stop:
                raise _StopAsked
            if out_of_time:
                break
            if (cfg.max_steps and progress.step >= cfg.max_steps) or (
                cfg.max_epochs and progress.epoch >= cfg.max_epochs
            ):
                break
            # One step reads world x accumulate batches; this rank trains on its share.
            group = [next(stream) for _ in range(world * cfg.accumulate)]
            position = group[-1][0]  # where the data resumes once this step is done
            step_tokens = sum(batch.n_tokens for _, batch in group)  # all ranks' tokens
            mine = [
                batch for _, batch in group[rank * cfg.accumulate : (rank + 1) * cfg.accumulate]
            ]
            lr = learning_rate(cfg, progress.step, progress.lr_scale)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            step_loss = torch.zeros((), device=device)
            for i, batch in enumerate(mine):
                batch = batch.to(device)
                last = i + 1 == len(mine)
                sync = forward.no_sync() if world > 1 and not last else nullcontext()
                with sync:
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        logits = forward(
                            batch.src, batch.src_lengths, batch.tgt_in, cfg.teacher_forcing_ratio
                        )
                    # DDP averages gradients over ranks; x world makes the sum over all tokens / all tokens.
                    loss = (
                        token_loss_sum(logits, batch.tgt_out, cfg.label_smoothing)
                        * world
                        / step_tokens
                    )
                    scaler.scale(loss).backward()
                step_loss += loss.detach() / world
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), cfg.clip_norm or float("inf")
            )
            # The one host sync per step (fp16's GradScaler adds its own inf check).
            step_loss, grad_norm = torch.stack([step_loss, grad_norm.float()]).tolist()
            step_loss = distributed.all_sum(step_loss, device)
            progress.epoch, progress.batch_in_epoch = position
            if not math.isfinite(grad_norm) and precision != "fp16":
                # A NaN/inf step would poison the weights: skip it, and give up if it keeps happening.
                optimizer.zero_grad(set_to_none=True)
                progress.bad_steps += 1
                log.warning("non-finite loss or gradient at step %d: step skipped", progress.step)
                if progress.bad_steps >= MAX_BAD_STEPS:
                    raise TrainingError(
                        f"{progress.bad_steps} steps had a non-finite loss; lower train.lr, set train.clip_norm, or use fp32"
                    )
                continue
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            now = time.perf_counter()
            progress.elapsed, clock = progress.elapsed + now - clock, now
            window_tokens += step_tokens
            window_loss += step_loss
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
                tracker.log({f"train/{k}": v for k, v in metrics.items()}, progress.step)
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
        if world > 1:
            progress.rank_digests = distributed.gather(distributed.parameter_digest(model))
            if len(set(progress.rank_digests)) != 1:
                raise TrainingError(
                    "ranks ended with different weights: the distributed run is broken"
                )
            log.info("parameters identical on all %d ranks", world)
        if not progress.history or progress.history[-1]["step"] != progress.step:
            run_validation()
        elif world > 1:
            save("last.pt", with_state=True)  # records rank_digests
        tracker.log_checkpoints(output_dir, progress.history, cfg.valid_metric, progress.step)
    except _StopAsked:
        save("last.pt", with_state=True)
        tracker.log_checkpoints(output_dir, progress.history, cfg.valid_metric, progress.step)
        raise Interrupted(
            f"interrupted at step {progress.step}; {output_dir / 'last.pt'} saved. Resume with: "
            f"seq2seq train --config {output_dir / 'config.yaml'} --output-dir {output_dir} --resume"
        ) from None
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped at once during step {progress.step + 1}; {output_dir / 'last.pt'} from the "
            "last validation is unchanged. Resume with: "
            f"seq2seq train --config {output_dir / 'config.yaml'} --output-dir {output_dir} --resume"
        ) from None
    finally:
        bar.close()
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
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
