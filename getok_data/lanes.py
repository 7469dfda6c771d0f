"""Lanes as ``<pl>`` polylines: the rule that turns an annotated lane into ordered grid anchors.

The rule (normative copy in docs/FORMAT.md section 7), in order:

1. Points: the lane's annotated ``(x, y)`` points (TuSimple: ``x >= 0`` at its ``h_samples``;
   CULane: every pair of the ``.lines.txt`` line). Non-finite points are an error; exact
   consecutive duplicates are dropped.
2. Order: bottom of the image first (near the vehicle, CULane's own order): if the first point
   lies above the last one, the list is reversed; otherwise annotation order is kept.
3. Off-image parts: each segment is clipped to the image rectangle ``[0, W] x [0, H]``
   (Liang-Barsky, the crossing point becomes a vertex); when the lane leaves and re-enters, the
   longest in-image piece is kept. A lane with no in-image piece is an error.
4. Vertices: Douglas-Peucker simplification in grid-cell units (``x * n / W``, ``y * n / H``) with
   tolerance :data:`SIMPLIFY_CELLS` (a quarter cell), first and last point always kept.
5. Anchors: each vertex quantises to the anchor of the cell holding it (``Grid.nearest``); a run of
   consecutive vertices on one anchor keeps its first vertex (its last when the run ends the
   lane). Fewer than 2 anchors is an error (the lane lies within one cell at this grid).
6. Offsets: per vertex, the step whose landing position is nearest (L2, pixels) to the vertex;
   ties keep ``(0, 0)``, then straight moves, then diagonals. The refinement answer is
   ``<offset><pl>...</pl></offset>`` with one step per anchor.

The lane also gets a mask (the clipped lane drawn with width :func:`lane_width`) so the box,
point and mask supervision of every other target applies to it unchanged.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from .labelling import STEPS
from .tokens import Grid, OffsetGroup, Polyline, Refinement, encode

XY = tuple[float, float]

#: Douglas-Peucker tolerance in grid cells.
SIMPLIFY_CELLS = 0.25
#: Lane mask width: CULane's evaluation width (30 px at its 1640 px wide images), scaled to W.
LANE_WIDTH_REF = (30.0, 1640.0)


def lane_width(width: int) -> int:
    """Width in pixels of a lane's mask on an image ``width`` pixels wide (>= 1)."""
    return max(1, int(round(LANE_WIDTH_REF[0] * width / LANE_WIDTH_REF[1])))


def _clip_segment(p: XY, q: XY, w: float, h: float) -> tuple[XY, XY] | None:
    """Liang-Barsky: the part of segment p-q inside ``[0, w] x [0, h]``, or None."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-dx, x0), (dx, w - x0), (-dy, y0), (dy, h - y0)):
        if pk == 0:
            if qk < 0:
                return None
            continue
        t = qk / pk
        if pk < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return (x0 + t0 * dx, y0 + t0 * dy), (x0 + t1 * dx, y0 + t1 * dy)


def _length(points: Sequence[XY]) -> float:
    return sum(math.dist(a, b) for a, b in zip(points, points[1:]))


def clean_lane(points: Sequence[Sequence[float]], width: int, height: int) -> list[XY]:
    """Rule steps 1-3: ordered, de-duplicated, clipped points (raises ValueError naming why)."""
    pts: list[XY] = []
    for k, p in enumerate(points):
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"lane point {k} is not finite: ({p[0]}, {p[1]})")
        if not pts or pts[-1] != (x, y):
            pts.append((x, y))
    if not pts:
        raise ValueError("lane has no points")
    if pts[0][1] < pts[-1][1]:
        pts.reverse()
    w, h = float(width), float(height)
    inside = lambda p: 0 <= p[0] <= w and 0 <= p[1] <= h  # noqa: E731
    if len(pts) == 1:
        if not inside(pts[0]):
            raise ValueError("lane lies entirely outside the image")
        return pts
    pieces: list[list[XY]] = []
    for p, q in zip(pts, pts[1:]):
        seg = _clip_segment(p, q, w, h)
        if seg is None:
            continue
        a, b = seg
        if pieces and pieces[-1][-1] == a and inside(p):
            pieces[-1].append(b)
        else:
            pieces.append([a, b])
    if not pieces:
        raise ValueError("lane lies entirely outside the image")
    best = max(pieces, key=_length)  # max keeps the first of equal lengths
    out = [best[0]]
    for p in best[1:]:
        if p != out[-1]:
            out.append(p)
    return out


def simplify(points: Sequence[XY], grid: Grid, tol_cells: float = SIMPLIFY_CELLS) -> list[int]:
    """Rule step 4: indices of the Douglas-Peucker vertices, distances measured in grid cells."""
    if len(points) <= 2:
        return list(range(len(points)))
    cells = np.asarray(points, dtype=np.float64) * np.array([grid.n / grid.width, grid.n / grid.height])
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        pa, pb = cells[a], cells[b]
        seg = pb - pa
        mid = cells[a + 1 : b]
        norm = float(np.hypot(*seg))
        if norm == 0:
            d = np.hypot(*(mid - pa).T)
        else:
            d = np.abs(seg[0] * (mid[:, 1] - pa[1]) - seg[1] * (mid[:, 0] - pa[0])) / norm
        k = int(np.argmax(d))
        if d[k] > tol_cells:
            c = a + 1 + k
            keep[c] = True
            stack += [(a, c), (c, b)]
    return [int(i) for i in np.nonzero(keep)[0]]


def nearest_step(vertex: XY, anchor: tuple[int, int], grid: Grid) -> tuple[int, int]:
    """Rule step 6: the offset step landing nearest to ``vertex`` (ties: labelling's step order)."""
    best, best_d = STEPS[0], math.inf
    for s in STEPS:
        d = math.dist(grid.position(anchor[0], anchor[1], s), vertex)
        if d < best_d - 1e-9:
            best, best_d = s, d
    return best


def lane_polyline(points: Sequence[XY], grid: Grid) -> dict:
    """Rule steps 4-6 on clean points: vertices, anchors, steps and token strings.

    Returns ``{"points", "xy", "anchors", "steps", "tokens", "refine"}`` (the ``polyline`` field
    of a lane target: the lane's points and its vertices rounded to 1/1000 pixel, from which the
    rest follows); raises ValueError when the lane collapses to fewer than 2 anchors.
    """
    idx = simplify(points, grid)
    verts = [(round(float(points[i][0]), 3), round(float(points[i][1]), 3)) for i in idx]
    kept: list[XY] = []
    anchors: list[tuple[int, int]] = []
    for k, v in enumerate(verts):
        a = grid.nearest(*v)
        if anchors and anchors[-1] == a:
            if k == len(verts) - 1:
                kept[-1] = v  # the lane's end stays its end
            continue
        anchors.append(a)
        kept.append(v)
    if len(anchors) < 2:
        raise ValueError(f"lane lies within one grid cell at grid {grid.n}: fewer than 2 anchors")
    steps = [nearest_step(v, a, grid) for v, a in zip(kept, anchors)]
    pl = Polyline(tuple(anchors))
    tokens = encode(pl)
    return {
        "points": [[round(float(x), 3), round(float(y), 3)] for x, y in points],
        "xy": [[x, y] for x, y in kept],
        "anchors": [list(a) for a in anchors],
        "steps": [list(s) for s in steps],
        "tokens": tokens,
        "refine": {"prompt": tokens, "answer": encode(Refinement((OffsetGroup("pl", tuple(steps)),)))},
    }


def lane_mask(points: Sequence[XY], width: int, height: int) -> np.ndarray:
    """The lane drawn as a polyline of :func:`lane_width` pixels (bool ``[H, W]``)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    pts = np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 1, thickness=lane_width(width), lineType=cv2.LINE_8, shift=4)
    if len(points) == 1:
        x, y = points[0]
        cv2.circle(canvas, (int(x), int(y)), lane_width(width) // 2, 1, -1)
    return canvas.astype(bool)


def lane_rank_sentences(lanes: Sequence[Sequence[XY]], height: int) -> list[str]:
    """One expression per lane, its place from the left at the image bottom.

    The place is the rank of each lane's x extrapolated (linearly, from its two bottom points) to
    ``y = height``; ties keep the annotation order.
    """
    def bottom_x(pts: Sequence[XY]) -> float:
        (x0, y0) = pts[0]
        if len(pts) < 2 or pts[1][1] == y0:
            return x0
        (x1, y1) = pts[1]
        return x0 + (height - y0) * (x1 - x0) / (y1 - y0)

    xs = [bottom_x(p) for p in lanes]
    order = sorted(range(len(lanes)), key=lambda k: (xs[k], k))
    rank = {k: r for r, k in enumerate(order)}
    return [f"lane marking {rank[k] + 1} of {len(lanes)} from the left" for k in range(len(lanes))]
