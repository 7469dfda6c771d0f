"""Output folders on a local path or any fsspec URL (object storage on a cluster)."""
from __future__ import annotations

import os
from pathlib import Path

import fsspec

from .location import storage_options

TMP_SUFFIX = ".tmp"  # every write goes to NAME.tmp first; a run removes leftovers (it holds the lock)


class Storage:
    """A folder: read/write/list/remove by name, local or remote. Every write is atomic."""

    def __init__(self, url: str | os.PathLike, create: bool = True):
        """``create=False`` opens an existing folder read-only (``FileNotFoundError`` if absent)."""
        self.url = str(url)
        protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **storage_options(protocol))
        self.local = self.fs.protocol in ("file", "local") or "file" in (self.fs.protocol or ())
        if self.local:
            self.root = str(Path(self.root).resolve())
            if os.path.exists(self.root) and not os.path.isdir(self.root):
                raise NotADirectoryError(f"{self.url} is a file, not a folder")
        if create:
            self.fs.makedirs(self.root, exist_ok=True)
        elif not self.fs.isdir(self.root):
            raise FileNotFoundError(self.url)

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def read_bytes(self, name: str) -> bytes:
        try:
            with self.fs.open(self.path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as e:
            if not self.exists(name):
                raise FileNotFoundError(self.path(name)) from e
            raise

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``name`` atomically: a reader sees the old file or the whole new one, never a part."""
        tmp = name + TMP_SUFFIX
        if self.local:
            try:
                with open(self.path(tmp), "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())  # so a rename never exposes a partial file after a crash
                os.replace(self.path(tmp), self.path(name))
            except BaseException:
                try:
                    os.remove(self.path(tmp))
                except OSError:
                    pass
                raise
        else:  # object stores make a single put atomic
            with self.fs.open(self.path(name), "wb") as f:
                f.write(data)

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self.path(name))

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(p.rsplit("/", 1)[-1] for p in self.fs.glob(self.path(pattern)))
