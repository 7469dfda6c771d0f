"""What a build will do: the source named by the config, cut into fixed blocks of sorted images.

Planning reads annotations only for a source that defers its per-image work (``Source.plan``
yields ``PlannedImage``s; the shard job resolves them on the worker that builds the shard);
other sources plan with their full records.
"""
from __future__ import annotations

import itertools
from typing import Iterator

from getok_data.config import BuildConfig
from getok_data.sources import SOURCES, Source
from getok_data.types import ImageRecord, PlannedImage


def make_source(cfg: BuildConfig) -> Source:
    return SOURCES.create(cfg.source.name, cfg.source.options)


def plan(source: Source, images_per_shard: int) -> Iterator[tuple[int, list[ImageRecord | PlannedImage]]]:
    """Consecutive fixed-size blocks of the source's sorted plan, numbered from 0."""
    it = iter(source.plan())
    for index in itertools.count():
        block = list(itertools.islice(it, images_per_shard))
        if not block:
            return
        yield index, block
