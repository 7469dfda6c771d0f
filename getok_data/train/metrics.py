"""Evaluation metrics: mask gIoU / cIoU, box Acc@0.5 / Acc@0.8, point hit rate, format rate.

- ``mask_giou``: mean over examples of the mask IoU (at the candidate table's resolution, against
  ``TableDecoder.gt(mask_rle)``); an unparsable or empty answer scores 0.
- ``mask_ciou``: sum of intersections / sum of unions over all examples.
- ``box_acc50`` / ``box_acc80``: fraction of examples whose box IoU (pixel boxes, ``[x0, y0, x1,
  y1]``) is >= 0.5 / 0.8.
- ``point_hit``: fraction of predicted points (pixel positions, sampled at ``floor(x), floor(y)``)
  inside the GT mask at image resolution.
- ``format_ok``: fraction of answers (every turn) that parse to the form their prompt asks for.
- ``n_acc`` / ``t_acc`` / ``n_no_target`` (only when some ``seg`` query has no target, gRefCOCO):
  N-acc = well-formed empty answers (``<seg></seg>``, or everything deleted) on no-target queries /
  no-target queries; T-acc = well-formed non-empty answers on the others / the others (as
  ``getok-data score``). An empty answer on a no-target query has an empty union: IoU 0 here.
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
    no_target: list[bool] = field(default_factory=list)  # per seg query: its answer was right to be empty
    targeted: list[bool] = field(default_factory=list)  # per seg query with a target: answered non-empty

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

    def add_target(self, no_target: bool, ok: bool, empty: bool) -> None:
        """N-acc / T-acc accounting of one ``seg`` query (``ok``: its answer parsed)."""
        if no_target:
            self.no_target.append(ok and empty)
        else:
            self.targeted.append(ok and not empty)

    def add_format(self, ok: bool) -> None:
        self.formats.append(bool(ok))

    def summary(self) -> dict:
        ious = [i / u if u else 0.0 for i, u in zip(self.inter, self.union)]
        mean = lambda xs: float(np.mean(xs)) if len(xs) else 0.0
        box = np.array(self.box_ious)
        out = {
            "mask_giou": mean(ious),
            "mask_ciou": float(sum(self.inter) / sum(self.union)) if sum(self.union) else 0.0,
            "box_acc50": mean(box >= 0.5),
            "box_acc80": mean(box >= 0.8),
            "point_hit": mean(self.hits),
            "format_ok": mean(self.formats),
            "n": len(self.inter),
        }
        if self.no_target:
            out.update(n_acc=mean(self.no_target), t_acc=mean(self.targeted), n_no_target=len(self.no_target))
        return out
