"""Records that flow between stages: what a source yields and what a build writes.

Plain dataclasses (no Ray, no torch) so every stage and every runner can share them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ErrorRecord:
    """One quarantined item: an image or a target that could not be used, and why.

    Written one per line to ``errors.jsonl``; never silently dropped.
    """

    source: str
    split: str
    image_id: Any
    reason: str
    stage: str = "source"  # source | read | segment | annotate
    ann_id: Any = None
    ref_id: Any = None
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Target:
    """One object to ground: a GT mask plus the expressions that refer to it."""

    target_id: str  # unique within its image, e.g. "ref40373" or "ann2134523"
    sentences: list[str]
    category: str
    mask_rle: dict  # COCO RLE, counts as str, size [h, w] == image size
    box: list[float]  # [x0, y0, x1, y1] in pixels, from the mask
    ann_id: Any = None
    ref_id: Any = None
    sent_ids: list[Any] = field(default_factory=list)
    # Optional keypoints [[x, y, v], ...] (COCO order) and their names.
    keypoints: list[list[float]] | None = None
    keypoint_names: list[str] | None = None
    # Optional polyline [[x, y], ...] in pixels (lanes: ordered, clipped; getok_data/lanes.py).
    polyline: list[list[float]] | None = None


@dataclass
class ImageRecord:
    """One image with all its targets, as a source yields it.

    At most one of ``image_path`` / ``image_bytes`` is set (neither: an image-level error
    is in ``errors``). ``errors`` holds the
    target-level problems found while loading (the bad targets are not in ``targets``).
    """

    source: str
    split: str
    image_id: Any
    width: int
    height: int
    targets: list[Target]
    image_path: str | None = None
    image_bytes: bytes | None = None
    image_ext: str = "jpg"  # member extension for the original bytes: jpg or png
    errors: list[ErrorRecord] = field(default_factory=list)

    @property
    def key(self) -> str:
        return sample_key(self.source, self.split, self.image_id)


def sample_key(source: str, split: str, image_id: Any) -> str:
    """WebDataset key ``{source}_{split}_{image_id}`` using only [A-Za-z0-9_-]."""
    raw = f"{source}_{split}_{image_id}".replace("+", "plus")
    return "".join(c if (c.isascii() and (c.isalnum() or c in "-_")) else "-" for c in raw)
