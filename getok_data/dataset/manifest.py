"""``manifest.json`` and ``shard-N.json`` (sidecar) as types, parsed with errors that name the file."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TypedDict

SAMPLE_FORMAT_VERSION = 2  # of a sample's .json and .cand.npz (docs/FORMAT.md section 4); 1 is still read
MANIFEST_FORMAT_VERSION = 1  # of manifest.json and the sidecars
STATUSES = ("running", "complete")


class ManifestError(ValueError):
    """A manifest or sidecar that cannot be read; the message names the file."""


def _parse(data: bytes, where: str) -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


@dataclass
class Manifest:
    """What a build folder holds: its resolved config, the hash that guards resumes, its shards."""

    status: str
    config: dict
    config_hash: str
    output_config: dict = field(default_factory=dict)
    shards: list[dict] = field(default_factory=list)  # shard, sidecar, sha256, bytes, images, ...
    summary: dict | None = None
    format_version: int = MANIFEST_FORMAT_VERSION
    planned_shards: int | None = None
    #: sha256 of the config hash and the annotation files' names, sizes and times: a re-run whose
    #: inputs have the same fingerprint is a no-op without planning again (None: not known)
    plan_fingerprint: str | None = None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def grid_n(self) -> int:
        return int(self.config["grid"]["n"])

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "manifest.json") -> "Manifest":
        obj = _parse(data, where)
        for key in ("status", "config", "config_hash"):
            if key not in obj:
                raise ManifestError(f"{where}: missing key {key!r}")
        if obj["status"] not in STATUSES or not isinstance(obj["config"], dict):
            raise ManifestError(f"{where}: bad status {obj['status']!r} or config")
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**known)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str).encode()


class Sidecar(TypedDict, total=False):
    """``shard-NNNNNN.json``: one shard's counts, quarantine records and checksum (docs/FORMAT.md)."""

    index: int
    config_hash: str
    shard: str
    sha256: str
    bytes: int
    keys: list[str]
    images: int
    images_written: int
    targets_seen: int
    targets: int
    targets_seg_null: int
    token_counts: list[int]
    token_ious: list[float]
    regions: dict[str, int]
    image_bytes: int
    errors: list[dict]
    seconds: float


def parse_sidecar(data: bytes, where: str) -> Sidecar:
    """A sidecar's fields (see docs/FORMAT.md); ``ManifestError`` naming ``where`` if unreadable."""
    obj = _parse(data, where)
    missing = [k for k in ("index", "config_hash", "sha256", "images", "targets", "errors") if k not in obj]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {missing}")
    return obj
