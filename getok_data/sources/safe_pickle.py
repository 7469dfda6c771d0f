"""Load REFER ``refs(<splitBy>).p`` pickles without executing anything.

REFER refs are plain lists of dicts holding str/int/list values, so an unpickler that refuses
*every* global (``find_class`` always raises) loads them, while a crafted pickle whose
``__reduce__`` would call ``os.system`` fails before anything runs.

The original files were written by Python 2 ``cPickle``: their ``str`` values arrive as bytes
that the default ASCII decoding may reject. On ``UnicodeDecodeError`` the file is re-read with
``encoding="bytes"`` and every bytes value is decoded as UTF-8, falling back to latin-1 per
string (plain ``encoding="latin1"`` would turn UTF-8 text into mojibake).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["UnsafePickleError", "safe_load", "REFER_REQUIRED_KEYS"]

#: Keys every ref must have (``file_name``, ``category_id``, ``sent_ids`` are optional here).
REFER_REQUIRED_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


class UnsafePickleError(ValueError):
    """The pickle asked for a global (class or function); refused, nothing was executed."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: str, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401
        raise UnsafePickleError(
            f"{self._path}: refusing to load global {module}.{name}: REFER refs hold only "
            "builtin lists, dicts, strings and numbers"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path}: refusing persistent id {pid!r}")


def _to_str(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _normalise(obj: Any) -> Any:
    """Recursively turn bytes into str (keys and values); tuples stay tuples."""
    if isinstance(obj, (bytes, bytearray)):
        return _to_str(bytes(obj))
    if isinstance(obj, dict):
        return {_normalise(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_normalise(v) for v in obj)
    return obj


def _load(data: bytes, path: str, encoding: str) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(data), path, encoding=encoding).load()
    except (UnsafePickleError, UnicodeDecodeError):
        raise
    except Exception as e:  # truncated / corrupt pickles raise many types
        raise ValueError(f"{path}: not a readable pickle: {type(e).__name__}: {e}") from e


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def _validate(refs: Any, path: str) -> list[dict]:
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of REFER refs, got {type(refs).__name__}")
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise ValueError(f"{path}: ref #{i} is a {type(ref).__name__}, expected a dict")
        missing = [k for k in REFER_REQUIRED_KEYS if k not in ref]
        if missing:
            raise ValueError(f"{path}: ref #{i} lacks REFER key(s) {missing}")
        for k in ("ref_id", "ann_id", "image_id"):
            if not _is_id(ref[k]):
                raise ValueError(
                    f"{path}: ref #{i} has {k}={ref[k]!r}; expected an int or str "
                    "(gRefCOCO-style list ann_ids are not supported by this source)"
                )
        if not isinstance(ref["split"], str):
            raise ValueError(f"{path}: ref #{i} has a non-string split {ref['split']!r}")
        sents = ref["sentences"]
        if not isinstance(sents, list) or not all(isinstance(s, dict) for s in sents):
            raise ValueError(f"{path}: ref #{i}: 'sentences' must be a list of dicts")
    return refs


def safe_load(path: str | os.PathLike) -> list[dict]:
    """Load and validate a REFER refs pickle; never imports or calls anything.

    Raises ``UnsafePickleError`` (a ``ValueError``) when the pickle requests a global, and
    ``ValueError`` naming the file (and ref index) when it is corrupt or not REFER-shaped.
    """
    p = str(Path(path))
    with open(p, "rb") as f:
        data = f.read()
    try:
        obj = _load(data, p, "ASCII")
    except UnicodeDecodeError:
        obj = _load(data, p, "bytes")
    return _validate(_normalise(obj), p)
