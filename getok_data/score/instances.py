"""Multi-instance answers (``points``, ``boxes``) scored with the HumanRef benchmark's arithmetic.

Per row (docs/SCORING.md, "Multi-instance"), as HumanRef's ``evaluate_dataset`` computes it:

- points: a predicted point is the pixel position of its anchor, rounded (``int(round(x))``,
  Python's rounding); going through the GT instances in order, an instance is matched by the
  first unused point inside its mask. ``recall = matches / gt``, ``precision = matches / pred``;
  no predicted point: recall 0, precision 1.
- boxes: going through the GT instances in order, an instance is matched by the unused predicted
  box of highest IoU at or above the threshold; recall and precision at 0.5 and averaged over the
  ten thresholds 0.5:0.05:0.95; no predicted box: 0 and 0.
- DensityF1 = F1 * min(1, (gt / candidates) / (pred / candidates)) (0 without candidates or
  without a prediction), where candidates are HumanRef's ``candidate_boxes`` (other sources: the
  query's instances).
- a rejection (nobody matches) scores no recall or precision: it counts as correctly rejected
  when the answer is the well-formed empty answer. A format failure is an empty prediction.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..masks import gt_at
from ..metrics.instances import THRESHOLDS, box_recall_precision, density_f1, f1, point_recall_precision
from ..tokens import Grid
from .metrics import _mean, common, register_metric
from .scoring import register_row_fields

def _common_fields(target: dict, pred: list, ok: bool) -> dict | None:
    """The rejection fields, or None for a query that names somebody."""
    if target.get("no_target"):
        return {"rejection": True, "rejected": bool(ok and not pred), "pred_count": len(pred)}
    return None


def _pred(result: Any, ok: bool) -> list:
    return [r for r in (result or []) if r is not None] if ok else []


@register_row_fields("points")
def points_fields(target: dict, result: Any, ok: bool, grid: Grid) -> dict:
    pred = _pred(result, ok)
    rej = _common_fields(target, pred, ok)
    if rej is not None:
        return rej
    inst = target["gt_instances"]
    recall, precision = point_recall_precision([gt_at(i["mask_rle"]) for i in inst], pred)
    return {"rejection": False, "recall": recall, "precision": precision, "f1": f1(precision, recall),
            "density_f1": density_f1(precision, recall, len(inst), len(pred), target["gt_candidates"]),
            "gt_count": len(inst), "pred_count": len(pred)}


@register_row_fields("boxes")
def boxes_fields(target: dict, result: Any, ok: bool, grid: Grid) -> dict:
    pred = [list(b) for b in _pred(result, ok)]
    rej = _common_fields(target, pred, ok)
    if rej is not None:
        return rej
    gt = [list(map(float, i["box"])) for i in target["gt_instances"]]
    cands = target["gt_candidates"]
    per = [box_recall_precision(gt, pred, t) for t in THRESHOLDS]
    dens = [density_f1(p, r, len(gt), len(pred), cands) for r, p in per]
    r50, p50 = per[0]
    return {"rejection": False, "recall_50": r50, "precision_50": p50, "f1_50": f1(p50, r50),
            "recall_mean": float(np.mean([r for r, _ in per])), "precision_mean": float(np.mean([p for _, p in per])),
            "density_f1_50": dens[0], "density_f1_mean": float(np.mean(dens)),
            "gt_count": len(gt), "pred_count": len(pred)}


def _summary(units: list[dict], keys: tuple[str, ...]) -> dict:
    out = common(units)
    named = [u for u in units if not u.get("rejection")]
    rejections = [u for u in units if u.get("rejection")]
    out["n_named"] = len(named)
    for k in keys:
        out[k] = _mean(named, k)
    out["n_rejection"] = len(rejections)
    if rejections:  # HumanRef reports the count; the rate is the count over the rejection queries
        score = sum(float(u["rejected"]) for u in rejections)
        out["rejection_score"] = int(score) if score.is_integer() else score
        out["rejection_rate"] = score / len(rejections)
    return out


@register_metric("points")
def points_metrics(units: list[dict]) -> dict:
    """Recall, precision, F1 (pointing F1: the mean of per-query F1) and DensityF1 over the queries
    that name somebody; the rejection score (correct empty answers) over those that name nobody."""
    return _summary(units, ("recall", "precision", "f1", "density_f1"))


@register_metric("boxes")
def boxes_metrics(units: list[dict]) -> dict:
    """HumanRef's box columns: recall / precision / DensityF1 at 0.5 and over 0.5:0.95, plus F1@0.5."""
    return _summary(units, ("recall_50", "recall_mean", "precision_50", "precision_mean", "f1_50",
                            "density_f1_50", "density_f1_mean"))
