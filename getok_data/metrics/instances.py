"""HumanRef's multi-instance arithmetic, written once: the scorer (``score/instances.py``) reports
it and the rewards (``rewards/core.py``) train on it. Ported from the benchmark's evaluation
(``calculate_iou``, ``calculate_metrics``, ``calculate_point_metrics``, ``calculate_density_f1``),
same order of matching, same edge cases; docs/SCORING.md states them."""
from __future__ import annotations

from typing import Sequence

import numpy as np

THRESHOLDS = tuple(float(t) for t in np.arange(0.5, 1.0, 0.05))  # HumanRef's np.arange(0.5, 1.0, 0.05)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """HumanRef's ``calculate_iou``: continuous coordinates, 0 for no overlap."""
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if x2 <= x1 or y2 <= y1:
        return 0.0
    inter = (x2 - x1) * (y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def box_recall_precision(gt: list, pred: list, threshold: float = 0.5) -> tuple[float, float]:
    if not pred:
        return 0.0, 0.0
    matches, used = 0, set()
    for g in gt:
        best, best_k = 0.0, -1
        for k, p in enumerate(pred):
            if k in used:
                continue
            iou = box_iou(g, p)
            if iou > best and iou >= threshold:
                best, best_k = iou, k
        if best_k != -1:
            matches += 1
            used.add(best_k)
    return matches / len(gt), matches / len(pred)


def point_recall_precision(masks: list[np.ndarray], points: list) -> tuple[float, float]:
    if not points:
        return 0.0, 1.0
    matches, used = 0, set()
    for mask in masks:
        h, w = mask.shape
        for k, (x, y) in enumerate(points):
            if k in used:
                continue
            c, r = int(round(x)), int(round(y))
            if 0 <= c < w and 0 <= r < h and mask[r, c]:
                matches += 1
                used.add(k)
                break
    return matches / len(masks), matches / len(points)


def f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def density_f1(precision: float, recall: float, gt: int, pred: int, candidates: int) -> float:
    if precision + recall == 0:
        return 0.0
    gt_ratio = gt / candidates if candidates > 0 else 0.0
    pred_ratio = pred / candidates if candidates > 0 else 0.0
    return f1(precision, recall) * (min(1.0, gt_ratio / pred_ratio) if pred_ratio > 0 else 0.0)


__all__ = ["THRESHOLDS", "box_iou", "box_recall_precision", "point_recall_precision", "f1", "density_f1"]
