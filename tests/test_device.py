"""Precision selection: auto follows the hardware, emulated bf16/fp16 is warned about."""

import logging

import pytest
import torch

from seq2seq import device

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(device, "native_bf16", lambda _: native)
    assert device.resolve_precision("auto", CPU) == expected


def test_emulated_bf16_is_kept_but_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(device, "native_bf16", lambda _: False)
    with caplog.at_level(logging.WARNING):
        assert device.resolve_precision("bf16", CPU) == "bf16"
    assert (
        "without AVX-512 BF16 or AMX" in caplog.text and "use precision auto or fp32" in caplog.text
    )


def test_native_bf16_and_fp32_are_not_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(device, "native_bf16", lambda _: True)
    with caplog.at_level(logging.WARNING):
        device.resolve_precision("bf16", CPU)
        device.resolve_precision("fp32", CPU)
    assert caplog.text == ""


def test_fp16_on_the_cpu_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        device.resolve_precision("fp16", CPU)
    assert "fp16 on the CPU" in caplog.text


def test_native_bf16_reads_the_cpu_flags():
    flags = open("/proc/cpuinfo").read()
    assert device.native_bf16(CPU) == (" avx512_bf16" in flags or " amx_bf16" in flags)


@pytest.mark.parametrize(
    "cap, native",
    [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_VNNI", False),
     ("AVX512_CORE_BF16", True), ("AVX512_CORE_AMX", True), ("ALL", True), (None, True)],
)  # fmt: skip
def test_a_onednn_cap_below_bf16_makes_bf16_emulated(monkeypatch, tmp_path, cap, native):
    """The CI's second pass caps oneDNN at AVX2 on an AVX-512 BF16 CPU: auto must be fp32
    there, or the bf16 LSTM has no oneDNN primitive (seen on an AMD EPYC, family 26)."""
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    real = device.Path
    monkeypatch.setattr(device, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real(p))
    assert device.native_bf16(CPU) is native
