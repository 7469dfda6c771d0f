"""Writing a build folder: deterministic tar bytes, canonical JSON, shard + sidecar written atomically.

Tar members get a fixed mtime, uid/gid 0, empty owner names and mode 0644, in the order the
caller gives (sorted keys, then sorted extensions). A shard is written under a temporary name
and renamed when complete; its sidecar ``shard-NNNNNN.json`` (with the sha256) is written last,
so a sidecar whose checksum agrees proves its shard complete.
"""
from __future__ import annotations

import io
import json
import tarfile
from typing import Iterable

from ..checksums import sha256
from ..storage import Storage
from .manifest import ManifestError, parse_sidecar
from .names import shard_name, sidecar_name

MTIME = 0  # fixed member mtime (1970-01-01) so bytes do not depend on when we ran


def json_bytes(obj, strict: bool = False) -> bytes:
    """Canonical JSON: sorted keys, compact, UTF-8.

    A lone surrogate (text that is not valid Unicode, so not encodable as UTF-8) is written as
    its JSON escape ``\\udcff`` so sidecars and ``errors.jsonl`` can always be written; with
    ``strict`` (sample members) it raises ``UnicodeEncodeError`` instead. Valid text gives the
    same bytes either way.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "strict" if strict else "backslashreplace")


def tar_bytes(samples: Iterable[tuple[str, dict[str, bytes]]]) -> bytes:
    """A tar of ``(key, {ext: bytes})`` samples, members ``key.ext`` with fixed headers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for key, members in samples:
            if "." in key or "/" in key:
                raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
            for ext in sorted(members):
                data = members[ext]
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = MTIME
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_shard(storage: Storage, index: int, data: bytes, sidecar: dict) -> dict:
    """Write a shard atomically (temp name, rename), then its sidecar with the checksum."""
    sidecar = dict(sidecar, shard=shard_name(index), sha256=sha256(data), bytes=len(data))
    storage.write_bytes(shard_name(index), data)
    storage.write_bytes(sidecar_name(index), json_bytes(sidecar))
    return sidecar


def shard_is_complete(storage: Storage, index: int, config_hash: str) -> dict | None:
    """The sidecar if shard ``index`` was built with ``config_hash`` and its checksum agrees; else None."""
    try:
        sidecar = parse_sidecar(storage.read_bytes(sidecar_name(index)), sidecar_name(index))
        if sidecar["config_hash"] != config_hash:
            return None  # a stale shard of another config: rebuilt, never reused
        data = storage.read_bytes(shard_name(index))
    except (FileNotFoundError, ManifestError):
        return None
    return sidecar if sidecar.get("sha256") == sha256(data) else None
