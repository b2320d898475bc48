"""Imports flow one way: data -> model -> decoding -> search -> train/translate/evaluate -> cli."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "seq2seq"

# Each module's layer; a module may import only modules of a lower layer.
LAYERS = {
    "__version__": -2,  # seq2seq/__init__.py: the installed version; imports nothing of ours
    "errors": -1,
    "strict": -0.75,  # strict reading of YAML into dataclasses (config.py's machinery)
    "config": 0,
    "vocab": -0.5,  # (config checks tags against its specials)
    "download": 0,
    "metrics": 0,
    "device": 0,  # which device, which precision
    "sampling": 0,  # drawing the next token, reproducibly per sentence (NumPy)
    "plots": 0,  # attention heatmaps (matplotlib)
    "tokenization": 1,
    "translation": 1,  # what a translation is and what to load: shared by both backends
    "runtime": 3,  # decoding an export with ONNX Runtime and NumPy: never torch
    "tracking": 1,
    "console": 1,  # the training progress bar on a terminal
    "distributed": 1,
    "schedule": 1,
    "corpus": 2,
    "prepare": 3,  # seq2seq prepare: a corpus tokenized once, as id arrays
    "data": 4,
    "weight_grads": 4.5,
    "recurrence": 4.5,  # the LSTM cell update, and a masked BiLSTM loop (training's encoder)  # a loop's weight gradients as one product over its steps
    "model": 5,  # the math, and the teacher-forced training path
    "checkpoint": 6,
    "curves": 7,  # seq2seq plot: learning curves from run folders
    "quantize": 6,  # int8 arithmetic through oneDNN
    "step": 6,  # one training step and its loss
    "decoding": 7,  # the inference path: a model prepared for decoding (fp32, int8)
    "prune": 7,  # structured pruning of a checkpoint's weights
    "shortlist": 7,  # lexical shortlists of the output layer
    "scorer": 8,  # what search asks of a model, an ensemble, a shortlist
    "search": 9,
    "validate": 10,
    "run": 10,  # what a training run holds, its resume state and checkpoints
    "train": 11,
    "translate": 11,
    "export_int8": 10.5,  # int8 for an export (onnxruntime's quantization)
    "export": 11,  # a checkpoint as ONNX graphs for runtime/
    "translators": 11.1,  # which backend decodes a LoadSpec
    "serve_metrics": 11.2,  # the server's Prometheus metrics
    "serve_batcher": 11.4,  # the server's queue and dynamic batching
    "serve_guard": 11.4,  # the server's middlewares: host, API key, body bytes, text checks
    "serve_shutdown": 11.6,  # the server drains on SIGTERM
    "evaluate": 12,  # --model translates first
    "workers": 12,  # who decodes a chunk: this process or a pool
    "journal": 12,  # a file translation's partial outputs, progress journal and lock
    "serve_page": 11.6,  # GET /: the translation page
    "serve": 12,  # HTTP in front of a Translator
    "arguments": 12,  # the command line's grammar; imports nothing of ours
    "streaming": 13,  # files of any size through a Translator
    "cli": 14,
    "__main__": 15,
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seq2seq"):
            parts = node.module.split(".")
            names |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("seq2seq.")}
    return names


def test_imports_flow_one_way():
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        assert path.stem in LAYERS, f"add {path.stem} to LAYERS"
        for name in imported_modules(path):
            assert LAYERS[name] < LAYERS[path.stem], f"{path.stem} imports {name}"
    for path in (PACKAGE / "runtime").glob("*.py"):  # one layer: its modules import each other
        for name in imported_modules(path) - {"runtime"}:
            assert LAYERS[name] < LAYERS["runtime"], f"runtime/{path.name} imports {name}"


def test_model_does_not_pull_in_heavy_modules():
    import subprocess
    import sys

    code = "import sys, seq2seq.model; print(any(m in sys.modules for m in ('spacy', 'matplotlib', 'wandb')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_functions_fit_on_a_screen():
    """No function in the package longer than 60 lines (the style guide's readable unit)."""
    long = []
    for path in [*PACKAGE.glob("*.py"), *PACKAGE.glob("runtime/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.stem}.{node.name}: {lines} lines")
    assert not long, long
