"""What every source shares: the ``Source`` interface, ordering, path safety, target decoding."""
from __future__ import annotations

import abc
import os
from numbers import Integral
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..masks import mask_box, mask_to_rle, segmentation_to_mask
from ..registry import Registry
from ..types import ErrorRecord, ImageRecord

__all__ = [
    "SOURCES",
    "Source",
    "MAX_IMAGE_SIDE",
    "id_sort_key",
    "record_sort_key",
    "check_image_size",
    "check_limit",
    "resolve_image_path",
    "decode_target_mask",
    "source_error",
]

#: Every source registers itself here (its options dataclass and a factory); see sources/__init__.py.
SOURCES = Registry("source")

#: Largest width/height accepted from annotation JSON (guards against absurd allocations).
MAX_IMAGE_SIDE = 1 << 15


class Source(abc.ABC):
    """A grounding source: yields one ``ImageRecord`` per (split, image), sorted by (split, image_id).

    Each source module declares a frozen options dataclass beside its class and registers both
    in :data:`SOURCES`.
    """

    name: str = ""

    @abc.abstractmethod
    def records(self) -> Iterator[ImageRecord]:
        """Yield the image records lazily, in (split, image_id) order."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Resolved options (JSON-serialisable) for the manifest."""


def id_sort_key(image_id: Any) -> tuple:
    """Numeric ids sort numerically and before string ids, which sort lexically."""
    if isinstance(image_id, Integral) and not isinstance(image_id, bool):
        return (0, int(image_id), "")
    return (1, 0, str(image_id))


def record_sort_key(split: str, image_id: Any) -> tuple:
    """Sort key for (split, image_id)."""
    return (str(split), id_sort_key(image_id))


def check_limit(limit: Any) -> int | None:
    """Validate the common ``limit`` option (None or an int >= 0)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 0:
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    return int(limit)


def check_image_size(width: Any, height: Any) -> str | None:
    """None when width/height are positive ints within ``MAX_IMAGE_SIDE``; else a reason."""
    for v in (width, height):
        if isinstance(v, bool) or not isinstance(v, Integral) or not 0 < v <= MAX_IMAGE_SIDE:
            return f"invalid image size in annotations: width={width!r}, height={height!r}"
    return None


def resolve_image_path(image_root: Path, file_name: Any) -> tuple[str | None, str | None]:
    """Resolve ``image_root / file_name`` safely: ``(path, None)`` or ``(None, reason)``.

    Refuses absolute names, ``..`` components and symlinks that resolve outside ``image_root``;
    a name that stays inside but does not exist gives ``"missing image file: <path>"``.
    Only ``stat``-level checks are made: the file is never opened.
    """
    if not isinstance(file_name, str) or not file_name or "\x00" in file_name:
        return None, f"invalid image file_name: {file_name!r}"
    rel = Path(file_name)
    if rel.is_absolute() or os.path.isabs(file_name) or ".." in rel.parts or ".." in file_name.split("\\"):
        return None, f"image path escapes --image-root: {file_name}"
    root = Path(image_root).resolve()
    candidate = root / rel
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError):  # symlink loops and the like
        return None, f"image path cannot be resolved: {file_name}"
    if resolved != root and root not in resolved.parents:
        return None, f"image path escapes --image-root: {file_name}"
    if not resolved.is_file():
        return None, f"missing image file: {candidate}"
    return str(resolved), None


def _polygon_outside(seg: Any, h: int, w: int) -> bool:
    """True when seg is a polygon list whose every point lies outside the image rectangle."""
    if not isinstance(seg, (list, tuple)) or not seg or isinstance(seg[0], dict):
        return False
    xs: list[float] = []
    ys: list[float] = []
    for part in seg:
        if isinstance(part, (list, tuple)):
            xs.extend(part[0::2])
            ys.extend(part[1::2])
    if not xs or not ys:
        return False
    return max(xs) <= 0 or min(xs) >= w or max(ys) <= 0 or min(ys) >= h


def decode_target_mask(seg: Any, h: int, w: int) -> tuple[np.ndarray, dict, list[float]]:
    """Decode one target's segmentation: ``(mask, rle, box)``; ``ValueError(reason)`` if unusable."""
    if seg is None:
        raise ValueError("annotation has no segmentation")
    try:
        mask = segmentation_to_mask(seg, h, w)
    except ValueError as e:
        raise ValueError(f"bad segmentation: {e}") from e
    box = mask_box(mask)
    if box is None:
        if _polygon_outside(seg, h, w):
            raise ValueError("mask entirely outside the image")
        raise ValueError("empty mask")
    return mask, mask_to_rle(mask), box


def source_error(
    source: str, split: str, image_id: Any, reason: str, ann_id: Any = None, ref_id: Any = None, detail: str = ""
) -> ErrorRecord:
    """An ``ErrorRecord`` with ``stage="source"``."""
    return ErrorRecord(
        source=source, split=split, image_id=image_id, reason=reason, stage="source",
        ann_id=ann_id, ref_id=ref_id, detail=detail,
    )
