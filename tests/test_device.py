"""Precision selection: auto follows the hardware, emulated bf16/fp16 is warned about."""

import logging

import pytest
import torch

from seq2seq import distributed

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(distributed, "native_bf16", lambda device: native)
    assert distributed.resolve_precision("auto", CPU) == expected


def test_emulated_bf16_is_kept_but_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(distributed, "native_bf16", lambda device: False)
    with caplog.at_level(logging.WARNING):
        assert distributed.resolve_precision("bf16", CPU) == "bf16"
    assert (
        "without AVX-512 BF16 or AMX" in caplog.text and "use precision auto or fp32" in caplog.text
    )


def test_native_bf16_and_fp32_are_not_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(distributed, "native_bf16", lambda device: True)
    with caplog.at_level(logging.WARNING):
        distributed.resolve_precision("bf16", CPU)
        distributed.resolve_precision("fp32", CPU)
    assert caplog.text == ""


def test_fp16_on_the_cpu_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        distributed.resolve_precision("fp16", CPU)
    assert "fp16 on the CPU" in caplog.text


def test_native_bf16_reads_the_cpu_flags():
    flags = open("/proc/cpuinfo").read()
    assert distributed.native_bf16(CPU) == (" avx512_bf16" in flags or " amx_bf16" in flags)
