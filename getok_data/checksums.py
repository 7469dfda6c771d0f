"""sha256 of bytes and of files (one cache per process, keyed by path, size and mtime)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_FILE_CACHE: dict[tuple[str, int, int], str] = {}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, streamed; a multi-GB checkpoint is hashed once per process."""
    real = Path(path).resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key not in _FILE_CACHE:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _FILE_CACHE[key] = h.hexdigest()
    return _FILE_CACHE[key]
