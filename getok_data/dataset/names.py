"""File names of a build folder, both ways (name -> index and index -> name)."""
from __future__ import annotations

import re

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
LOCK = "build.lock"
_SHARD_RE = re.compile(r"^shard-(\d{6})\.(tar|json)$")


def shard_name(index: int) -> str:
    """``shard-NNNNNN.tar``."""
    return f"shard-{index:06d}.tar"


def sidecar_name(index: int) -> str:
    """``shard-NNNNNN.json``: the shard's counts, errors and sha256, written after the tar."""
    return f"shard-{index:06d}.json"


def shard_index(name: str) -> int | None:
    """The index of a shard or sidecar file name; None for any other name."""
    m = _SHARD_RE.match(name)
    return int(m.group(1)) if m else None


def is_shard_name(name: str) -> bool:
    return shard_index(name) is not None and name.endswith(".tar")
