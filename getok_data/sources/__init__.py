"""Grounding sources: each yields one ``ImageRecord`` per image, sorted by (split, image_id).

A source is one module that declares a frozen options dataclass beside its class and registers
both in :data:`SOURCES`; this file only says which module registers which name.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .base import SOURCES, Source
from .safe_pickle import UnsafePickleError, safe_load
from .synthetic import DEFAULT_SIZES, SyntheticSource

SOURCES.declare("synthetic", "getok_data.sources.synthetic")
for _name in ("refcoco", "refcoco+", "refcocog"):
    SOURCES.declare(_name, "getok_data.sources.refer")
SOURCES.declare("coco", "getok_data.sources.coco")
SOURCES.declare("grefcoco", "getok_data.sources.grefcoco")  # gRefCOCO: multi- and no-target refs
SOURCES.declare("reasonseg", "getok_data.sources.reasonseg")  # LISA's ReasonSeg, with ignore regions
SOURCES.declare("hf", "getok_data.sources.hf")  # Hugging Face parquet / arrow sets, images embedded
SOURCES.declare("tusimple", "getok_data.sources.tusimple")  # lanes as <pl> polylines
SOURCES.declare("culane", "getok_data.sources.culane")  # lanes as <pl> polylines
SOURCES.declare("vg", "getok_data.sources.vg")  # Visual Genome 1.2 region descriptions (captioning)
SOURCES.declare("humanref", "getok_data.sources.humanref")  # HumanRef: multi-instance person referring

__all__ = ["SOURCES", "get_source", "source_names", "Source", "SyntheticSource", "UnsafePickleError",
           "safe_load", "DEFAULT_SIZES"]


def source_names() -> list[str]:
    """The names ``get_source`` accepts."""
    return SOURCES.names()


def get_source(name: str, **options: Any) -> Source:
    """Build a source by name from keyword options (its options dataclass's fields).

    An unknown name raises ``ValueError``; unknown options raise ``TypeError`` naming them.
    """
    plugin = SOURCES.get(name)
    allowed = [f.name for f in dataclasses.fields(plugin.options)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"source {name!r} got unknown option(s) {unknown}; allowed: {allowed}")
    return plugin.factory(plugin.options(**options))
