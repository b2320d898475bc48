"""Strict reading of YAML into frozen dataclasses: the machinery under config.py.

A mapping becomes a dataclass only if every key is a field (a typo gets the
closest field name), every value has the field's annotated type (``int`` is
accepted where ``float`` is asked, never ``bool`` for ``int``) and passes its
value check. A key given twice in one YAML mapping is an error, not the last
one silently kept. Errors name the file, the line where YAML knows it, the
dotted key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Literal

import yaml

from seq2seq.errors import UserError

# Value checks that types alone cannot express: dotted key -> (predicate, what is allowed).
Checks = dict[str, tuple[Callable[[Any], bool], str]]


class ConfigError(UserError, ValueError):
    """A configuration value a user wrote is unknown, mistyped or impossible."""


def _is_union(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, where: str, checks: Checks) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted as floats."""
    origin = typing.get_origin(tp)
    if _is_union(tp):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key, where, checks)
            except ConfigError as error:
                errors.append((option, error))
        for option, error in errors:  # the option of the value's own shape knows what is wrong
            if (typing.get_origin(option) is list and isinstance(value, list)) or (
                dataclasses.is_dataclass(option) and isinstance(value, dict)
            ):
                raise error
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, list):
            return [
                _convert(v, item_type, f"{key}[{i}]", where, checks) for i, v in enumerate(value)
            ]
    elif tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return build(tp, value, where, checks, key)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where}: {key}: expected {_type_name(tp)}, got {value!r}")


def build(cls: type, values: dict, where: str, checks: Checks, prefix: str = "") -> Any:
    """``cls`` from a mapping, strictly; absent nested sections are built from ``{}`` so
    their checks run too. ``checks`` are keyed by the dotted path from the top."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (allowed: {', '.join(names)})"
            raise ConfigError(f"{where}: {key}: unknown key{hint}")
        kwargs[name] = _convert(value, hints[name], key, where, checks)
    for name in names:
        if name not in kwargs and dataclasses.is_dataclass(hints[name]):
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = build(hints[name], {}, where, checks, key)
    obj = cls(**kwargs)
    for name in names:
        key = f"{prefix}.{name}" if prefix else name
        check = checks.get(key)
        if check and not check[0](getattr(obj, name)):
            raise ConfigError(f"{where}: {key}: expected {check[1]}, got {getattr(obj, name)!r}")
    return obj


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.path=value`` strings; values are read as YAML (``0.5``, ``true``, ``[a]``)."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item}: expected key.path=value, e.g. train.lr=0.001")
        parsed.append((key.strip(), yaml.safe_load(raw) if raw else ""))
    return parsed


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """``tree[a][b][c] = value`` for ``a.b.c``, making the sections on the way."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
    node[parts[-1]] = value


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int, first: int):
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first})")
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                continue  # the base class reports an unhashable key itself
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """A YAML file's value ({} when empty), or a ConfigError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader) or {}
    except _DuplicateKey as error:
        raise ConfigError(
            f"{path}:{error.line}: duplicate key {error.key!r} (first at line {error.first}); "
            "a second one would silently replace the first: merge them"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
