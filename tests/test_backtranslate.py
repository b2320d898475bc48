"""scripts/backtranslate.py's own steps: the monolingual text it selects, the noise it adds."""

import gzip
import importlib.util
import random

from .conftest import ROOT

spec = importlib.util.spec_from_file_location(
    "backtranslate", ROOT / "scripts" / "backtranslate.py"
)
backtranslate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(backtranslate)


def write_gz(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


def test_monolingual_keeps_each_caption_once_and_none_of_the_parallel_ones(tmp_path):
    write_gz(tmp_path / "multi30k" / "train.en.gz", ["A dog runs.", "Two men  talk."])
    for k in range(1, 6):
        captions = ["A dog runs.", f"Caption {k}.", "Shared one.", "Two men talk.", " "]
        write_gz(tmp_path / "multi30k_task2" / f"train.{k}.en.gz", captions)
    out = tmp_path / "mono.en.gz"
    assert backtranslate.monolingual("en", out, tmp_path) == 6
    assert backtranslate.read(out) == [f"Caption {k}." for k in range(1, 6)][:1] + [
        "Shared one."
    ] + [f"Caption {k}." for k in range(2, 6)]


def test_noise_drops_replaces_and_moves_words_only_a_little():
    rng = random.Random(0)
    line = " ".join(f"w{i}" for i in range(40))
    kept = blanks = 0
    for _ in range(200):
        words = backtranslate.noised(line, rng).split()
        blanks += words.count("<blank>")
        positions = [int(w[1:]) for w in words if w != "<blank>"]
        kept += len(positions)
        # keys i + U(0, 3) over the kept words: a word passes at most 2 others either way
        ranks = {p: r for r, p in enumerate(sorted(positions))}
        assert all(abs(ranks[p] - place) <= 2 for place, p in enumerate(positions))
    assert 0.75 < kept / (200 * 40) < 0.85  # 10% dropped, 10% replaced
    assert 0.07 < blanks / (200 * 40) < 0.13


def test_final_config_lists_both_corpora_and_warm_starts_from_the_forward_model(tmp_path):
    import argparse

    import yaml

    args = argparse.Namespace(
        direction="de-en", variant="beam", weight=0.5, final_minutes=40, threads=1,
        init_from="runs/base_de_en/best.pt",
    )  # fmt: skip
    backtranslate.final_config(args, tmp_path / "bt", tmp_path / "final.yaml")
    config = yaml.safe_load((tmp_path / "final.yaml").read_text())
    assert config["data"]["train"] == [
        {"prefix": "data/multi30k/train", "weight": 1.0},
        {"prefix": str(tmp_path / "bt"), "weight": 0.5},
    ]
    assert config["train"]["init_from"] == "runs/base_de_en/best.pt"
    assert config["train"]["max_minutes"] == 40
