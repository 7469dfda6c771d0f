"""Load REFER ``refs(<splitBy>).p`` pickles without executing anything.

REFER refs are plain lists of dicts holding str/int/list values, so an unpickler that refuses
*every* global (``find_class`` always raises) loads them, while a crafted pickle whose
``__reduce__`` would call ``os.system`` fails before anything runs.

The original files were written by Python 2 ``cPickle``: their ``str`` values arrive as bytes
that the default ASCII decoding may reject. On ``UnicodeDecodeError`` the file is re-read with
``encoding="bytes"`` and every bytes value is decoded as UTF-8, falling back to latin-1 per
string (plain ``encoding="latin1"`` would turn UTF-8 text into mojibake).

What a small file can cost is bounded: the pure-Python unpickler is used (its memo is a dict;
the C one allocates an array as long as the largest memo index), and the loaded object is
walked as a tree with a node budget linear in the file size, a depth cap and a cycle check, so
a shared-reference pickle that doubles per level, or one that holds itself, is refused with
``UnsafePickleError``. The price: loading takes about twice as long as with the C unpickler
(measured on an 8 MB refs file: 5.4 s against 2.9 s on a busy machine).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

from ..location import open_input

__all__ = ["UnsafePickleError", "safe_load", "load_refs", "ref_problem", "REFER_REQUIRED_KEYS"]

#: Keys every ref must have (``file_name``, ``category_id``, ``sent_ids`` are optional here).
REFER_REQUIRED_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


class UnsafePickleError(ValueError):
    """The pickle asked for a global (class or function); refused, nothing was executed."""


#: Caps that bound what a small file can cost. REFER refs nest 5 deep (list > ref > sentences >
#: sentence > tokens); real files hold fewer objects than bytes (each needs an opcode, or a
#: memo reference of at least 2 bytes).
MAX_DEPTH = 32
NODES_PER_BYTE = 2
MIN_NODES = 10_000


def _node_cap(size: int) -> int:
    return MIN_NODES + NODES_PER_BYTE * size


class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler (its memo is a dict, so a ``LONG_BINPUT 4000000000`` costs one
    entry, not a 32 GB array as in the C one), refusing every global, its memo capped."""

    def __init__(self, file: io.BufferedIOBase, path: str, size: int, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._path = path
        self._max_memo = _node_cap(size)
        self.dispatch = dict(self.dispatch)
        for op, name in ((pickle.PUT, "load_put"), (pickle.BINPUT, "load_binput"),
                         (pickle.LONG_BINPUT, "load_long_binput"), (pickle.MEMOIZE, "load_memoize")):
            self.dispatch[op[0]] = self._capped(getattr(pickle._Unpickler, name))  # type: ignore[attr-defined]

    def _capped(self, load: Any) -> Any:
        def run(unpickler: "_RestrictedUnpickler") -> None:
            load(unpickler)
            if len(unpickler.memo) > unpickler._max_memo:
                raise UnsafePickleError(f"{unpickler._path}: pickle memo holds more than "
                                        f"{unpickler._max_memo} entries, too many for a file of this size")
        return run

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


def _normalise(obj: Any, path: str, cap: int) -> Any:
    """Turn bytes into str (keys and values) as a tree; tuples stay tuples.

    A recursive walk with a node budget (``cap``: shared references that would expand a small
    file into GBs stop here), a depth cap and a cycle check (a self-referential pickle gives
    ``UnsafePickleError``, never ``RecursionError``).
    """
    count = 0

    def conv(o: Any, depth: int, stack: set[int]) -> Any:
        nonlocal count
        count += 1
        if count > cap:
            raise UnsafePickleError(f"{path}: the pickle expands to more than {cap} objects (shared "
                                    "references); a REFER refs file never does")
        if depth > MAX_DEPTH:
            raise UnsafePickleError(f"{path}: the pickle nests deeper than {MAX_DEPTH} levels")
        if isinstance(o, (bytes, bytearray)):
            return _to_str(bytes(o))
        if not isinstance(o, (dict, list, tuple)):
            return o
        if id(o) in stack:
            raise UnsafePickleError(f"{path}: the pickle is self-referential (a container holds itself)")
        stack.add(id(o))
        try:
            if isinstance(o, dict):
                return {conv(k, depth + 1, stack): conv(v, depth + 1, stack) for k, v in o.items()}
            items = [conv(v, depth + 1, stack) for v in o]
            return items if isinstance(o, list) else tuple(items)
        finally:
            stack.discard(id(o))

    return conv(obj, 0, set())


def _load(data: bytes, path: str, encoding: str) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(data), path, len(data), encoding=encoding).load()
    except (UnsafePickleError, UnicodeDecodeError):
        raise
    except RecursionError as e:
        raise UnsafePickleError(f"{path}: the pickle nests too deeply") from e
    except Exception as e:  # truncated / corrupt pickles raise many types
        raise ValueError(f"{path}: not a readable pickle: {type(e).__name__}: {e}") from e


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def ref_problem(ref: Any) -> str | None:
    """Why one ref cannot be used (None when it is REFER-shaped)."""
    if not isinstance(ref, dict):
        return f"is a {type(ref).__name__}, expected a dict"
    missing = [k for k in REFER_REQUIRED_KEYS if k not in ref]
    if missing:
        return f"lacks REFER key(s) {missing}"
    for k in ("ref_id", "ann_id", "image_id"):
        if not _is_id(ref[k]):
            return (f"has {k}={ref[k]!r}; expected an int or str "
                    "(gRefCOCO-style list ann_ids are not supported by this source)")
    if not isinstance(ref["split"], str):
        return f"has a non-string split {ref['split']!r}"
    sents = ref["sentences"]
    if not isinstance(sents, list) or not all(isinstance(s, dict) for s in sents):
        return "has 'sentences' that is not a list of dicts"
    return None


def load_refs(path: str | os.PathLike) -> tuple[list[dict], list[tuple[int, Any, str]]]:
    """Load a REFER refs pickle: ``(good refs, [(index, ref, reason), ...])``.

    One malformed ref does not refuse the file: it comes back with its index and reason so the
    source can quarantine it. A file that is not a list, is unsafe, or exceeds the size caps
    raises (``UnsafePickleError`` / ``ValueError`` naming the file).
    """
    p = str(path)
    with open_input(path) as f:  # a local path or an fsspec URL
        data = f.read()
    try:
        obj = _load(data, p, "ASCII")
    except UnicodeDecodeError:
        obj = _load(data, p, "bytes")
    refs = _normalise(obj, p, _node_cap(len(data)))
    if not isinstance(refs, list):
        raise ValueError(f"{p}: expected a list of REFER refs, got {type(refs).__name__}")
    good, bad = [], []
    for i, ref in enumerate(refs):
        problem = ref_problem(ref)
        if problem:
            bad.append((i, ref, problem))
        else:
            good.append(ref)
    return good, bad


def safe_load(path: str | os.PathLike) -> list[dict]:
    """Load and validate a REFER refs pickle; never imports or calls anything.

    Raises ``UnsafePickleError`` (a ``ValueError``) when the pickle requests a global or exceeds
    the memo/depth/size caps, and ``ValueError`` naming the file (and ref index) when it is
    corrupt or any ref is not REFER-shaped (:func:`load_refs` returns those instead).
    """
    good, bad = load_refs(path)
    if bad:
        i, _, problem = bad[0]
        raise ValueError(f"{Path(path)}: ref #{i} {problem}")
    return good
