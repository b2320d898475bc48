"""``seq2seq plot``: learning curves from run folders (last.pt, or train.log)."""

import subprocess
import sys

import pytest

from seq2seq.curves import PlotError, history, plot

from .conftest import ROOT

LOG = """10:00:01 step 100 | epoch 1 | loss 3.1 | lr 1.00e-03 | grad norm 0.5 | 2000 tgt tok/s
10:00:09 validation at step 300 (2.7 min): loss 3.415, ppl 30.43, BLEU 12.53 (best)
10:00:10   src: Ein Hund.
10:03:34 validation at step 600 (5.9 min): loss 2.623, ppl 13.78, BLEU 24.36 (best)
"""


def test_a_log_alone_gives_the_curve(tmp_path):
    (tmp_path / "train.log").write_text(LOG)
    assert history(tmp_path) == [
        {"step": 300, "minutes": 2.7, "loss": 3.415, "ppl": 30.43, "bleu": 12.53},
        {"step": 600, "minutes": 5.9, "loss": 2.623, "ppl": 13.78, "bleu": 24.36},
    ]
    with pytest.raises(PlotError, match="no last.pt or train.log"):
        history(tmp_path / "nothing")


def test_plot_draws_several_runs_from_their_checkpoints(toy_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    run = toy_checkpoint.parent
    steps = [entry["step"] for entry in history(run)]
    assert steps == sorted(steps) and steps  # from last.pt's resume state
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.log").write_text(LOG)
    out = tmp_path / "curves.png"
    done = subprocess.run(
        [sys.executable, "-m", "seq2seq", "plot", str(run), str(other), "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot([other], tmp_path / "c.svg").read_text().startswith("<?xml")
