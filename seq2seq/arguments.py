"""The command line's grammar: one parser per subcommand, decoding options declared once.

``cli.py`` parses with ``build_parser()`` and dispatches on ``args.command``;
nothing here imports torch, so ``seq2seq --help`` is instant. Decoding defaults
come from ``config.DecodeOptions``, the one place that sets them.
"""

from __future__ import annotations

import argparse

from seq2seq import __version__
from seq2seq.config import DecodeOptions

DEFAULTS = DecodeOptions()

# Measured on a 2-core CPU (docs/results.md, "Decoding speed"): the split of the cores
# between decoding processes that translated fastest.
DEFAULT_WORKERS = 1
PRECISIONS = ["auto", "fp32", "bf16", "fp16"]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def add_decoding_options(parser: argparse.ArgumentParser, beam_help: str) -> None:
    """What translate, serve and evaluate --model share: search, device and precision."""
    parser.add_argument("--beam", type=positive_int, default=DEFAULTS.beam, help=beam_help)
    parser.add_argument(
        "--alpha", type=float, default=DEFAULTS.alpha, help="GNMT length penalty; 0: off"
    )
    parser.add_argument(
        "--max-len-ratio",
        type=float,
        default=DEFAULTS.max_len_ratio,
        help="output at most R x source length + 5 tokens",
    )
    parser.add_argument(
        "--batch-tokens",
        type=positive_int,
        help="source tokens per batch (default: 8000 greedy, 1500 beam)",
    )
    sampling = parser.add_argument_group("sampling (instead of search: --beam is ignored)")
    sampling.add_argument(
        "--sample", action="store_true", help="draw each token instead of searching"
    )
    sampling.add_argument(
        "--temperature",
        type=float,
        default=DEFAULTS.temperature,
        help="divides the log-probabilities; near 0: greedy (default: %(default)s)",
    )
    sampling.add_argument(
        "--top-k", type=int, default=DEFAULTS.top_k, help="draw among the K most probable; 0: all"
    )
    sampling.add_argument(
        "--top-p",
        type=float,
        default=DEFAULTS.top_p,
        help="draw within the most probable tokens of total probability P (nucleus)",
    )
    sampling.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="the draws of a line depend on this and the line only (default: %(default)s)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 where the CPU (AVX-512 BF16/AMX) or GPU has it natively, else fp32",
    )
    parser.add_argument(
        "--quantize", choices=["int8"], help="int8 matrix products (CPU inference, oneDNN)"
    )
    parser.add_argument(
        "--shortlist",
        action="store_true",
        help="output layer only over the checkpoint's lexical shortlist (seq2seq shortlist)",
    )


def _train(commands) -> None:
    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument(
        "--config", required=True, help="YAML file (see configs/ and docs/reference/config.md)"
    )
    train.add_argument(
        "--output-dir", help="where checkpoints and logs go (default: runs/CONFIG_NAME)"
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.0005 (repeatable)",
    )
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="more overrides, as W&B agents pass them"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from last.pt"
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace a run already in --output-dir"
    )
    train.add_argument(
        "--init-from",
        metavar="CKPT",
        help="fine-tune: start from this checkpoint's weights and shapes (train.init_from)",
    )


def _translate(commands) -> None:
    translate = commands.add_parser("translate", help="translate a file with a trained model")
    translate.add_argument(
        "--model",
        required=True,
        nargs="+",
        help="checkpoint, e.g. runs/x/best.pt; several: an ensemble (mean log-probabilities); "
        "or a folder from seq2seq export (ONNX Runtime, no PyTorch)",
    )
    translate.add_argument("--input", default="-", help="raw text, plain or .gz; - for stdin")
    translate.add_argument("--output", default="-", help="one line per input line; - for stdout")
    add_decoding_options(translate, "beam size; 1 is greedy")
    translate.add_argument(
        "--n-best",
        type=positive_int,
        default=1,
        help="write K candidates per line as TSV: line, score, text",
    )
    translate.add_argument(
        "--chunk-lines",
        type=positive_int,
        default=10_000,
        help="lines read, sorted, translated and written at a time (memory stays flat)",
    )
    translate.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help="decoding processes: the CPU cores are split between them, or one GPU each",
    )
    translate.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted translation into --output after its last finished chunk",
    )
    translate.add_argument(
        "--attention", metavar="FILE", help="write attention matrices as JSON lines"
    )
    translate.add_argument("--plot-attention", metavar="DIR", help="write attention heatmaps (PNG)")
    translate.add_argument(
        "--plot-count", type=positive_int, default=10, help="heatmaps for the first K lines"
    )


def _serve(commands) -> None:
    serve = commands.add_parser("serve", help="serve a model over HTTP (needs the serve extra)")
    serve.add_argument(
        "--model",
        required=True,
        nargs="+",
        help="checkpoint (several: an ensemble), or a folder from seq2seq export",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default: %(default)s)")
    add_decoding_options(serve, "beam when a request names none")
    limits = serve.add_argument_group("limits (docs/guide/serving.md)")
    for option, kind, default, text in (
        ("--max-beam", positive_int, 16, "largest beam a request may ask"),
        ("--max-lines", positive_int, 512, "lines per request"),
        ("--max-chars", positive_int, 100_000, "characters per request"),
        ("--max-body-bytes", positive_int, None, "bytes per body (default: from --max-chars)"),
        ("--max-word-chars", positive_int, 200, "characters between spaces (spaCy tokenizers)"),
        ("--timeout-s", float, 30.0, "seconds to answer a request; later: 504"),
        ("--max-wait-ms", float, 20.0, "how long a request waits for others to share its batch"),
        ("--max-batch-lines", positive_int, 1024, "lines decoded together at most"),
        (
            "--max-queue-lines",
            positive_int,
            2048,
            "lines accepted at once (queued, decoding); more: 503",
        ),
        ("--shutdown-timeout", float, 20.0, "seconds to answer requests in flight after SIGTERM"),
    ):
        shown = text if default is None else f"{text} (default: %(default)s)"
        limits.add_argument(option, type=kind, default=default, help=shown)
    access = serve.add_argument_group("access")
    access.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="require 'Authorization: Bearer KEY' with the key in FILE (use it off loopback)",
    )
    access.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host header name to accept besides the bound address's (repeatable; '*': any)",
    )


def _evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="score translations with BLEU, chrF, TER")
    evaluate.add_argument("--hyp", help="translations to score, one per line")
    evaluate.add_argument("--ref", action="append", required=True, help="references (repeatable)")
    evaluate.add_argument(
        "--metrics", default="bleu,chrf,ter", help="comma-separated: bleu, chrf, chrf++, ter"
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print one JSON object keyed by metric"
    )
    evaluate.add_argument(
        "--confidence", action="store_true", help="bootstrap 95%% confidence intervals"
    )
    evaluate.add_argument(
        "--baseline", help="paired significance test against this system's output"
    )
    evaluate.add_argument(
        "--paired",
        choices=["bs", "ar"],
        default="bs",
        help="paired bootstrap or approximate randomization",
    )
    evaluate.add_argument(
        "--tokenize", help="BLEU tokenizer (sacrebleu's: 13a, intl, zh, none, ...)"
    )
    evaluate.add_argument("--lowercase", action="store_true", help="case-insensitive scoring")
    evaluate.add_argument(
        "--model",
        nargs="+",
        help="translate --src with this checkpoint (several: an ensemble) or export folder",
    )
    evaluate.add_argument("--src", help="source file for --model")
    evaluate.add_argument("--output", help="with --model: also write the translations here")
    add_decoding_options(evaluate, "with --model: beam size; 1 is greedy")
    evaluate.add_argument(
        "--wandb",
        action="store_true",
        help="with --model: add the scores and translations to the W&B run that trained it",
    )


def _corpus_tools(commands) -> None:
    average = commands.add_parser("average", help="average the weights of several checkpoints")
    average.add_argument("inputs", nargs="*", help="checkpoints of one run")
    average.add_argument("--run", help="a training folder: average its last K step_N.pt")
    average.add_argument("--last", type=positive_int, default=5, help="K for --run")
    average.add_argument("--output", required=True, help="the averaged checkpoint")

    shortlist = commands.add_parser(
        "shortlist", help="add a lexical shortlist to a checkpoint (for translate --shortlist)"
    )
    shortlist.add_argument("--model", required=True, help="the checkpoint")
    shortlist.add_argument("--output", required=True, help="the checkpoint with its shortlist")
    shortlist.add_argument(
        "--train", help="training files prefix (default: data.train of the stored config)"
    )
    shortlist.add_argument(
        "--per-source", type=positive_int, default=50, help="target candidates per source token"
    )

    prune = commands.add_parser(
        "prune", help="structured pruning: remove the least important hidden units"
    )
    prune.add_argument("--model", required=True, help="the checkpoint to prune")
    prune.add_argument(
        "--amount", type=float, required=True, help="fraction of units removed, e.g. 0.5"
    )
    prune.add_argument("--output", required=True, help="the pruned checkpoint")

    prepare = commands.add_parser(
        "prepare", help="tokenize a training corpus once into memory-mapped arrays"
    )
    prepare.add_argument("--config", required=True, help="the YAML config whose data to prepare")
    prepare.add_argument("--output", required=True, help="folder for meta.pt and the arrays")
    prepare.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    prepare.add_argument("--workers", type=positive_int, default=2, help="tokenizer processes")

    export = commands.add_parser(
        "export", help="write a checkpoint as ONNX graphs for decoding without PyTorch"
    )
    export.add_argument("--model", required=True, help="the checkpoint")
    export.add_argument("--output", required=True, help="the folder to write (a new one)")
    export.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8 matrix products in the decoder step (smaller, faster on most CPUs)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace --output if it exists")

    _download(commands)
    plot = commands.add_parser(
        "plot", help="learning curves of training runs (validation BLEU and loss), no W&B needed"
    )
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders seq2seq train wrote")
    plot.add_argument(
        "--output", default="curves.png", help="PNG, SVG or PDF (default: %(default)s)"
    )


def _download(commands) -> None:
    download = commands.add_parser("download", help="fetch a public corpus into data/")
    download.add_argument(
        "corpus",
        choices=["multi30k", "tatoeba_de_en"],
        help="Multi30k (see --task) or Tatoeba German-English",
    )
    download.add_argument(
        "--task",
        type=int,
        choices=[1, 2],
        default=1,
        help="multi30k: 1, translation pairs; 2, the monolingual training captions "
        "(into data/multi30k_task2)",
    )
    download.add_argument("--dest", help="target folder (default: data/CORPUS)")
    download.add_argument(
        "--from", dest="source", help="copy from this local folder instead of the web"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Attentional BiLSTM translation: train, translate, evaluate."
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors on stderr"
    )
    parser.add_argument(
        "--version", action="version", version=f"seq2seq {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_train, _translate, _serve, _evaluate, _corpus_tools):
        add(commands)
    return parser
