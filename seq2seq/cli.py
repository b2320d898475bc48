"""The ``seq2seq`` command: the only module that reads argv, prints results or exits."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from seq2seq.arguments import build_parser

EXIT_ERROR, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 130, 141  # 141: as a shell reports SIGPIPE


def _train(args: argparse.Namespace) -> int:
    from seq2seq import config as config_module
    from seq2seq.train import Interrupted, train

    extra = [f"train.init_from={args.init_from}"] if args.init_from else []
    config = config_module.load(args.config, args.set + args.overrides + extra)
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


def _decode_options(args: argparse.Namespace, **more):
    from seq2seq.config import DecodeOptions

    return DecodeOptions(
        beam=args.beam,
        alpha=args.alpha,
        max_len_ratio=args.max_len_ratio,
        batch_tokens=args.batch_tokens,
        sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        **more,
    )


def _load_spec(args: argparse.Namespace):
    """What ``--model``, ``--device``, ``--precision``, ``--quantize`` and ``--shortlist`` ask to
    load, resolved once for this command."""
    from seq2seq.translation import LoadSpec

    spec = LoadSpec.of(
        args.model,
        device=args.device,
        precision=args.precision,
        quantize=args.quantize,
        shortlist=args.shortlist,
    )
    return spec.resolve()


def _translate(args: argparse.Namespace) -> int:
    from seq2seq.streaming import count_lines, translate_file
    from seq2seq.workers import FileJob

    if args.n_best > args.beam:
        raise _usage_error(f"translate: --n-best {args.n_best} exceeds --beam {args.beam}")
    job = FileJob(
        load=_load_spec(args),
        input=args.input,
        output=args.output,
        attention=args.attention,
        plot_dir=args.plot_attention,
        plot_count=args.plot_count,
        decode=_decode_options(args, n_best=args.n_best),
        chunk_lines=args.chunk_lines,
        workers=args.workers,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)  # finished chunks are kept either way
    if not sys.stderr.isatty() or args.quiet:  # no bar: tqdm is not even imported (start-up)
        translate_file(job, resume=args.resume)
        return 0
    from tqdm import tqdm

    total = count_lines(args.input)
    with tqdm(total=total, unit="line", file=sys.stderr) as bar:
        translate_file(job, resume=args.resume, on_lines=bar.update)
    return 0


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    try:
        from seq2seq.serve import ServeSettings, serve
        from seq2seq.serve_guard import allowed_hosts, read_api_key
    except ImportError as error:
        raise _usage_error(
            f"serve needs FastAPI, uvicorn and prometheus-client ({error.name} is missing): "
            "pip install 'seq2seq-nmt[serve]'"
        ) from None
    from seq2seq.translators import load_translator

    settings = ServeSettings(
        max_beam=args.max_beam,
        max_lines=args.max_lines,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        max_word_chars=args.max_word_chars,
        max_wait_ms=args.max_wait_ms,
        max_batch_lines=args.max_batch_lines,
        max_queue_lines=args.max_queue_lines,
        timeout_s=args.timeout_s,
        shutdown_timeout_s=args.shutdown_timeout,
        allowed_hosts=tuple(allowed_hosts(args.host, args.allowed_host)),
        api_key=read_api_key(args.api_key_file) if args.api_key_file else None,
        decode=_decode_options(args),
    )
    settings.check()  # before the model loads
    translator = load_translator(_load_spec(args))
    name = " + ".join(Path(model).stem for model in args.model)  # a name, never a path
    serve(translator, settings, args.host, args.port, name)
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
        report = evaluate_model(
            _load_spec(args), args.src, args.ref, metrics, _decode_options(args), args.baseline,
            paired_method=args.paired, **options,
        )  # fmt: skip
        if args.output:
            _write_output(args.output, "".join(h + "\n" for h in report.hypotheses))
        if args.wandb:
            from seq2seq.translation import is_export

            if is_export(args.model[0]):
                raise _usage_error(
                    "evaluate: --wandb names the run by its checkpoint; an export has none "
                    "(evaluate the checkpoint, or drop --wandb)"
                )
            log_to_wandb(args.model[0], args.src, args.ref, report)
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
        steps = checkpoint.step_checkpoints(args.run)
        if len(steps) < args.last:
            raise _usage_error(
                f"average: {args.run} holds {len(steps)} step_N.pt files, fewer than --last {args.last};"
                " train with train.keep_checkpoints >= K"
            )
        paths += steps[-args.last :]
    checkpoint.save(args.output, checkpoint.average(paths))
    print(args.output)
    return 0


def _shortlist(args: argparse.Namespace) -> int:
    from seq2seq.shortlist import add_shortlist

    summary = add_shortlist(args.model, args.output, args.train, args.per_source)
    print(f"{args.output}: {summary}; translate with --model {args.output} --shortlist")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from seq2seq import checkpoint
    from seq2seq.prune import parameter_count, prune_payload

    payload = checkpoint.load(args.model)
    pruned = prune_payload(payload, args.amount)
    if Path(args.output).resolve() == Path(args.model).resolve():
        raise _usage_error("prune: --output must differ from --model (the original is kept)")
    checkpoint.save(args.output, pruned)
    model = pruned["config"]["model"]
    print(
        f"{args.output}: {parameter_count(payload) / 1e6:.2f}M -> {parameter_count(pruned) / 1e6:.2f}M "
        f"parameters (embedding {model['embedding_size']}, encoder {model['encoder_hidden_size']}, "
        f"decoder {model['decoder_hidden_size']}, attention {model['attention_size']}); fine-tune "
        f"with: seq2seq train --config CONFIG --init-from {args.output}"
    )
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from seq2seq import config as config_module
    from seq2seq.prepare import prepare

    config = config_module.load(args.config, args.set)
    summary = prepare(config.data, args.output, workers=args.workers)
    print(
        f"{summary['pairs']} pairs, vocabularies {summary['src_vocab']} / {summary['tgt_vocab']}: "
        f"{summary['folder']}  (train with --set data.prepared={summary['folder']})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from seq2seq.export import export

    folder = export(args.model, args.output, args.quantize, args.overwrite)
    size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    print(f"{folder}: {size:.1f} MB; translate with --model {folder}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from seq2seq.curves import plot

    print(plot(args.runs, args.output))
    return 0


def _download(args: argparse.Namespace) -> int:
    from seq2seq.download import download

    name = args.corpus
    if args.task == 2:
        if name != "multi30k":
            raise _usage_error(f"download: --task 2 is Multi30k's; {name} has no task 2")
        name = "multi30k_task2"
    print(download(name, args.dest or Path("data") / name, args.source))
    return 0


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


HANDLERS = {
    "train": _train,
    "translate": _translate,
    "serve": _serve,
    "evaluate": _evaluate,
    "average": _average,
    "prune": _prune,
    "shortlist": _shortlist,
    "prepare": _prepare,
    "export": _export,
    "download": _download,
    "plot": _plot,
}


def main(argv: list[str] | None = None) -> int:
    from seq2seq.errors import UserError

    args = build_parser().parse_args(argv)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    console.setLevel(logging.WARNING if args.quiet else logging.INFO)  # train.log still gets INFO
    logging.basicConfig(level=logging.INFO, handlers=[console])
    try:
        return HANDLERS[args.command](args)
    except UserError as error:
        print(f"seq2seq {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"seq2seq {args.command}: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `seq2seq ... | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
