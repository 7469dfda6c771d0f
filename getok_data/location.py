"""Where inputs are read from: a local path, or any fsspec URL (``s3://``, ``gs://``, ``hf://``,
``http(s)://``, ``file://``), behind the part of ``pathlib.Path``'s interface the sources use.

``location("data/refer")`` is a plain ``Path`` (local behaviour is exactly what it was: symlinks
resolved and checked, ``os`` calls); ``location("s3://bucket/refer")`` is a :class:`RemotePath` with
the same methods (``/``, ``name``, ``parent``, ``is_file``, ``is_dir``, ``glob``, ``read_bytes``,
``open``, ``resolve``, ``is_relative_to``), its names normalised (no ``..`` can climb out of a root:
an object store has no symlinks, so the normalised key is the one read). Credentials come from the
filesystem's usual environment (for S3: ``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for MinIO and
other S3-compatible stores); anything else is passed as fsspec storage options in the JSON of the
environment variable ``GETOK_STORAGE_OPTIONS`` (``getok-data build --storage-options``), which the
Ray runner hands to its actors. Options are never written into a build's manifest.
"""
from __future__ import annotations

import json
import os
import posixpath
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterator, Union

import fsspec

ENV = "GETOK_STORAGE_OPTIONS"


def storage_options(protocol: str) -> dict:
    """The fsspec options for ``protocol`` from ``GETOK_STORAGE_OPTIONS``: either one dict for every
    protocol, or ``{"s3": {...}, "http": {...}}`` keyed by protocol."""
    raw = os.environ.get(ENV)
    if not raw:
        return {}
    try:
        opts = json.loads(raw)
    except ValueError:
        raise ValueError(f"{ENV} is not JSON: {raw[:80]!r}") from None
    if not isinstance(opts, dict):
        raise ValueError(f"{ENV} must be a JSON object")
    if protocol in opts and isinstance(opts[protocol], dict):
        return opts[protocol]
    protocols = {"s3", "gs", "gcs", "hf", "http", "https", "file", "az", "abfs"}
    return {k: v for k, v in opts.items() if k not in protocols}


def is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value and not value.startswith("file://")


@lru_cache(maxsize=32)
def _filesystem(protocol: str, options_json: str) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem(protocol, **json.loads(options_json))


class RemotePath:
    """A file or folder at an fsspec URL, read only, with ``pathlib.Path``'s methods the sources use."""

    def __init__(self, url: str):
        protocol, _, rest = url.partition("://")
        self.protocol = protocol
        self._http = protocol in ("http", "https")
        # keep the host for http(s); normalise the rest so "a/../b" cannot name something else
        norm = posixpath.normpath("/" + rest).lstrip("/") if rest else ""
        if rest.endswith("/") and norm:
            norm = norm.rstrip("/")
        self.key = norm
        self.url = f"{protocol}://{norm}"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        opts = storage_options(self.protocol)
        return _filesystem(self.protocol, json.dumps(opts, sort_keys=True))

    @property
    def _target(self) -> str:
        """What the filesystem is asked for: the whole URL for http, the key elsewhere."""
        return self.url if self._http else self.key

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __truediv__(self, part: str | os.PathLike) -> "RemotePath":
        return RemotePath(f"{self.protocol}://{self.key}/{str(part).lstrip('/')}")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(f"{self.protocol}://{posixpath.dirname(self.key)}")

    @property
    def parents(self) -> list["RemotePath"]:
        out, p = [], self
        while "/" in p.key:
            p = p.parent
            out.append(p)
        return out

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.key.split("/"))

    def with_name(self, name: str) -> "RemotePath":
        return self.parent / name

    def with_suffix(self, suffix: str) -> "RemotePath":
        return self.with_name(self.stem + suffix)

    def relative_to(self, other: "RemotePath") -> PurePosixPath:
        if not self.is_relative_to(other):
            raise ValueError(f"{self.url} is not under {other}")
        return PurePosixPath(self.key[len(other.key):].lstrip("/"))

    def as_posix(self) -> str:
        return self.url

    def resolve(self) -> "RemotePath":
        return self  # no symlinks in an object store; the key is normalised already

    def is_relative_to(self, other: "RemotePath | Path") -> bool:
        return isinstance(other, RemotePath) and (self.url == other.url or self.url.startswith(other.url + "/"))

    def exists(self) -> bool:
        return bool(self.fs.exists(self._target))

    def is_file(self) -> bool:
        try:
            return bool(self.fs.isfile(self._target))
        except (OSError, ValueError):
            return False

    def is_dir(self) -> bool:
        if self._http:  # an http "folder" is a prefix: it exists when the server answers for it
            return True
        try:
            return bool(self.fs.isdir(self._target))
        except (OSError, ValueError):
            return False

    def glob(self, pattern: str) -> Iterator["RemotePath"]:
        if self._http:
            raise ValueError(f"{self.url}: an http(s) location cannot be listed; name the files")
        for hit in sorted(self.fs.glob(f"{self.key}/{pattern}")):
            yield RemotePath(f"{self.protocol}://{hit}")

    def rglob(self, pattern: str) -> Iterator["RemotePath"]:
        return self.glob(f"**/{pattern}")

    def iterdir(self) -> Iterator["RemotePath"]:
        for hit in sorted(self.fs.ls(self.key, detail=False)):
            yield RemotePath(f"{self.protocol}://{hit}")

    def open(self, mode: str = "rb", encoding: str | None = None) -> IO:
        if "w" in mode or "a" in mode:
            raise PermissionError(f"{self.url}: inputs are read only")
        f = self.fs.open(self._target, "rb")
        if "b" in mode:
            return f
        import io

        return io.TextIOWrapper(f, encoding=encoding or "utf-8")

    def read_bytes(self) -> bytes:
        with self.open("rb") as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)


Location = Union[Path, RemotePath]


def location(value: str | os.PathLike | RemotePath) -> Location:
    """A local ``Path`` or a :class:`RemotePath` (``file://`` URLs become local paths)."""
    if isinstance(value, (Path, RemotePath)):
        return value
    text = os.fspath(value)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    return RemotePath(text) if is_url(text) else Path(text)


def open_input(path: str | os.PathLike | RemotePath, mode: str = "rb") -> IO:
    """Open an input file (a local path or an fsspec URL) for reading."""
    loc = location(path)
    return loc.open(mode) if isinstance(loc, RemotePath) else open(loc, mode)


__all__ = ["ENV", "Location", "RemotePath", "location", "open_input", "is_url", "storage_options"]
