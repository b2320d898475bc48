"""The ``seq2seq`` command: the only module that reads argv, prints results or exits."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130
DEFAULT_WORKERS = 1  # measured on a 2-core CPU: see the README's streaming section


def _train(args: argparse.Namespace) -> int:
    from seq2seq import config as config_module
    from seq2seq.train import Interrupted, train

    config = config_module.load(args.config, args.set + args.overrides)
    output_dir = Path(args.output_dir or Path("runs") / Path(args.config).stem)
    if not args.output_dir and os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
        output_dir = output_dir / f"sweep-{os.environ['WANDB_RUN_ID']}"  # one folder per W&B trial
    try:
        best = train(config, output_dir, resume=args.resume, overwrite=args.overwrite)
    except Interrupted as interrupted:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    print(best)
    return 0


def _write_output(name: str, text: str) -> None:
    """Stdout, or a file written under a temporary name and renamed: never half a file."""
    if name == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(name)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _translate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from seq2seq.streaming import FileJob, count_lines, translate_file

    if args.n_best > args.beam:
        raise _usage_error(f"translate: --n-best {args.n_best} exceeds --beam {args.beam}")
    job = FileJob(
        model=args.model,
        input=args.input,
        output=args.output,
        attention=args.attention,
        plot_dir=args.plot_attention,
        plot_count=args.plot_count,
        decode=dict(
            beam=args.beam,
            alpha=args.alpha,
            n_best=args.n_best,
            batch_tokens=args.batch_tokens,
            max_len_ratio=args.max_len_ratio,
        ),
        device=args.device,
        precision=args.precision,
        quantize=args.quantize,
        chunk_lines=args.chunk_lines,
        workers=args.workers,
    )
    show_bar = sys.stderr.isatty() and not args.quiet
    total = count_lines(args.input) if show_bar else None
    signal.signal(signal.SIGTERM, _raise_interrupt)  # finished chunks are kept either way
    with tqdm(total=total, unit="line", disable=not show_bar, file=sys.stderr) as bar:
        translate_file(job, resume=args.resume, on_lines=bar.update)
    return 0


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    try:
        from seq2seq.serve import ServeSettings, serve
    except ImportError as error:
        raise _usage_error(
            f"serve needs FastAPI and uvicorn ({error.name} is missing): pip install 'seq2seq[serve]'"
        ) from None
    from seq2seq.translate import Translator

    settings = ServeSettings(
        beam=args.beam,
        max_beam=args.max_beam,
        max_lines=args.max_lines,
        max_chars=args.max_chars,
        max_wait_ms=args.max_wait_ms,
        max_batch_lines=args.max_batch_lines,
        decode=(("alpha", args.alpha), ("max_len_ratio", args.max_len_ratio)),
    )
    if not 1 <= args.beam <= args.max_beam:
        raise _usage_error(f"serve: --beam {args.beam} exceeds --max-beam {args.max_beam}")
    translator = Translator.from_checkpoint(args.model, args.device, args.precision, args.quantize)
    serve(translator, settings, args.host, args.port, str(args.model))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from seq2seq.evaluate import evaluate_files, evaluate_model, log_to_wandb

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    options = dict(
        confidence=args.confidence,
        tokenize=args.tokenize,
        lowercase=args.lowercase,
    )
    if args.model:
        if not args.src or args.hyp:
            raise _usage_error("evaluate: --model needs --src (and no --hyp)")
        translate_options = dict(
            beam=args.beam,
            alpha=args.alpha,
            batch_tokens=args.batch_tokens,
            max_len_ratio=args.max_len_ratio,
        )
        report = evaluate_model(
            args.model,
            args.src,
            args.ref,
            metrics,
            args.device,
            translate_options,
            args.precision,
            **options,
        )
        if args.output:
            _write_output(args.output, "".join(h + "\n" for h in report.hypotheses))
        if args.wandb:
            log_to_wandb(args.model, args.src, args.ref, report)
    else:
        if args.wandb:
            raise _usage_error("evaluate: --wandb needs --model (the checkpoint names its run)")
        if not args.hyp:
            raise _usage_error("evaluate: give --hyp FILE, or --model CKPT with --src FILE")
        report = evaluate_files(
            args.hyp, args.ref, metrics, args.baseline, paired_method=args.paired, **options
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
        return 0
    for name, score in report.scores.items():
        print(f"{score.text}")
        print(f"  signature: {score.signature}")
        if name in report.comparisons:
            comparison = report.comparisons[name]
            print(
                f"  baseline {comparison.baseline:.2f}, p-value {comparison.p_value:.4f}"
                f" ({'significant' if comparison.p_value < 0.05 else 'not significant'} at 0.05)"
            )
    return 0


def _average(args: argparse.Namespace) -> int:
    from seq2seq import checkpoint

    paths = list(args.inputs)
    if args.run:
        steps = sorted(Path(args.run).glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        if len(steps) < args.last:
            raise _usage_error(
                f"average: {args.run} holds {len(steps)} step_N.pt files, fewer than --last {args.last};"
                " train with train.keep_checkpoints >= K"
            )
        paths += steps[-args.last :]
    checkpoint.save(args.output, checkpoint.average(paths))
    print(args.output)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from seq2seq import config as config_module
    from seq2seq.corpus import prepare

    config = config_module.load(args.config, args.set)
    summary = prepare(config.data, args.output, workers=args.workers)
    print(
        f"{summary['pairs']} pairs, vocabularies {summary['src_vocab']} / {summary['tgt_vocab']}: "
        f"{summary['folder']}  (train with --set data.prepared={summary['folder']})"
    )
    return 0


def _download(args: argparse.Namespace) -> int:
    from seq2seq.download import download

    print(download(args.corpus, args.dest or Path("data") / args.corpus, args.source))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _usage_error(message: str) -> Exception:
    from seq2seq.config import ConfigError

    return ConfigError(message)


def _after_interrupt(args: argparse.Namespace) -> str:
    if args.command == "translate" and args.output != "-":
        return (
            f"no {args.output} was written; the finished chunks are kept: "
            "run the same command with --resume to continue"
        )
    return "no output file was written"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Attentional BiLSTM translation: train, translate, evaluate."
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors on stderr"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("--config", required=True, help="YAML file (see configs/ and the README)")
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
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="more overrides, as W&B sweep agents pass them",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from last.pt"
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace a run already in --output-dir"
    )
    train.set_defaults(func=_train)

    translate = commands.add_parser("translate", help="translate a file with a trained model")
    translate.add_argument("--model", required=True, help="checkpoint, e.g. runs/x/best.pt")
    translate.add_argument("--input", default="-", help="raw text, plain or .gz; - for stdin")
    translate.add_argument("--output", default="-", help="one line per input line; - for stdout")
    translate.add_argument("--beam", type=_positive_int, default=5, help="beam size; 1 is greedy")
    translate.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty; 0: off")
    translate.add_argument(
        "--n-best",
        type=_positive_int,
        default=1,
        help="write K candidates per line as TSV: line, score, text",
    )
    translate.add_argument(
        "--batch-tokens",
        type=_positive_int,
        help="source tokens per batch (default: 8000 greedy, 1500 beam)",
    )
    translate.add_argument(
        "--max-len-ratio",
        type=float,
        default=2.0,
        help="output at most R x source length + 5 tokens",
    )
    translate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    translate.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="auto: bf16 where the CPU (AVX-512 BF16/AMX) or GPU has it natively, else fp32",
    )
    translate.add_argument(
        "--quantize", choices=["int8"], help="int8 dynamic quantization (CPU inference)"
    )
    translate.add_argument(
        "--chunk-lines",
        type=_positive_int,
        default=20_000,
        help="lines read, sorted, translated and written at a time (memory stays flat)",
    )
    translate.add_argument(
        "--workers",
        type=_positive_int,
        default=DEFAULT_WORKERS,
        help=f"decoding processes: the CPU cores are split between them, or one GPU each (default {DEFAULT_WORKERS})",
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
        "--plot-count", type=_positive_int, default=10, help="heatmaps for the first K lines"
    )
    translate.set_defaults(func=_translate)

    serve = commands.add_parser("serve", help="serve a model over HTTP (needs seq2seq[serve])")
    serve.add_argument("--model", required=True, help="checkpoint, e.g. runs/x/best.pt")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--beam", type=_positive_int, default=5, help="beam when a request names none"
    )
    serve.add_argument(
        "--max-beam", type=_positive_int, default=16, help="largest beam a request may ask"
    )
    serve.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty; 0: off")
    serve.add_argument("--max-len-ratio", type=float, default=2.0)
    serve.add_argument("--max-lines", type=_positive_int, default=512, help="lines per request")
    serve.add_argument(
        "--max-chars", type=_positive_int, default=100_000, help="characters per request"
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to share its batch",
    )
    serve.add_argument(
        "--max-batch-lines", type=_positive_int, default=1024, help="lines decoded together at most"
    )
    serve.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    serve.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    serve.add_argument("--quantize", choices=["int8"], help="int8 dynamic quantization (CPU)")
    serve.set_defaults(func=_serve)

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
    evaluate.add_argument("--model", help="translate --src with this checkpoint, then score")
    evaluate.add_argument("--src", help="source file for --model")
    evaluate.add_argument("--output", help="with --model: also write the translations here")
    evaluate.add_argument("--beam", type=_positive_int, default=5)
    evaluate.add_argument("--alpha", type=float, default=0.6)
    evaluate.add_argument("--batch-tokens", type=_positive_int)
    evaluate.add_argument("--max-len-ratio", type=float, default=2.0)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    evaluate.add_argument(
        "--wandb",
        action="store_true",
        help="with --model: add the scores and translations to the W&B run that trained it",
    )
    evaluate.set_defaults(func=_evaluate)

    average = commands.add_parser("average", help="average the weights of several checkpoints")
    average.add_argument("inputs", nargs="*", help="checkpoints of one run")
    average.add_argument("--run", help="a training folder: average its last K step_N.pt")
    average.add_argument("--last", type=_positive_int, default=5, help="K for --run")
    average.add_argument("--output", required=True, help="the averaged checkpoint")
    average.set_defaults(func=_average)

    prepare = commands.add_parser(
        "prepare", help="tokenize a training corpus once into memory-mapped arrays"
    )
    prepare.add_argument("--config", required=True)
    prepare.add_argument("--output", required=True, help="folder for meta.pt and the arrays")
    prepare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    prepare.add_argument("--workers", type=_positive_int, default=2, help="tokenizer processes")
    prepare.set_defaults(func=_prepare)

    download = commands.add_parser("download", help="fetch a public corpus into data/")
    download.add_argument("corpus", choices=["multi30k", "tatoeba_de_en"])
    download.add_argument("--dest", help="target folder (default: data/CORPUS)")
    download.add_argument(
        "--from", dest="source", help="copy from this local folder instead of the web"
    )
    download.set_defaults(func=_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    from seq2seq.errors import UserError

    args = build_parser().parse_args(argv)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    console.setLevel(logging.WARNING if args.quiet else logging.INFO)  # train.log still gets INFO
    logging.basicConfig(level=logging.INFO, handlers=[console])
    try:
        return args.func(args)
    except UserError as error:
        print(f"seq2seq {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"seq2seq {args.command}: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
