"""Frozen dataclasses as config sections and plugin options, checked against their annotations once.

``check(cls, raw, prefix, where)`` validates one layer (a YAML file, the flags) of one section:
unknown keys and wrong types are a ``ConfigError`` naming the key and where it came from
(``grid.n: expected an integer, got 16.7 (configs/x.yaml)``).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Mapping, Union


class ConfigError(ValueError):
    """A bad config value; the message names the key and the file (or the flags)."""


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(dict.fromkeys(str(a) for a in typing.get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is dict:
        return "a mapping"
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """``(ok, value)``: ``value`` as type ``tp`` (ints widen to floats; nothing else converts)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if tp is type(None):
        return value is None, value
    if origin is Literal:
        return (value in typing.get_args(tp) and not isinstance(value, bool)) or value in [
            a for a in typing.get_args(tp) if isinstance(a, bool)], value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is tuple:  # tuple[X, ...]: a YAML list
        if not isinstance(value, (list, tuple)):
            return False, value
        (item_t, _) = typing.get_args(tp)
        items = [_coerce(v, item_t) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if origin is dict:
        if not isinstance(value, Mapping):
            return False, value
        key_t, val_t = typing.get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            ok_k, k2 = _coerce(k, key_t)
            ok_v, v2 = _coerce(v, val_t)
            if not (ok_k and ok_v):
                return False, value
            out[k2] = v2
        return True, out
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported config annotation {tp!r}")


def describe_type(tp: Any) -> str:
    """A config annotation in words (``an integer or null``)."""
    return _describe(tp)


def fields_of(cls: type) -> dict[str, Any]:
    """``{name: resolved annotation}`` of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def check(cls: type, raw: Mapping[str, Any], prefix: str, where: str, owner: str = "") -> dict[str, Any]:
    """One layer of one section, validated against ``cls``: ``{key: typed value}``; ``owner``
    names the plugin whose options these are (``segmenter superpixel``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a mapping, got {type(raw).__name__} ({where})")
    known = fields_of(cls)
    out = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key; {owner or prefix.rstrip('.')} takes "
                              f"{', '.join(known) or 'no keys'} ({where})")
        ok, typed = _coerce(value, known[key])
        if not ok:
            raise ConfigError(f"{prefix}{key}: expected {_describe(known[key])}, got {value!r} ({where})")
        out[key] = typed
    return out


def build(cls: type, values: Mapping[str, Any], prefix: str, where: str) -> Any:
    """``cls(**values)``; a ``ValueError`` from its ``__post_init__`` gets the prefix and ``where``."""
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{prefix}{e} ({where})") from None


def as_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML/JSON values (tuples as lists)."""
    return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
