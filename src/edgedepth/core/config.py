"""Typed configurations: dataclasses loaded from YAML, with ``key=value`` overrides on dotted keys.

A config file may only name fields that exist, with values of the field's type and in the field's declared range
(:data:`POSITIVE`, :data:`NON_NEGATIVE`); anything else is an :class:`EdgedepthError` naming the key. Values are
checked when loaded, so a job never starts on a typo. Fields a resumed run may change are marked
:data:`RESUMABLE` beside their declaration. The training config (:mod:`edgedepth.train.config`) is the one
config file users write.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, check_input_file
from edgedepth.core.sizes import SIZE_MULTIPLE, format_size, parse_size

T = TypeVar("T")


# What a field allows beyond its type, written beside it as field metadata (``field(..., metadata=POSITIVE)``):
# a range, checked whenever a config is loaded (and by :func:`check_values`), and whether a resumed run may change
# it (for a section: every key in it), read by :func:`is_resumable`. Renaming a field renames its rules with it.

#: The value must be above 0 (null passes where the type allows it).
POSITIVE: dict[str, Any] = {"range": "positive"}
#: The value must not be below 0.
NON_NEGATIVE: dict[str, Any] = {"range": "non_negative"}
#: A resumed run may change this field (or every key of this section): it changes neither the maths nor the data
#: order.
RESUMABLE: dict[str, Any] = {"resumable": True}

_RANGES = {"positive": (lambda value: value > 0, "must be positive"),
           "non_negative": (lambda value: value >= 0, "must not be negative")}


# ---------------------------------------------------------------------------------------------------------------
# Loading, overriding, dumping


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and values of the wrong type raise naming the key."""
    if not isinstance(data, Mapping):
        raise EdgedepthError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        known_here = ", ".join(sorted(known))
        raise EdgedepthError(f"unknown config key {prefix + str(unknown[0])!r} (known here: {known_here})")
    values = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    result = cls(**values)
    _check_ranges(result, prefix)
    return result


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Check (and where lossless, convert) one value against a field type.

    A union takes the first of its types, in the order written, that accepts the value (``None`` for null).
    """
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value if value is not None else {}, key + ".")  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], key)
        for option in inner:
            try:
                return _coerce(value, option, key)
            except EdgedepthError:
                continue
        raise EdgedepthError(f"config key {key!r}: expected {' or '.join(map(_describe, args))}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise EdgedepthError(f"config key {key!r}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise EdgedepthError(f"config key {key!r}: expected {_describe(kind)}, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EdgedepthError(f"config key {key!r}: expected {_describe(kind)}, got {value!r}")
        return value
    if kind is float:
        # YAML reads 1e-3 (no dot) as a string; accept any text that is a number.
        try:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise EdgedepthError(f"config key {key!r}: expected {_describe(kind)}, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise EdgedepthError(f"config key {key!r}: expected {_describe(kind)}, got {value!r}")
        return value
    if origin is tuple and args == (int, int):
        return _size(value, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise EdgedepthError(f"config key {key!r}: expected {_describe(kind)}, got {value!r}")
        return dict(value)
    raise TypeError(f"config field {key!r} has unsupported type {kind!r}")


_SCALAR_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text", type(None): "null"}


def _describe(kind: Any) -> str:
    """What a field type accepts, in a config's terms (``an integer``, ``one of 'a', 'b'``)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind in _SCALAR_NAMES:
        return _SCALAR_NAMES[kind]
    if origin is Literal:
        return f"one of {', '.join(map(repr, args))}"
    if origin is tuple:
        return "a size WIDTHxHEIGHT"
    return "a mapping"


def _size(value: Any, key: str) -> tuple[int, int]:
    """A size as ``"256x192"`` or ``[256, 192]``; sides must be multiples of the student's divisor."""
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    if not isinstance(value, str):
        raise EdgedepthError(f"config key {key!r}: expected a size WIDTHxHEIGHT, got {value!r}")
    try:
        return parse_size(value, SIZE_MULTIPLE)
    except EdgedepthError as exc:
        raise EdgedepthError(f"config key {key!r}: {exc}") from None


def _check_ranges(cfg: Any, prefix: str) -> None:
    """Check the fields of one dataclass (not those of its sections) against their :data:`POSITIVE` or
    :data:`NON_NEGATIVE` metadata."""
    for item in dataclasses.fields(cfg):
        rule = item.metadata.get("range")
        value = getattr(cfg, item.name)
        if rule is None or value is None:
            continue
        allowed, requirement = _RANGES[rule]
        if not allowed(value):
            nullable = " (or null)" if type(None) in typing.get_args(typing.get_type_hints(type(cfg))[item.name]) else ""
            raise EdgedepthError(f"config key {prefix + item.name!r} {requirement}{nullable}, got {value}")


def check_values(cfg: Any, prefix: str = "") -> None:
    """Check a config and its sections against their range metadata (loading does this; call it on a config
    built or changed in Python)."""
    _check_ranges(cfg, prefix)
    for item in dataclasses.fields(cfg):
        value = getattr(cfg, item.name)
        if dataclasses.is_dataclass(value):
            check_values(value, f"{prefix}{item.name}.")


def resumable_keys(cls: type) -> frozenset[str]:
    """The dotted keys of the fields of ``cls`` marked :data:`RESUMABLE` (a section's key covers its fields)."""
    hints = typing.get_type_hints(cls)
    keys: set[str] = set()
    for item in dataclasses.fields(cls):
        if item.metadata.get("resumable"):
            keys.add(item.name)
        elif dataclasses.is_dataclass(hints[item.name]):
            keys |= {f"{item.name}.{key}" for key in resumable_keys(hints[item.name])}
    return frozenset(keys)


def is_resumable(cls: type, key: str) -> bool:
    """May a resumed run change dotted ``key`` of config ``cls``? (The key, or a section above it, is marked.)"""
    parts = key.split(".")
    return any(".".join(parts[:depth]) in resumable_keys(cls) for depth in range(1, len(parts) + 1))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys, YAML values) to a nested dict, returning a new dict."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise EdgedepthError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
        *parents, leaf = key.strip().split(".")
        node = result
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise EdgedepthError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = yaml.safe_load(text) if text.strip() else ""
    return result


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load a config of type ``cls`` from a YAML file (or the defaults when ``path`` is None) plus overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = check_input_file(path, "a YAML config", "no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgedepthError(f"{path}: cannot read the config ({getattr(exc, 'strerror', None) or exc})") from None
        except yaml.YAMLError as exc:
            raise EdgedepthError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise EdgedepthError(f"{path}: a config file must be a mapping of sections, not {type(data).__name__}")
    try:
        return from_dict(cls, apply_overrides(data, overrides))
    except EdgedepthError as exc:
        if path is None:
            raise
        try:  # the file alone: a key or value it gets wrong is named with the file; an override's, without
            from_dict(cls, apply_overrides(data, []))
        except EdgedepthError:
            raise EdgedepthError(f"{path}: {exc}") from None
        raise


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain YAML-friendly data (sizes as ``"WxH"``)."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return format_size(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


def dump_config(cfg: Any) -> str:
    """A config as YAML text, sections in declaration order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dump_config(cfg))
