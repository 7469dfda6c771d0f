"""Reading a build folder: manifest, sidecars, shards and typed samples (never writes)."""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator

import numpy as np

from ..storage import Storage
from .manifest import Manifest, ManifestError, parse_sidecar
from .names import MANIFEST, is_shard_name, shard_index, sidecar_name
from .table import load_npz


class DatasetError(ValueError):
    """A build folder that cannot be read as asked; the message names what and where."""


def iter_tar(data: bytes) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group a tar's members into ``(key, {ext: bytes})`` by the key before the first dot."""
    key, members = None, {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for info in tf:
            if not info.isfile():
                continue
            k, _, ext = info.name.partition(".")
            if key is not None and k != key:
                yield key, members
                members = {}
            key = k
            members[ext] = tf.extractfile(info).read()
    if key is not None:
        yield key, members


@dataclass
class Sample:
    """One image of a build: its metadata (``.json``), original image bytes and candidate table."""

    key: str
    members: dict[str, bytes]
    shard: str = ""
    meta: dict = field(init=False)

    def __post_init__(self) -> None:
        if "json" not in self.members:
            raise DatasetError(f"{self.shard}/{self.key}: sample without .json")
        self.meta = json.loads(self.members["json"])

    @property
    def image_ext(self) -> str:
        return str(self.meta.get("image_ext", "jpg"))

    @property
    def image(self) -> bytes:
        """The original image bytes, as the source gave them."""
        try:
            return self.members[self.image_ext]
        except KeyError:
            raise DatasetError(f"{self.shard}/{self.key}: missing image member .{self.image_ext}") from None

    @cached_property
    def table(self) -> dict[str, np.ndarray]:
        """The candidate-table arrays (``.cand.npz``)."""
        if "cand.npz" not in self.members:
            raise DatasetError(f"{self.shard}/{self.key}: sample without .cand.npz")
        return load_npz(self.members["cand.npz"])

    @property
    def targets(self) -> list[dict]:
        return self.meta["targets"]

    @property
    def grid(self) -> tuple[int, int]:
        """``(n, m)`` of the build."""
        return int(self.meta["grid"]["n"]), int(self.meta["grid"]["m"])


class Dataset:
    """A build folder opened for reading: a missing folder is an error and is never created."""

    def __init__(self, url: str):
        self.url = str(url)
        try:
            self.storage = Storage(self.url, create=False)
        except FileNotFoundError:
            raise DatasetError(f"{self.url}: no such build folder") from None

    @cached_property
    def manifest(self) -> Manifest | None:
        """The manifest, or None when the folder has none; ``ManifestError`` when it is corrupt."""
        if not self.storage.exists(MANIFEST):
            return None
        return Manifest.from_bytes(self.storage.read_bytes(MANIFEST), self.storage.path(MANIFEST))

    def shard_names(self) -> list[str]:
        """The shard tars: the manifest's list when there is one, with any others on disk."""
        names = {n for n in self.storage.list("shard-*.tar") if is_shard_name(n)}
        try:
            if self.manifest is not None:
                names |= {s["shard"] for s in self.manifest.shards}
        except ManifestError:
            pass  # verify reports a corrupt manifest; readers use what is on disk
        return sorted(names)

    def sidecar(self, index: int) -> dict | None:
        """The sidecar of shard ``index``; None when absent; ``ManifestError`` when corrupt."""
        name = sidecar_name(index)
        if not self.storage.exists(name):
            return None
        return parse_sidecar(self.storage.read_bytes(name), self.storage.path(name))

    def sidecars(self) -> list[dict]:
        """Every readable sidecar in index order (corrupt ones raise ``ManifestError``)."""
        out = []
        for name in self.storage.list("shard-*.json"):
            index = shard_index(name)
            if index is not None:
                out.append(self.sidecar(index))
        return [s for s in out if s is not None]

    def read_shard(self, name: str) -> bytes:
        return self.storage.read_bytes(name)

    def shard_samples(self, name: str) -> Iterator[Sample]:
        """The samples of one shard, in tar order."""
        for key, members in iter_tar(self.read_shard(name)):
            yield Sample(key, members, name)

    def samples(self) -> Iterator[Sample]:
        """Every sample, shards in order, samples in tar order."""
        names = self.shard_names()
        if not names:
            raise DatasetError(f"{self.url}: no shard-*.tar found")
        for name in names:
            yield from self.shard_samples(name)

    def grid_n(self) -> int:
        """The build's grid size: from the manifest, else from the first sample."""
        if self.manifest is not None:
            return self.manifest.grid_n
        return next(self.samples()).grid[0]
