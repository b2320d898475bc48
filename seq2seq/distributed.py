"""Data-parallel training across processes started by ``torchrun``.

Each process (rank) trains on a disjoint share of every step's batches;
DistributedDataParallel all-reduces the gradients (NCCL on CUDA, gloo on the
CPU). Rank 0 alone writes checkpoints, logs and the W&B run. With one process
(no ``torchrun``) every function here is a cheap no-op.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import torch
import torch.distributed as dist

from seq2seq.device import pick_device

log = logging.getLogger(__name__)


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


def shutdown(finished: bool) -> None:
    """Leave the process group; ``finished``: every rank got to the end, wait for the others first.

    Without the barrier the rank that ends first (never rank 0, which writes the
    checkpoints) tears down its connections while rank 0 still works, and gloo
    can abort rank 0 ("terminate called without an active exception"). After an
    error the other ranks may never arrive, so there is no barrier then.
    """
    if dist.is_initialized():
        if finished:
            dist.barrier()
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
