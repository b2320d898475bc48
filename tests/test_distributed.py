"""torchrun with two CPU processes (gloo) equals one process with the same global batch."""

import subprocess
import sys

import pytest
import torch

from seq2seq import checkpoint

from .conftest import ROOT

pytestmark = pytest.mark.slow  # every test starts torchrun processes that train

SETTINGS = [
    "--set",
    "train.max_steps=6",
    "--set",
    "train.valid_every=3",
    "--set",
    "train.batch_tokens=300",
    "--set",
    "model.dropout=0.0",
    "--set",
    "train.num_threads=1",
]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run(*command: str) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def train_command(out, *extra) -> list[str]:
    return [
        "-m",
        "seq2seq",
        "-q",
        "train",
        "--config",
        "configs/toy.yaml",
        "--output-dir",
        str(out),
        *SETTINGS,
        *extra,
    ]


@pytest.mark.numerics
def test_two_ranks_equal_one_process_with_the_same_global_batch(tmp_path):
    # Plain SGD: the weights then differ by lr x the gradients' rounding (all-reduce and
    # accumulation sum in other orders). Adam would turn the rounding of a gradient near 0
    # into a difference of about lr in a weight (its update is about lr x sign(g)).
    sgd = ["--set", "train.optimizer=sgd", "--set", "train.lr=0.5"]
    run(*TORCHRUN, *train_command(tmp_path / "ddp", *sgd))
    run(sys.executable, *train_command(tmp_path / "single", "--set", "train.accumulate=2", *sgd))
    a = checkpoint.load(tmp_path / "ddp" / "last.pt")
    b = checkpoint.load(tmp_path / "single" / "last.pt")
    digests = a["progress"]["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold the same weights
    assert a["progress"]["step"] == b["progress"]["step"] == 6
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor, b["model"][name], atol=1e-5), name
    for x, y in zip(a["progress"]["history"], b["progress"]["history"], strict=True):
        assert x["step"] == y["step"] and abs(x["loss"] - y["loss"]) < 1e-4
    assert not any(p.name.startswith("rank") for p in (tmp_path / "ddp").iterdir())


def test_distributed_resume(tmp_path):
    run(*TORCHRUN, *train_command(tmp_path / "run", "--set", "train.max_steps=3"))
    run(*TORCHRUN, *train_command(tmp_path / "run", "--resume"))
    run(*TORCHRUN, *train_command(tmp_path / "straight"))
    a = checkpoint.load(tmp_path / "run" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "straight" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
