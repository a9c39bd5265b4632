"""A model config dataclass from a checkpoint's JSON, checked field by field (nothing guessed, nothing coerced).

A checkpoint we saved carries every field of its config (``dataclasses.asdict``),
so a field that is missing was lost or hand-edited away: filling it with the
dataclass default would silently change the computation (a 32 px, 4-frame model
read as 224 px, 16 frames scores 0 %). Hence:

* every field must be present, except the few that only name things
  (:data:`NAMING_ONLY`), and a missing one is an error naming it;
* an unknown field is an error, unless it is a known rename
  (:data:`RENAMED_FIELDS`, read under its new name);
* values must have the field's JSON type: ``4`` for an int (not ``"4"`` or
  ``4.0``), a number for a float, ``true``/``false`` for a bool, one of the
  allowed strings for an enum (``sampling``), a list for a tuple;
* the dataclass's own checks (``__post_init__``) run, their message prefixed
  with where the config came from.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

log = logging.getLogger(__name__)

__all__ = ["NAMING_ONLY", "RENAMED_FIELDS", "coerce", "config_from_json"]

#: Fields that only name outputs (a missing one leaves label numbers as names); every other field is required.
NAMING_ONLY = frozenset({"class_names"})

#: Field names of the official constructors that ours call differently: ``{old: new}`` (VideoMAE's
#: ``all_frames`` is our ``num_frames``). Applied to every config class that has the new name.
RENAMED_FIELDS: Mapping[str, str] = {"all_frames": "num_frames"}


def config_from_json(cls: type, data: Any, where: str, error: type[Exception] = ValueError) -> Any:
    """An instance of the dataclass ``cls`` from parsed JSON ``data``; ``error(message)`` naming ``where`` and
    the field otherwise (see the module docstring)."""
    return _build(cls, data, where, error)


def _build(cls: type, data: Any, where: str, error: type[Exception]) -> Any:
    if not isinstance(data, dict):
        raise error(f"{where}: expected a JSON object of {cls.__name__} fields, got {_json_kind(data)}")
    names = [f.name for f in dataclasses.fields(cls)]
    data = dict(data)
    for old, new in RENAMED_FIELDS.items():
        if old in data and new in names:
            if new in data:
                raise error(f"{where}: both {old!r} and {new!r} given; {old!r} is the old name of {new!r}")
            log.info("%s: reading %r as %r (renamed)", where, old, new)
            data[new] = data.pop(old)
    unknown = [k for k in data if k not in names]
    if unknown:
        raise error(f"{where}: unknown {cls.__name__} field(s) {', '.join(map(repr, unknown))} "
                    f"(valid: {', '.join(names)})")
    missing = [n for n in names if n not in data and n not in NAMING_ONLY]
    if missing:
        raise error(f"{where}: missing {cls.__name__} field(s) {', '.join(map(repr, missing))}: each changes what "
                    "the model computes, so none is filled with a default (add them, or save the model again)")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}: field {k!r}", error) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise error(f"{where}: {e}") from None


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "an integer",
             float: "a number", type(None): "null"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}"[:120]


def _coerce(value: Any, tp: Any, where: str, error: type[Exception]) -> Any:
    return coerce(value, tp, where, error, lambda cls, data, at: _build(cls, data, at, error))


def coerce(value: Any, tp: Any, where: str, error: type[Exception], build: Callable[[type, Any, str], Any], *,
           numeric_strings: bool = False) -> Any:
    """``value`` checked against the type hint ``tp`` (``error(message)`` naming ``where`` otherwise); nested
    dataclasses are made by ``build(cls, value, where)``. ``numeric_strings``: a string that parses as a number
    is accepted for a float (YAML reads ``1e-3``, without a dot, as a string)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for a in options:
            try:
                return coerce(value, a, where, error, build, numeric_strings=numeric_strings)
            except error:
                if len(options) == 1:  # an optional value: its own message says more than "expected X or None"
                    raise
        wanted = " or ".join(_type_name(a) for a in args)
        raise error(f"{where}: expected {wanted}, got {_json_kind(value)}")
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise error(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise error(f"{where}: expected a list, got {_json_kind(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise error(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, f"{where}[{i}]", error, build, numeric_strings=numeric_strings)
                         for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [coerce(v, inner, f"{where}[{i}]", error, build, numeric_strings=numeric_strings)
               for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected a mapping, got {_json_kind(value)}")
        inner = args[1] if len(args) == 2 else Any
        return {k: coerce(v, inner, f"{where}[{k!r}]", error, build, numeric_strings=numeric_strings)
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and numeric_strings and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise error(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise error(f"{where}: expected {_type_name(tp)}, got {_json_kind(value)}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, "a list" if typing.get_origin(tp) in (tuple, list) else getattr(tp, "__name__", str(tp)))
