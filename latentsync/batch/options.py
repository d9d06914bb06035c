"""Per-row option values → :class:`~latentsync.inference.pipeline.LipSyncOptions`, generically.

Every field of ``LipSyncOptions`` is a column a jobs file may set: its name and its type come from the dataclass
itself, so a field added there is accepted here without a change. Values from a CSV are strings and are converted to
the field's type; values from JSONL arrive typed and are checked. ``version`` is not an option of the call but picks
which loaded pipeline runs the row.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from latentsync.errors import InputError

VERSION_COLUMN = "version"
DEFAULT_VERSION = "1.5"  # the single-clip CLI's default
ALIASES = {"guidance": "guidance_scale"}  # the single-clip CLI's --guidance
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "y", "on"), ("0", "false", "no", "n", "off")
NUMBER_KINDS = {int: ((int,), "a whole number"), float: ((int, float), "a number")}  # accepted types, the error's words


def _options_class():
    from latentsync.inference.pipeline import LipSyncOptions  # torch: only when rows are parsed

    return LipSyncOptions


def option_types() -> dict[str, Any]:
    """Name → resolved type of every :class:`LipSyncOptions` field (the columns a jobs file may set)."""
    cls = _options_class()
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls) if field.init}


def canonical_name(name: str) -> str:
    """A column name as written by a person → the field name: case, spaces and dashes do not matter."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return ALIASES.get(key, key)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(name: str, value: Any, tp: Any) -> Any:
    """``value`` (a CSV string or a JSON value) as the type ``tp`` of option ``name``; :class:`InputError` if it is
    not one. Handles the types a user knob has: bool, int, float, str, enums, ``Literal``, ``X | None`` and tuples
    (``"0.5,0.4"`` or a JSON list)."""
    if _is_union(tp):
        members = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if type(None) in members:
                return None
        problems = []
        for member in members:
            if member is type(None):
                continue
            try:
                return coerce(name, value, member)
            except InputError as err:
                problems.append(str(err))
        raise InputError("; ".join(problems) or f"{name}: {value!r} is not allowed")
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        for choice in allowed:
            if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
                return choice
        raise InputError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    if origin is tuple:
        return _coerce_tuple(name, value, typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if value in (member, member.value, member.name) or (
                isinstance(value, str) and value.strip().lower() in (member.name.lower(), str(member.value).lower())
            ):
                return member
        raise InputError(f"{name} must be one of {', '.join(str(m.value) for m in tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        raise InputError(f"{name} must be true or false (also yes/no, 1/0), got {value!r}")
    if tp in NUMBER_KINDS:  # int or float: the value itself (bools excluded), or text that parses as one
        accepted, words = NUMBER_KINDS[tp]
        if isinstance(value, accepted) and not isinstance(value, bool):
            return tp(value)
        if isinstance(value, str):
            try:
                return tp(value.strip())
            except ValueError:
                pass
        raise InputError(f"{name} must be {words}, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value.strip()
        raise InputError(f"{name} must be text, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise InputError(f"{name} has the type {_type_name(tp)}, which a jobs file cannot set (got {value!r})")


def _coerce_tuple(name: str, value: Any, args: tuple) -> tuple:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise InputError(f"{name} must be a list of values like [0.5, 0.4], got {value!r}") from None
        else:
            value = [part for part in text.replace(";", ",").replace(" ", ",").split(",") if part]
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{name} must be a list of values like 0.5,0.4, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(name, item, args[0]) for item in value)
    if args and len(value) != len(args):
        raise InputError(f"{name} must have {len(args)} values, got {len(value)} ({value!r})")
    return tuple(coerce(name, item, tp) for item, tp in zip(value, args)) if args else tuple(value)


def known_columns() -> list[str]:
    return [VERSION_COLUMN, *option_types()]


def build_options(values: Mapping[str, Any], defaults: Mapping[str, Any] = {}) -> tuple[str, Any]:
    """(version, LipSyncOptions) from a row's option ``values`` over ``defaults`` (both keyed by canonical name; a
    value of None or "" means "not given"). Unknown names, values of the wrong type and out-of-range options raise
    :class:`InputError` naming the column."""
    types_ = option_types()
    merged = {**defaults, **{k: v for k, v in values.items() if v is not None and v != ""}}
    version = merged.pop(VERSION_COLUMN, DEFAULT_VERSION)
    version = coerce(VERSION_COLUMN, version, str) if not isinstance(version, (int, float)) else str(version)
    from latentsync.checkpoints import VERSIONS

    if version not in VERSIONS:
        raise InputError(f"version must be one of {', '.join(sorted(VERSIONS))}, got {version!r}")
    unknown = [name for name in merged if name not in types_]
    if unknown:
        raise InputError(
            f"unknown column {', '.join(map(repr, unknown))}; the known ones are video, audio, output, "
            f"{', '.join(known_columns())}"
        )
    kwargs = {name: coerce(name, value, types_[name]) for name, value in merged.items()}
    options = _options_class()(**kwargs)
    options.check()
    return version, options


def parse_assignment(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` (the command line's ``--set``) → (canonical name, value)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InputError(f"--set takes NAME=VALUE (e.g. steps=30), got {text!r}")
    return canonical_name(name), value.strip()
