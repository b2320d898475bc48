"""CUDA: batches padded by a worker arrive pinned; training runs and resumes in each precision.

Skipped without a GPU (`scripts/gpu_check.sh` runs these and more on a CUDA machine).
"""

import dataclasses

import pytest
import torch

from seq2seq import checkpoint
from seq2seq.data import build_training_data, worker_batch_stream
from seq2seq.train import train

from .conftest import toy_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_worker_batches_arrive_in_pinned_memory():
    data = build_training_data(toy_config().data)
    _, batch = next(worker_batch_stream(data, 300, 1, 0, 0, pin_memory=True))
    assert batch.src.is_pinned() and batch.tgt_in.is_pinned() and batch.tgt_out.is_pinned()
    assert not batch.src_lengths.is_pinned()  # pack_padded_sequence reads it on the CPU


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_runs_and_resumes_on_cuda(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    config = toy_config(max_steps=30, valid_every=15, device="cuda", precision=precision)
    train(config, tmp_path / "run")
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=45))
    train(longer, tmp_path / "run", resume=True)
    progress = checkpoint.load(tmp_path / "run" / "last.pt")["progress"]
    assert progress["step"] == 45 and progress["bad_steps"] == 0
    assert [e["step"] for e in progress["history"]] == [15, 30, 45]
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in progress["history"])


@pytest.mark.slow
def test_toy_task_is_learned_on_cuda(tmp_path):
    from .test_train import exact_match

    best = train(toy_config(device="cuda"), tmp_path / "run")
    assert exact_match(best) >= 0.95
