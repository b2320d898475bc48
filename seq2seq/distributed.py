"""Devices, precision, and data-parallel training across processes started by ``torchrun``.

Each process (rank) trains on a disjoint share of every step's batches;
DistributedDataParallel all-reduces the gradients (NCCL on CUDA, gloo on the
CPU). Rank 0 alone writes checkpoints, logs and the W&B run. With one process
(no ``torchrun``) every function here is a cheap no-op.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from seq2seq.errors import UserError

log = logging.getLogger(__name__)


class DeviceError(UserError, ValueError):
    """A device that does not exist on this machine."""


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init(device_name: str) -> torch.device:
    """Join the process group if started by torchrun; returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")
    return pick_device(device_name)


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when there is a GPU, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name}: no CUDA GPU is visible here; use auto or cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(
            f"device {name}: only {torch.cuda.device_count()} GPU(s) are visible (cuda:0 ...)"
        )
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def all_sum(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor)


def parameter_digest(model: torch.nn.Module) -> str:
    """A hash of every parameter's bytes: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls in hardware (AVX-512 BF16 or AMX on a CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware computes it natively, else fp32.

    An explicit bf16 or fp16 that the hardware only emulates is kept (the user
    asked for it) but warned about: on an AVX2-only CPU bf16 matmuls run about
    100x slower than fp32.
    """
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        missing = (
            "bf16 support (compute capability 8.0+)"
            if device.type == "cuda"
            else "AVX-512 BF16 or AMX"
        )
        log.warning(
            "precision bf16 on a %s without %s: bf16 is emulated and can be 100x slower than "
            "fp32; use precision auto or fp32",
            "GPU" if device.type == "cuda" else "CPU",
            missing,
        )
    if precision == "fp16" and device.type != "cuda":
        log.warning(
            "precision fp16 on the CPU: no CPU computes fp16 matmuls natively, expect it to be "
            "far slower than fp32; use precision auto or fp32"
        )
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
