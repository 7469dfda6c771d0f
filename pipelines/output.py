"""The output folder of a build: one writer at a time (a lock), resume checks, the final manifest.

- ``OutputLock``: ``build.lock`` created exclusively, naming the process that holds it; a lock
  left by a dead process on this host is taken over, a live one is an error naming it.
- ``prepare``: refuses a folder that holds shards of another config (unless ``force``, which
  clears it); a corrupt or half-written manifest is no obstacle (sidecars say what is done).
- ``finalize``: ``errors.jsonl`` and a ``complete`` manifest, both from the sidecars on disk.
"""
from __future__ import annotations

import json
import os
import socket
import time

from getok_data.config import BuildConfig
from getok_data.dataset import ERRORS, LOCK, MANIFEST, Manifest, ManifestError, json_bytes, parse_sidecar, shard_index
from getok_data.dataset.names import sidecar_name
from getok_data.stats import summarize
from getok_data.storage import TMP_SUFFIX, Storage


class BuildError(RuntimeError):
    """A build that must not go on (config mismatch, folder locked, too many errors); says why."""


class OutputLock:
    """``build.lock`` in the output folder for the duration of a build."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self.held = False

    def _owner(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def acquire(self) -> None:
        body = json.dumps(self._owner()).encode()
        if not self.storage.local:  # object stores: best effort (no exclusive create)
            if self.storage.exists(LOCK):
                text = self.storage.read_bytes(LOCK).decode(errors="replace")
                try:
                    owner = json.loads(text)
                except ValueError:
                    owner = {}
                if not (isinstance(owner, dict) and self._gone(owner)):  # a killed build of this host: taken over
                    raise BuildError(f"{self.storage.url} is locked by another build ({LOCK}: {text}); "
                                     "remove it if stale")
            self.storage.write_bytes(LOCK, body)
            self.held = True
            return
        path = self.storage.path(LOCK)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale(path):
                    os.remove(path)
                    continue
                raise BuildError(f"{self.storage.url} is being written by another build ({self._describe(path)}); "
                                 f"wait for it to finish, or remove {path} if that process is gone") from None
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            self.held = True
            return
        raise BuildError(f"could not take {path}")

    @staticmethod
    def _read(path: str) -> dict:
        try:
            with open(path, "rb") as f:
                return json.loads(f.read() or b"{}")
        except (OSError, ValueError):
            return {}

    def _describe(self, path: str) -> str:
        o = self._read(path)
        return f"pid {o.get('pid', '?')} on {o.get('host', '?')} since {o.get('since', '?')}"

    def _stale(self, path: str) -> bool:
        """A lock whose process is gone (same host), or unreadable for over a minute."""
        o = self._read(path)
        if not o:
            return time.time() - os.path.getmtime(path) > 60
        return self._gone(o)

    @staticmethod
    def _gone(owner: dict) -> bool:
        """The lock's process ran on this host and no longer exists."""
        if owner.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, KeyError, TypeError):
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.storage.remove(LOCK)
            self.held = False

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_manifest(storage: Storage) -> Manifest | None:
    """The manifest, or None when absent or unreadable (a crash mid-write of an old version)."""
    try:
        return Manifest.from_bytes(storage.read_bytes(MANIFEST), storage.path(MANIFEST))
    except (FileNotFoundError, ManifestError):
        return None


def foreign_sidecars(storage: Storage, chash: str) -> list[str]:
    """Sidecars in the folder written by another config (or unreadable)."""
    out = []
    for name in storage.list("shard-*.json"):
        if shard_index(name) is None:
            continue
        try:
            if parse_sidecar(storage.read_bytes(name), name)["config_hash"] != chash:
                out.append(name)
        except (FileNotFoundError, ManifestError):
            out.append(name)
    return out


def prepare(storage: Storage, cfg: BuildConfig, chash: str, force: bool) -> None:
    """Check the folder against this config and mark the build running (the lock is held).

    A folder whose manifest or shards belong to another config is refused unless ``force``,
    which clears it. A manifest of another config with no shards (a command that failed before
    building anything) is simply replaced.
    """
    old = read_manifest(storage)
    foreign = foreign_sidecars(storage, chash)
    if foreign and not force:
        other = old.config_hash[:12] if old and old.config_hash != chash else "?"
        raise BuildError(
            f"{storage.url} holds shards of another config (hash {other} != {chash[:12]}; e.g. {foreign[0]}); "
            f"use --force to rebuild it, or choose another --out")
    if force and (foreign or (old and old.config_hash != chash)):
        for name in storage.list("shard-*") + [ERRORS, MANIFEST]:
            storage.remove(name)
    for name in storage.list(f"*{TMP_SUFFIX}"):
        storage.remove(name)  # half-written files of an interrupted run (we hold the lock)
    write_manifest(storage, cfg, chash, "running", [])


def write_manifest(storage: Storage, cfg: BuildConfig, chash: str, status: str, sidecars: list[dict],
                   summary: dict | None = None, planned: int | None = None, fingerprint: str | None = None) -> None:
    manifest = Manifest(
        status=status, config=cfg.to_dict(), output_config=cfg.output_dict(), config_hash=chash,
        shards=[{k: s[k] for k in ("shard", "sha256", "bytes", "images", "images_written", "targets")}
                | {"sidecar": sidecar_name(s["index"])} for s in sidecars],
        summary=summary, planned_shards=planned, plan_fingerprint=fingerprint)
    storage.write_bytes(MANIFEST, manifest.to_bytes())


def finalize(storage: Storage, cfg: BuildConfig, chash: str, sidecars: list[dict], num_shards: int,
             fingerprint: str | None = None) -> dict:
    """errors.jsonl, the manifest and the summary, all from the sidecars on disk."""
    for name in storage.list("shard-*"):
        index = shard_index(name)
        if index is not None and index >= num_shards:
            storage.remove(name)  # left by an earlier, larger run of the same config
    sidecars = sorted(sidecars, key=lambda s: s["index"])
    storage.write_bytes(ERRORS, b"".join(json_bytes(e) + b"\n" for s in sidecars for e in s["errors"]))
    summary = summarize(sidecars)
    write_manifest(storage, cfg, chash, "complete", sidecars, summary, planned=num_shards, fingerprint=fingerprint)
    return summary
