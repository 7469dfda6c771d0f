"""The one IoU every stage shares: ignore-aware, with the no-target convention.

Pixels in an ``ignore`` mask (ReasonSeg's label-255 regions) count for neither the intersection
nor the union, as LISA's ``intersectionAndUnionGPU(..., ignore_index=255)`` does. When the union
is empty (an empty answer to a no-target query, gRefCOCO), the IoU is 1.0: the answer is exactly
right, as ReLA's and LISA's evaluations score it. The selection, ``token_iou``, ``verify``, the
rewards and the scorer all call these functions, so the rule lives here only (docs/FORMAT.md).
"""
from __future__ import annotations

import numpy as np

from .masks import resize_nearest, rle_to_mask

__all__ = ["masked_iou", "intersection_union", "ignore_mask", "EMPTY_UNION_IOU"]

#: IoU when prediction and GT are both empty outside the ignore region (a correct no-target answer).
EMPTY_UNION_IOU = 1.0


def intersection_union(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """``(I, U)`` pixel counts of two bool masks of one shape, ignore pixels left out of both
    (for cIoU = sum I / sum U over a split)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and GT {gt.shape} differ in shape")
    if ignore is not None:
        ignore = np.asarray(ignore, bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask {ignore.shape} and GT {gt.shape} differ in shape")
        keep = ~ignore
        pred, gt = pred & keep, gt & keep
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def masked_iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None,
               empty: float = EMPTY_UNION_IOU) -> float:
    """IoU of two bool masks with ``ignore`` pixels excluded; ``empty`` (default 1.0) when the
    union is empty. Callers scoring a target that has a GT pass ``empty=0.0`` so an empty answer
    to a target that vanished at the table resolution earns nothing."""
    inter, union = intersection_union(pred, gt, ignore)
    return inter / union if union else float(empty)


def ignore_mask(target: dict, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """A sample target's ignore region (``ignore_rle``) at full size or at ``shape`` (nearest,
    as the GT), or None when it has none."""
    rle = target.get("ignore_rle")
    if rle is None:
        return None
    m = rle_to_mask(rle)
    return m if shape is None or tuple(shape) == m.shape else resize_nearest(m, tuple(shape))
