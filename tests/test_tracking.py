"""Weights & Biases: mode resolution, which run a process writes to, and what a run holds.

The slow tests read a real offline run's files; where offline files cannot
show a behaviour (online resume, artifact use), the tests record the calls
made to wandb instead.
"""

import contextlib
import dataclasses
import io
import json
import logging
import sys
from pathlib import Path

import pytest
import yaml

from seq2seq import checkpoint
from seq2seq.config import WandbConfig
from seq2seq.tracking import Tracker, TrackingError, log_evaluation, plan_run, resolve_mode

from . import wandb_files
from .conftest import ROOT, toy_config


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal


def test_offline_by_default_without_a_key(no_key):
    assert resolve_mode(WandbConfig()) == "offline"


def test_online_with_a_key(no_key, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(WandbConfig()) == "online"


def test_environment_and_config_choose(no_key, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(WandbConfig()) == "disabled"
    assert resolve_mode(WandbConfig(mode="offline")) == "offline"  # the config wins


def test_online_without_key_and_terminal_is_an_error_not_a_prompt(no_key):
    with pytest.raises(TrackingError, match="no API key.*WANDB_API_KEY"):
        resolve_mode(WandbConfig(mode="online"))


# Which W&B run a process writes to (no wandb needed).


def test_a_fresh_run_is_named_by_wandb_online_and_a_group_of_one_offline(monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    assert plan_run(None, "online") == (None, None, False)
    run_id, group, resume = plan_run(None, "offline")
    assert run_id and group == run_id and not resume


def test_only_online_to_online_continues_the_same_run():
    online = {"id": "first", "group": None, "mode": "online"}
    assert plan_run(online, "online") == ("first", None, True)
    for previous, mode in ((online, "offline"), ({**online, "mode": "offline"}, "online")):
        run_id, group, resume = plan_run(previous, mode)
        assert run_id != "first" and group == "first" and not resume
    later = plan_run({"id": "second", "group": "first", "mode": "offline"}, "offline")
    assert later[1] == "first"  # a chain of resumes stays in the first run's group


# A real offline run: the toy task trained for 10 steps, resumed to 20, then evaluated.


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> dict:
    from seq2seq import cli
    from seq2seq.train import train

    folder = tmp_path_factory.mktemp("tracked")
    run = folder / "run"
    test_files = [str(ROOT / "data" / "toy" / f"test.{side}") for side in ("src", "tgt")]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WANDB_API_KEY", raising=False)
        patch.delenv("WANDB_RUN_ID", raising=False)
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("NETRC", str(folder / "no-netrc"))
        patch.setenv("WANDB_DATA_DIR", str(folder / "wandb-data"))  # W&B's staging copies
        config = toy_config(max_steps=10, valid_every=5, log_every=5, batch_tokens=300)
        config = dataclasses.replace(config, wandb=dataclasses.replace(config.wandb, mode=None))
        console = logging.StreamHandler(sys.stderr)  # what the CLI shows, W&B should capture
        logging.getLogger("seq2seq").addHandler(console)
        try:
            train(config, run)
        finally:
            logging.getLogger("seq2seq").removeHandler(console)
        longer = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=20))
        train(longer, run, resume=True)
        arguments = ["evaluate", "--model", str(run / "best.pt"), "--src", test_files[0]]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = cli.main(
                [*arguments, "--ref", test_files[1], "--beam", "1", "--json", "--wandb"]
            )
    assert code == 0
    runs = {path: wandb_files.run_info(path) for path in wandb_files.run_files(run)}
    (first,) = [p for p, info in runs.items() if info["id"] == info["group"]]
    (evaluation,) = [p for p, info in runs.items() if info["job_type"] == "evaluate"]
    (resumed,) = set(runs) - {first, evaluation}
    return {
        "folder": run,
        "runs": runs,
        "first": first,
        "resumed": resumed,
        "evaluation": evaluation,
        "scores": json.loads(printed.getvalue()),
        "history": checkpoint.load(run / "last.pt")["progress"]["history"],
    }


@pytest.mark.slow
def test_summary_holds_best_values_not_last(offline_run):
    history = offline_run["history"]
    first_half = [e for e in history if e["step"] <= 10]  # what the first run saw
    summary = wandb_files.summary(offline_run["first"])
    assert summary["valid/bleu"] == {"max": max(e["bleu"] for e in first_half)}
    assert summary["valid/loss"] == {"min": min(e["loss"] for e in first_half)}
    best = max(history, key=lambda e: e["bleu"])  # first of the best: what best.pt holds
    resumed = wandb_files.summary(offline_run["resumed"])
    assert resumed["best/step"] == best["step"] and resumed["best/valid_bleu"] == best["bleu"]


@pytest.mark.slow
def test_summary_holds_the_setup(offline_run):
    loaded = checkpoint.load_model(offline_run["folder"] / "best.pt")
    summary = wandb_files.summary(offline_run["first"])
    assert summary["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert summary["src_vocab_size"] == len(loaded.src_vocab)
    assert summary["tgt_vocab_size"] == len(loaded.tgt_vocab)
    assert (summary["device"], summary["precision"], summary["world_size"]) == ("cpu", "fp32", 1)
    files = summary["data"]["files"]  # offline: the dataset's references and checksums
    assert {name.split("/")[0] for name in files} == {
        "train.src",
        "train.tgt",
        "valid.src",
        "valid.tgt",
    }
    assert all(f["uri"].startswith("file://") and f["md5"] for f in files.values())


@pytest.mark.slow
def test_checkpoints_are_a_model_artifact_with_best_and_latest(offline_run):
    models = [a for a in wandb_files.artifacts(offline_run["resumed"]) if a["type"] == "model"]
    first_id = offline_run["runs"][offline_run["first"]]["id"]
    assert {a["name"] for a in models} == {f"model-{first_id}"}  # one collection per training
    (best,) = [a for a in models if "best" in a["aliases"]]
    (last,) = [a for a in models if a["files"] == ["last.pt"]]
    assert best["files"] == ["best.pt"] and "latest" in last["aliases"]
    stored = checkpoint.load(offline_run["folder"] / "best.pt")
    for section in ("data", "model"):  # train may differ: the resume asked for more steps
        assert best["metadata"]["config"][section] == stored["config"][section]
    best_entry = max(offline_run["history"], key=lambda e: e["bleu"])
    assert best["metadata"]["step"] == best_entry["step"]
    assert best["metadata"]["valid_bleu"] == best_entry["bleu"]
    assert last["metadata"]["step"] == 20


@pytest.mark.slow
def test_validation_logs_attention_heatmaps(offline_run):
    rows = [r for r in wandb_files.history(offline_run["first"]) if "valid/bleu" in r]
    assert [r["train/step"] for r in rows] == [5, 10]
    media = Path(offline_run["first"]).parent / "files"
    for row in rows:
        for i in (1, 2):  # train.num_samples of the toy config
            assert row[f"valid/attention/{i}/_type"] == "image-file"
            assert (media / row[f"valid/attention/{i}/path"]).stat().st_size > 0


@pytest.mark.slow
def test_console_output_is_captured(offline_run):
    assert "validation at step 5" in wandb_files.console(offline_run["first"])


@pytest.mark.slow
def test_an_offline_resume_is_a_new_run_in_the_first_runs_group(offline_run):
    first = offline_run["runs"][offline_run["first"]]
    resumed = offline_run["runs"][offline_run["resumed"]]
    assert resumed["group"] == first["id"] != resumed["id"] and resumed["job_type"] == "train"
    steps = [r["train/step"] for r in wandb_files.history(offline_run["resumed"])]
    assert min(steps) == 15 and max(steps) == 20
    assert checkpoint.load(offline_run["folder"] / "last.pt")["wandb"]["id"] == resumed["id"]


@pytest.mark.slow
def test_evaluate_writes_scores_and_translations_to_the_training_group(offline_run):
    info = offline_run["runs"][offline_run["evaluation"]]
    first_id = offline_run["runs"][offline_run["first"]]["id"]
    assert info["group"] == first_id
    summary = wandb_files.summary(offline_run["evaluation"])
    scores = offline_run["scores"]
    for name in ("bleu", "chrf", "ter"):
        assert summary[f"test/{name}"] == scores[name]["score"]
        assert summary[f"test/{name}_signature"] == scores[name]["signature"]
    (row,) = [
        r for r in wandb_files.history(offline_run["evaluation"]) if "test/translations/_type" in r
    ]
    assert row["test/translations/_type"] == "table-file" and row["test/translations/nrows"] == 200


# Online behaviour, which offline files cannot show: these tests record the calls made to wandb.


class FakeRun:
    def __init__(self, **options):
        self.options, self.calls, self.summary = options, [], {}
        self.id = options.get("id") or "fresh123"
        self.name, self.project, self.entity = options.get("name"), options["project"], "me"
        self.url, self.dir = f"https://wandb.ai/me/x/runs/{self.id}", "/nowhere/files"

    def __getattr__(self, method):  # define_metric, log, use_artifact, log_artifact, finish
        return lambda *args, **kwargs: self.calls.append((method, args, kwargs))


@pytest.fixture
def fake_online(no_key, monkeypatch) -> list[FakeRun]:
    import wandb

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    runs = []
    monkeypatch.setattr(
        wandb, "init", lambda **options: runs.append(FakeRun(**options)) or runs[-1]
    )
    return runs


def test_online_resume_continues_the_run_and_never_sets_wandbs_step(fake_online, tmp_path):
    previous = {"id": "abc", "group": None, "mode": "online"}
    tracker = Tracker(WandbConfig(), {}, tmp_path, previous)
    (run,) = fake_online
    assert run.options["id"] == "abc" and run.options["resume"] == "allow"
    tracker.log({"train/loss": 1.0}, step=7)
    logged = [call for call in run.calls if call[0] == "log"]
    assert logged == [("log", ({"train/loss": 1.0, "train/step": 7},), {})]  # no step=: kept
    metrics = {
        (args[0], kwargs.get("summary")) for m, args, kwargs in run.calls if m == "define_metric"
    }
    assert {("valid/bleu", "max"), ("valid/loss", "min"), ("*", None)} <= metrics


def test_online_the_dataset_is_an_artifact_the_run_uses(fake_online, tmp_path):
    corpus = tmp_path / "train.de"
    corpus.write_text("ein Satz\n", encoding="utf-8")
    Tracker(WandbConfig(), {}, tmp_path).describe({"parameters": 1}, {"train.src": corpus})
    (run,) = fake_online
    (used,) = [args[0] for method, args, _ in run.calls if method == "use_artifact"]
    assert used.type == "dataset"
    (entry,) = used.manifest.entries.values()
    assert entry.ref == corpus.resolve().as_uri() and entry.digest  # a reference, not an upload
    assert run.summary["parameters"] == 1


def test_online_evaluation_goes_into_the_training_run(fake_online, tmp_path):
    trained = {"id": "abc", "group": None, "mode": "online", "project": "p", "entity": "me"}
    scores = {"bleu": {"score": 12.5, "signature": "nrefs:1|..."}}
    log_evaluation(WandbConfig(), trained, scores, [["a", "b", "c"]], tmp_path)
    (run,) = fake_online
    assert run.options["id"] == "abc" and run.options["resume"] == "allow"
    assert run.summary == {"test/bleu": 12.5, "test/bleu_signature": "nrefs:1|..."}


def test_disabled_turns_everything_off(no_key, monkeypatch, tmp_path):
    import wandb

    monkeypatch.setattr(wandb, "init", lambda **options: pytest.fail("wandb.init was called"))
    tracker = Tracker(WandbConfig(mode="disabled"), {}, tmp_path)
    tracker.describe({"parameters": 1}, {"train.src": tmp_path / "missing"})
    tracker.log({"train/loss": 1.0}, 1)
    tracker.log_validation([{"step": 1, "bleu": 1.0, "loss": 1.0, "ppl": 2.0}], "bleu", [], [])
    tracker.log_checkpoints(
        tmp_path, [{"step": 1, "bleu": 1.0, "loss": 1.0, "ppl": 2.0}], "bleu", 1
    )
    tracker.finish()
    assert tracker.identity is None and not tracker.active
    monkeypatch.setenv("WANDB_MODE", "disabled")
    log_evaluation(WandbConfig(), {"id": "abc", "mode": "online"}, {}, [], tmp_path)
    assert not (tmp_path / "wandb").exists()


@pytest.mark.slow  # the session's toy model
def test_a_run_trained_without_wandb_has_no_run_in_its_checkpoint(toy_checkpoint):
    assert "wandb" not in checkpoint.load(toy_checkpoint)
    assert not (toy_checkpoint.parent / "wandb").exists()


# The sweep file: what `wandb sweep` reads.


def test_sweep_is_bayesian_with_early_termination_and_valid_overrides():
    from seq2seq import config as config_module

    sweep = yaml.safe_load((ROOT / "configs" / "sweeps" / "sweep_wandb.yaml").read_text())
    assert sweep["method"] == "bayes" and sweep["project"] and sweep["run_cap"] > 0
    assert sweep["metric"] == {"name": "valid/bleu", "goal": "maximize"}
    assert sweep["early_terminate"]["type"] == "hyperband"
    parameters = sweep["parameters"]
    assert parameters["train.lr"]["distribution"] == "log_uniform_values"
    assert parameters["train.batch_tokens"]["distribution"] == "q_log_uniform_values"
    assert isinstance(parameters["train.batch_tokens"]["q"], int)  # so W&B sends integers
    command = sweep["command"]
    base = command[command.index("--config") + 1]
    assert config_module.load(ROOT / base).wandb.project == sweep["project"]
    fixed = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    for bound in ("min", "max"):  # every sampled value is a valid override
        config_module.load(ROOT / base, fixed + [f"{k}={v[bound]}" for k, v in parameters.items()])
