"""Segmenters: image -> :class:`CandidateTable` (one mask per grid point, deduplicated).

A segmenter is one module that declares a frozen options dataclass beside its class and
registers both in :data:`SEGMENTERS`; this file only says which module registers which name,
so torch / segment-anything are imported only when a ``sam`` segmenter is asked for.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..options import build, check
from .base import SEGMENTERS, CandidateTable, Segmenter, SegmenterBase, grid_points, points_to_table, table_shape

SEGMENTERS.declare("sam", "getok_data.segmenters.sam")
SEGMENTERS.declare("sam2", "getok_data.segmenters.sam2")  # the sam2 package (SAM 2.1 Hiera)
SEGMENTERS.declare("superpixel", "getok_data.segmenters.superpixel")


def build_segmenter(cfg: Any) -> Segmenter:
    """A segmenter from a ``PluginConfig`` (name + options) or a mapping ``{"name": ..., **options}``
    (checked like a config file: unknown keys and wrong types raise ``ConfigError``)."""
    if isinstance(cfg, Mapping):
        raw = dict(cfg)
        plugin = SEGMENTERS.get(str(raw.pop("name", "superpixel")))
        return plugin.factory(build(plugin.options, check(plugin.options, raw, "segmenter.", "arguments"),
                                    "segmenter.", "arguments"))
    return SEGMENTERS.create(cfg.name, cfg.options)


__all__ = ["CandidateTable", "SEGMENTERS", "Segmenter", "SegmenterBase", "build_segmenter", "grid_points",
           "points_to_table", "table_shape"]
