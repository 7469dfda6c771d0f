"""What the lane sources share: an image's size from its header and lanes -> polyline targets."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from PIL import Image

from ..lanes import clean_lane, lane_mask, lane_rank_sentences
from ..location import open_input
from ..masks import mask_box, mask_to_rle
from ..types import ErrorRecord, ImageRecord, Target
from .base import check_image_size


def image_size(path: str) -> tuple[int, int] | str:
    """``(width, height)`` from the image header (nothing decoded), or the reason it failed."""
    try:
        with open_input(path) as f, Image.open(f) as im:
            w, h = im.size
    except Exception as e:  # PIL raises many types for a bad header
        return f"cannot read image header {path}: {type(e).__name__}: {e}"
    return check_image_size(w, h) or (int(w), int(h))


def add_lane_targets(rec: ImageRecord, lanes: Sequence[tuple[int, Sequence[Sequence[float]]]],
                     err: Callable[..., ErrorRecord]) -> None:
    """Append one ``lane{slot}`` target per usable lane to ``rec`` (bad lanes become errors).

    ``lanes`` holds ``(slot, points)``: the lane's index in its annotation and its ``(x, y)``
    points. Sentences name each lane's place from the left (:func:`lane_rank_sentences`).
    """
    kept: list[tuple[int, list[tuple[float, float]], dict, list[float]]] = []
    for slot, points in lanes:
        try:
            pts = clean_lane(points, rec.width, rec.height)
            mask = lane_mask(pts, rec.width, rec.height)
            box = mask_box(mask)
            if box is None:
                raise ValueError("lane mask is empty")
        except ValueError as e:
            rec.errors.append(err(f"lane {slot}: {e}", ann_id=slot))
            continue
        kept.append((slot, pts, mask_to_rle(mask), box))
    sentences = lane_rank_sentences([k[1] for k in kept], rec.height)
    for (slot, pts, rle, box), sent in zip(kept, sentences):
        rec.targets.append(Target(
            target_id=f"lane{slot}", sentences=[sent], category="lane", mask_rle=rle, box=box,
            ann_id=slot, polyline=[[float(x), float(y)] for x, y in pts],
        ))


def image_unusable(rec: ImageRecord, slots: Sequence[int], reason: str, err: Callable[..., ErrorRecord]) -> None:
    """The frame's image cannot be used: one image-level error plus one per lane it held, so
    the lost lanes count in the error rate."""
    rec.errors.append(err(reason, detail=f"{len(slots)} lane(s) of this frame not built"))
    rec.errors += [err(f"lane {s}: not built: the frame's image is unusable", ann_id=s) for s in slots]


def lane_image_id(rel_path: Any) -> str:
    """A lane frame's image id: its path relative to the data root, without the extension."""
    s = str(rel_path).replace("\\", "/").lstrip("/")
    return s.rsplit(".", 1)[0] if "." in s.rsplit("/", 1)[-1] else s
