"""Lane answers (``<pl>`` rows of tusimple / culane builds) scored with the TuSimple lane metric.

Per row (:func:`lane_fields`): the answer's polyline in pixels (refined vertices for ``offset/pl``
rows; deleted vertices dropped) and the target's GT lane (its clean points, FORMAT.md section 9,
steps 1-3). Per frame (:func:`pl_metrics`): the predictions of all lane rows of an image (one
sentence index) are compared with all of their GT lanes at once, as TuSimple's
``LaneEval.bench`` compares a frame's predicted lanes with its GT lanes
(:func:`getok_data.metrics.lanes.frame_score`), so a lane answered under another lane's sentence
still matches that lane, and an answer that matches no lane is a false positive.

Rows: a frame's rows are the union of its GT lanes' point rows (TuSimple: its ``h_samples``
that hold a point). Every lane, predicted or GT, is read at those rows by
:func:`~getok_data.metrics.lanes.polyline_xs` (``-2`` outside its vertical extent). Ends: a
``<pl>`` end is known only to half a cell (a grid anchor stands for its cell), so the rows within
half a cell height of a predicted end, on either side, are undecided: a hit where the GT has no
point there, else compared as every row (beyond the end, at the end vertex's x). Threshold:
TuSimple's 20 px at 1280 px width, scaled to the image width (:func:`pixel_thresh_for`), divided by
the cosine of the GT lane's angle; a GT lane is matched at 85% of its rows.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from ..metrics.lanes import PT_THRESH, FrameScore, frame_score, lane_metrics, pixel_thresh_for, polyline_xs
from ..tokens import Grid
from .metrics import common, register_metric
from .scoring import register_row_fields

XY = Sequence[float]


def end_tolerance(grid: Grid) -> float:
    """Half a cell height in pixels: how far a ``<pl>`` end's rows are undecided."""
    return grid.height / grid.n / 2


def read_lane(xy: Sequence[XY], ys: Sequence[float], end_tol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(x per row, "undecided" per row) of a predicted polyline.

    Rows within ``end_tol`` pixels (vertically) of either end vertex are undecided: a hit where the
    GT has no point, else compared as usual; those beyond the end read the end vertex's x.
    x is floored at 0 where the lane is read (a lane is clipped to the image; ``-2`` means no
    point)."""
    ys_a = np.asarray(ys, dtype=np.float64)
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    xs = polyline_xs(pts, ys_a)
    soft = np.zeros(len(ys_a), dtype=bool)
    if len(pts) == 0:
        return xs, soft
    lo, hi = pts[:, 1].min(), pts[:, 1].max()
    covered = (ys_a >= lo) & (ys_a <= hi)
    if end_tol > 0:
        for end in (pts[0], pts[-1]):
            near = np.abs(ys_a - end[1]) <= end_tol
            soft |= near
            past = near & ~covered
            xs[past] = end[0]  # the end vertex stands for its cell (extrapolating a flat tip overshoots)
            covered |= past
    xs[covered] = np.maximum(xs[covered], 0.0)
    return xs, soft


@register_row_fields("pl")
def lane_fields(target: dict, positions: Any, ok: bool, grid: Grid) -> dict:
    """The answer's vertices (``lane_pred``; [] when a format failure or every vertex deleted), the
    GT lane (``lane_gt``), and the row's own accuracy against its GT lane (``lane_acc``, also the
    ``score`` its refinement gain is measured in)."""
    gt = [[float(x), float(y)] for x, y in ((target.get("polyline") or {}).get("points") or [])]
    pred = [[float(p[0]), float(p[1])] for p in (positions or []) if p is not None] if ok else []
    out: dict = {"lane_pred": pred, "lane_gt": gt, "lane_width": grid.width,
                 "lane_tol": 0.0, "lane_acc": 0.0, "score": 0.0}
    if not gt:
        return out
    ys = sorted({y for _, y in gt})
    out["lane_tol"] = end_tolerance(grid)
    if pred:
        out["lane_acc"] = _frame([(pred, out["lane_tol"])], [gt], ys, grid.width).accuracy
    out["score"] = out["lane_acc"]
    return out


def _frame(preds: Sequence[tuple[Sequence[XY], float]], gts: Sequence[Sequence[XY]], ys: Sequence[float],
           width: float) -> FrameScore:
    read = [read_lane(p, ys, tol) for p, tol in preds]
    gt_xs = [polyline_xs(g, ys) for g in gts]
    return frame_score([x for x, _ in read], gt_xs, ys, pixel_thresh_for(width), PT_THRESH,
                       soft=[s for _, s in read])


@register_metric("pl")
def pl_metrics(units: list[dict]) -> dict:
    """TuSimple accuracy, FP / FN rates (mean over frames), precision, recall and F1 (from lane
    counts), per frame = (sample key, sentence index); plus ``lane_acc``, each row's own accuracy."""
    out = common(units)
    frames: dict[tuple, list[dict]] = defaultdict(list)
    for u in units:
        if u.get("lane_gt"):
            frames[(u.get("key"), u.get("sent_index"))].append(u)
    scores = []
    for rows in frames.values():
        ys = sorted({y for r in rows for _, y in r["lane_gt"]})
        preds = [(r["lane_pred"], r.get("lane_tol", 0.0)) for r in rows if r.get("lane_pred")]
        scores.append(_frame(preds, [r["lane_gt"] for r in rows], ys, rows[0]["lane_width"]))
    if scores:
        out.update(lane_metrics(scores))
        out["pixel_thresh"] = float(np.mean([pixel_thresh_for(r[0]["lane_width"]) for r in frames.values()]))
    vals = [float(u["lane_acc"]) for u in units if u.get("lane_acc") is not None]
    out["lane_acc"] = float(np.mean(vals)) if vals else None
    return out


__all__ = ["end_tolerance", "lane_fields", "pl_metrics", "read_lane"]
