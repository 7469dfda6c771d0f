"""Evaluation metrics: mask gIoU / cIoU, box Acc@0.5 / Acc@0.8, point hit rate, format rate.

- ``mask_giou``: mean over examples of the mask IoU (at the candidate table's resolution, against
  ``TableDecoder.gt(mask_rle)``); an unparsable or empty answer scores 0.
- ``mask_ciou``: sum of intersections / sum of unions over all examples.
- ``box_acc50`` / ``box_acc80``: fraction of examples whose box IoU (pixel boxes, ``[x0, y0, x1,
  y1]``) is >= 0.5 / 0.8.
- ``point_hit``: fraction of predicted points (pixel positions, sampled at ``floor(x), floor(y)``)
  inside the GT mask at image resolution.
- ``format_ok``: fraction of answers (every turn) that parse to the form their prompt asks for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..tokens.rules import box_iou

XYXY = tuple[float, float, float, float]


def mask_counts(pred: np.ndarray | None, gt: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts; a missing prediction is an empty mask."""
    if pred is None:
        return 0, int(np.count_nonzero(gt))
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def point_in_mask(xy: tuple[float, float] | None, gt: np.ndarray) -> bool:
    """Whether the pixel holding position ``xy`` is in ``gt`` (bool ``[H, W]``); off-image is out."""
    if xy is None:
        return False
    c, r = math.floor(xy[0]), math.floor(xy[1])
    return 0 <= r < gt.shape[0] and 0 <= c < gt.shape[1] and bool(gt[r, c])


@dataclass
class Meter:
    """Accumulates per-example results; :meth:`summary` gives the metric dictionary."""

    inter: list[int] = field(default_factory=list)
    union: list[int] = field(default_factory=list)
    box_ious: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    formats: list[bool] = field(default_factory=list)

    def add_mask(self, pred: np.ndarray | None, gt: np.ndarray) -> float:
        i, u = mask_counts(pred, gt)
        self.inter.append(i)
        self.union.append(u)
        return i / u if u else 0.0

    def add_box(self, pred: XYXY | None, gt: XYXY) -> float:
        iou = box_iou(pred, gt)
        self.box_ious.append(iou)
        return iou

    def add_point(self, xy: tuple[float, float] | None, gt: np.ndarray) -> bool:
        hit = point_in_mask(xy, gt)
        self.hits.append(hit)
        return hit

    def add_format(self, ok: bool) -> None:
        self.formats.append(bool(ok))

    def summary(self) -> dict:
        ious = [i / u if u else 0.0 for i, u in zip(self.inter, self.union)]
        mean = lambda xs: float(np.mean(xs)) if len(xs) else 0.0
        box = np.array(self.box_ious)
        return {
            "mask_giou": mean(ious),
            "mask_ciou": float(sum(self.inter) / sum(self.union)) if sum(self.union) else 0.0,
            "box_acc50": mean(box >= 0.5),
            "box_acc80": mean(box >= 0.8),
            "point_hit": mean(self.hits),
            "format_ok": mean(self.formats),
            "n": len(self.inter),
        }
