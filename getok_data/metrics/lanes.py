"""TuSimple-style lane metric: accuracy, FP, FN (as the official ``LaneEval.bench``) and F1.

Threshold, as TuSimple states it: a GT point is hit when the prediction's x at that row is
within ``pixel_thresh / cos(angle)`` pixels (``pixel_thresh`` 20 px on TuSimple's 1280 px wide
images; :func:`pixel_thresh_for` scales it to other widths), ``angle`` the slope of a
least-squares line x(y) through the GT lane's valid points. A GT lane is matched when some
prediction hits at least ``pt_thresh`` (85%) of its rows. Per frame (``LaneEval.bench``):
accuracy = sum of each GT lane's best hit fraction / ``max(min(4, #gt), 1)``; FP =
``(#pred - matched) / #pred``; FN = ``unmatched / max(min(#gt, 4), 1)``; with more than 4 GT
lanes one FN is forgiven and the worst accuracy dropped; more than ``#gt + 2`` predictions score
(0, 0, 1). As the official code, rows where the GT has no point count in the hit fraction's
denominator and count as hits where the prediction has no point either (both read -100).

F1 over a set of frames is from the counts: TP = matched GT lanes, FP = predictions not matched
(``#pred - matched``, floored at 0), FN = unmatched GT lanes; F1 = 2PR / (P + R).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

PIXEL_THRESH = 20.0  # px, on TuSimple's 1280 px wide frames
PT_THRESH = 0.85
TUSIMPLE_WIDTH = 1280
NO_POINT = -2.0  # TuSimple's "no lane at this row"


def pixel_thresh_for(width: float) -> float:
    """TuSimple's 20 px threshold scaled to an image ``width`` pixels wide."""
    return PIXEL_THRESH * float(width) / TUSIMPLE_WIDTH


def polyline_xs(xy: Sequence[Sequence[float]], ys: Sequence[float]) -> np.ndarray:
    """A polyline's x at each row ``y`` (linear along its first segment spanning that row);
    ``-2`` where no segment spans it. Turns decoded ``<pl>`` vertices into TuSimple's format."""
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(ys), NO_POINT)
    for k, y in enumerate(ys):
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if min(y0, y1) <= y <= max(y0, y1):
                out[k] = x0 if y0 == y1 else x0 + (y - y0) * (x1 - x0) / (y1 - y0)
                break
        else:
            if len(pts) == 1 and pts[0, 1] == y:
                out[k] = pts[0, 0]
    return out


def _angle(xs: np.ndarray, ys: np.ndarray) -> float:
    ok = xs >= 0
    if ok.sum() > 1 and np.ptp(ys[ok]) > 0:
        return float(np.arctan(np.polyfit(ys[ok], xs[ok], 1)[0]))
    return 0.0


def line_accuracy(pred: np.ndarray, gt: np.ndarray, thresh: float, soft: np.ndarray | None = None) -> float:
    """Fraction of the GT's rows where |pred - gt| < thresh (no point on either side = -100).

    ``soft``: rows where the prediction's existence is undecided (a quantised polyline's end
    zone): a hit where the GT has no point, else compared as usual."""
    p = np.where(pred >= 0, pred, -100.0)
    g = np.where(gt >= 0, gt, -100.0)
    hit = np.abs(p - g) < thresh
    if soft is not None:
        hit |= np.asarray(soft, dtype=bool) & (gt < 0)
    return float(np.mean(hit))


@dataclass(frozen=True)
class FrameScore:
    accuracy: float
    fp: float  # rate, as LaneEval.bench
    fn: float  # rate, as LaneEval.bench
    matched: int
    num_pred: int
    num_gt: int


def frame_score(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]], ys: Sequence[float],
                pixel_thresh: float = PIXEL_THRESH, pt_thresh: float = PT_THRESH,
                soft: Sequence[Sequence[bool]] | None = None) -> FrameScore:
    """One frame, TuSimple's ``LaneEval.bench`` (no run-time rule): lanes as x per row of ``ys``
    (negative = no point); ``soft``: per prediction, its undecided rows (:func:`line_accuracy`).
    Raises ValueError when a lane's length is not ``len(ys)``."""
    ys_a = np.asarray(ys, dtype=np.float64)
    preds = [np.asarray(p, dtype=np.float64) for p in pred]
    gts = [np.asarray(g, dtype=np.float64) for g in gt]
    if any(len(p) != len(ys_a) for p in preds + gts):
        raise ValueError(f"every lane needs one x per row ({len(ys_a)} rows)")
    if len(preds) > len(gts) + 2:
        return FrameScore(0.0, 0.0, 1.0, 0, len(preds), len(gts))
    accs, matched, fn = [], 0, 0
    for g in gts:
        thresh = pixel_thresh / np.cos(_angle(g, ys_a))
        softs = list(soft) if soft is not None else [None] * len(preds)
        best = max((line_accuracy(p, g, thresh, sp) for p, sp in zip(preds, softs)), default=0.0)
        if best < pt_thresh:
            fn += 1
        else:
            matched += 1
        accs.append(best)
    fp = len(preds) - matched
    if len(gts) > 4 and fn > 0:
        fn -= 1
    total = sum(accs) - (min(accs) if len(gts) > 4 else 0.0)
    denom = max(min(4, len(gts)), 1)
    return FrameScore(total / denom, fp / len(preds) if preds else 0.0, fn / denom, matched, len(preds), len(gts))


def lane_metrics(frames: Sequence[FrameScore]) -> dict[str, float]:
    """Mean accuracy / FP / FN over frames (TuSimple's numbers) and F1 from the lane counts."""
    if not frames:
        raise ValueError("no frames to score")
    tp = sum(f.matched for f in frames)
    fp = sum(max(0, f.num_pred - f.matched) for f in frames)
    fn = sum(f.num_gt - f.matched for f in frames)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": float(np.mean([f.accuracy for f in frames])),
        "fp": float(np.mean([f.fp for f in frames])),
        "fn": float(np.mean([f.fn for f in frames])),
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "tp": tp, "fp_lanes": fp, "fn_lanes": fn, "frames": len(frames),
    }
