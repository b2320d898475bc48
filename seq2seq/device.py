"""Which device to run on and in which precision: one place for both choices.

``pick_device("auto")`` is CUDA when there is a GPU, else the CPU;
``resolve_precision("auto", device)`` is bf16 where the hardware computes it
natively, else fp32. Training, translation, serving and evaluation all ask here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from seq2seq.errors import UserError

log = logging.getLogger(__name__)

# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) that include bf16 dot products: AVX512_CORE_BF16,
# AVX512_CORE_FP16, AVX512_CORE_AMX(_FP16), AVX10_1_512(_AMX(_FP16)) and ALL.
BF16_ISAS = ("BF16", "FP16", "AMX", "AVX10", "ALL")


class DeviceError(UserError, ValueError):
    """A device that does not exist on this machine."""


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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls in hardware (AVX-512 BF16 or AMX on a CPU),
    and oneDNN may use them: ``ONEDNN_MAX_CPU_ISA`` below AVX512_CORE_BF16 (AVX2, say, to
    stand in for an AVX2-only CPU) leaves bf16 emulated, and oneDNN then has no bf16 LSTM."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if not any(name in cap for name in BF16_ISAS):
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
