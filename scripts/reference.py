"""Write the configuration and command-line references from the code itself.

    python scripts/reference.py           # (re)write docs/reference/config.md and cli.md
    python scripts/reference.py --check   # exit 1 if either is stale or a key lacks help

The configuration reference walks the dataclasses of ``seq2seq/config.py``: each
key's type and default come from the field, its help text from the comment on the
field's line and the comment lines just above it (the comments a reader of
config.py sees), and its allowed values from the checks config.py applies. The
command-line reference walks ``seq2seq.arguments.build_parser()``. Nothing is
written by hand, so neither page can drift from the code; tests/test_reference.py
runs ``--check``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import types
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seq2seq import config as config_module  # noqa: E402
from seq2seq.arguments import build_parser  # noqa: E402

CONFIG_PAGE = ROOT / "docs" / "reference" / "config.md"
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
# The YAML sections, in the order a config file has them, and where list items live.
SECTIONS = [
    ("data", config_module.DataConfig),
    ("data.sentencepiece", config_module.SentencePieceConfig),
    ("data.train[]", config_module.CorpusConfig),
    ("model", config_module.ModelConfig),
    ("train", config_module.TrainConfig),
    ("wandb", config_module.WandbConfig),
]
API_SECTIONS = [("DecodeOptions", config_module.DecodeOptions)]


def field_help(cls: type) -> dict[str, str]:
    """Each field's help: the comment block just above its line, then its trailing comment."""
    lines = inspect.getsource(cls).splitlines()
    names = {f.name for f in dataclasses.fields(cls)}
    helps, block = {}, []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        name = stripped.split(":", 1)[0].strip()
        if name in names and ":" in stripped:
            trailing = stripped.split("  # ", 1)[1].strip() if "  # " in stripped else ""
            helps[name] = " ".join(part for part in [*block, trailing] if part)
        block = []
    return helps


def type_name(hint) -> str:
    """A field's type as a YAML writer reads it: `int`, `"adam" | "sgd"`, `list of ...`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        inner = args[0] if args else typing.Any
        if dataclasses.is_dataclass(inner):
            return "list of corpora (`data.train[]`)"
        return f"list of {type_name(inner)}"
    if hint is type(None):
        return "`null`"
    if dataclasses.is_dataclass(hint):
        return "section"
    return f"`{getattr(hint, '__name__', str(hint))}`"


def default_text(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return "" if dataclasses.is_dataclass(value) else f"`{value!r}`"
    value = f.default
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "required"
    return f'`"{value}"`' if isinstance(value, str) else f"`{value}`"


def config_rows(prefix: str, cls: type) -> list[tuple[str, str, str, str, str]]:
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            continue  # a subsection: documented as its own table
        key = f"{prefix}.{f.name}"
        check = config_module._CHECKS.get(key.replace("[]", ""))
        allowed = check[1] if check else ""
        rows.append(
            (key, type_name(hints[f.name]), default_text(f), allowed, helps.get(f.name, ""))
        )
    return rows


def undocumented(sections=None, parsers=None) -> list[str]:
    """Config keys and command-line options without help text (default: all of seq2seq's)."""
    missing = [
        key
        for prefix, cls in sections or SECTIONS + API_SECTIONS
        for key, *_, text in config_rows(prefix, cls)
        if not text.strip()
    ]
    for command, parser in parsers or subcommands():
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
    return missing


def escape(text: str) -> str:
    """Table-safe Markdown: pipes escaped, <unk>-like tokens shown as text, not HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def config_page() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated by `python scripts/reference.py` from the dataclasses of",
        "`seq2seq/config.py`; do not edit by hand. A config file is YAML with the sections",
        "below; an unknown key, a wrong type or a value outside what is allowed stops",
        "`seq2seq train` before any work, naming the file and the dotted key. Any key can",
        "be overridden on the command line: `seq2seq train --config x.yaml --set train.lr=0.0005`.",
        "",
    ]
    for prefix, cls in SECTIONS:
        out += [f"## `{prefix}`", ""]
        doc = inspect.getdoc(cls)
        if doc and not doc.startswith(cls.__name__ + "("):
            out += [doc, ""]
        out += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for key, kind, default, allowed, text in config_rows(prefix, cls):
            out.append(f"| `{key}` | {kind} | {default} | {escape(allowed)} | {escape(text)} |")
        out.append("")
    out += [
        "## Decoding options (Python API)",
        "",
        "`seq2seq.config.DecodeOptions` holds how to search, one set of defaults for the",
        "command line (`translate`, `serve`, `evaluate --model`), the server's requests and the",
        "Python API.",
        "",
        "| field | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for prefix, cls in API_SECTIONS:
        for key, kind, default, _, text in config_rows(prefix, cls):
            out.append(f"| `{key}` | {kind} | {default} | {escape(text)} |")
    return "\n".join(out) + "\n"


def subcommands() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    found = [("seq2seq", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"seq2seq {name}", sub) for name, sub in action.choices.items()]
    return found


def option_row(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{s}`" for s in action.option_strings)
        if action.nargs != 0:
            names += f" `{action.metavar or action.dest.upper()}`"
    else:
        names = f"`{action.metavar or action.dest}`"
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        names += " (" + ", ".join(f"`{c}`" for c in action.choices) + ")"
    default = action.default
    shown = (
        ""
        if default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0
        else f"`{default}`"
    )
    required = " (required)" if getattr(action, "required", False) and action.option_strings else ""
    text = (action.help or "").replace("%(default)s", str(default)) + required
    return f"| {names} | {shown} | {escape(text)} |"


def cli_page() -> str:
    out = [
        "# Command-line reference",
        "",
        "Generated by `python scripts/reference.py` from `seq2seq/arguments.py`; do not edit",
        "by hand. `seq2seq COMMAND --help` prints the same.",
        "",
    ]
    parser = build_parser()
    summaries = {  # each subcommand's one-line help, as `seq2seq --help` lists it
        f"seq2seq {c.dest}": c.help
        for a in parser._actions
        if isinstance(a, argparse._SubParsersAction)
        for c in a._choices_actions
    }
    summaries["seq2seq"] = parser.description
    for command, parser in subcommands():
        actions = [
            a
            for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
        ]
        out += [f"## `{command}`", ""]
        out += [f"{summaries[command]}.".replace("..", "."), ""]
        if actions:
            out += ["| option | default | meaning |", "|---|---|---|"]
            out += [option_row(a) for a in actions]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if stale or incomplete")
    args = parser.parse_args()
    missing = undocumented()
    if missing:
        print("no help text for: " + ", ".join(missing), file=sys.stderr)
        print("write a comment beside the config field / a help= for the option", file=sys.stderr)
        return 1
    pages = {CONFIG_PAGE: config_page(), CLI_PAGE: cli_page()}
    if args.check:
        stale = [p for p, text in pages.items() if not p.exists() or p.read_text() != text]
        for page in stale:
            print(
                f"{page.relative_to(ROOT)} is stale: run python scripts/reference.py",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for page, text in pages.items():
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(text)
        print(f"wrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
