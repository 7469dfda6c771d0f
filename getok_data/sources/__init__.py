"""Grounding sources: ``get_source(name, **options)`` -> a ``Source`` yielding ``ImageRecord``s.

Names: ``synthetic`` (embedded default, nothing to download), ``refcoco``, ``refcoco+``,
``refcocog`` (REFER layout), ``coco`` (COCO instances / person-keypoints JSON), ``tusimple`` and
``culane`` (lanes as ``<pl>`` polylines).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .base import Source
from .coco import CocoSource
from .refer import ReferSource
from .safe_pickle import UnsafePickleError, safe_load
from .synthetic import DEFAULT_SIZES, SyntheticSource
from .culane import CulaneSource
from .tusimple import TusimpleSource

__all__ = [
    "get_source", "source_names", "Source", "SyntheticSource", "ReferSource", "CocoSource",
    "UnsafePickleError", "safe_load", "DEFAULT_SIZES",
]

_REGISTRY: dict[str, tuple[Callable[..., Source], tuple[str, ...]]] = {
    "synthetic": (SyntheticSource, SyntheticSource.OPTIONS),
    "refcoco": (partial(ReferSource, "refcoco"), ReferSource.OPTIONS),
    "refcoco+": (partial(ReferSource, "refcoco+"), ReferSource.OPTIONS),
    "refcocog": (partial(ReferSource, "refcocog"), ReferSource.OPTIONS),
    "coco": (CocoSource, CocoSource.OPTIONS),
    "tusimple": (TusimpleSource, TusimpleSource.OPTIONS),
    "culane": (CulaneSource, CulaneSource.OPTIONS),
}


def source_names() -> list[str]:
    """The names ``get_source`` accepts."""
    return list(_REGISTRY)


def get_source(name: str, **options: Any) -> Source:
    """Build a source by name; unknown options raise ``TypeError`` naming all of them.

    Options per source are listed in each class's ``OPTIONS`` (see ``SyntheticSource``,
    ``ReferSource``, ``CocoSource``); an unknown name raises ``ValueError``.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown source {name!r}; expected one of {source_names()}")
    factory, allowed = _REGISTRY[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"source {name!r} got unknown option(s) {unknown}; allowed: {list(allowed)}")
    return factory(**options)
