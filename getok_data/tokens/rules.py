"""The GETok rules that several stages share, written once (docs/FORMAT.md sections 3-6):
where anchors sit, how many anchors an answer has, when an ``<offset>`` turn matches the answer
it refines, the offset answer that refines any previous answer, and mask / box IoU."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .codec import Box, Grounding, OffsetGroup, ParseError, Refinement, encode, parse
from .geometry import Grid

Step = tuple[int, int]
# Steps in order of preference: where two steps do equally well, the smaller move wins.
STEP_PREFERENCE: tuple[Step, ...] = ((0, 0), (0, 1), (-1, 0), (1, 0), (0, -1), (-1, 1), (1, 1), (-1, -1), (1, -1))


def anchor_positions(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` float64 ``[n*n]`` of every anchor in raster order (row ``j`` outer):
    ``x = (i + 0.5) * W / n``, ``y = (j + 0.5) * H / n``, exactly as :meth:`Grid.anchor`."""
    k = np.arange(grid.n, dtype=np.float64)
    xs = (k + 0.5) * grid.width / grid.n
    ys = (k + 0.5) * grid.height / grid.n
    gx, gy = np.meshgrid(xs, ys)
    return gx.ravel(), gy.ravel()


def anchor_counts(items: Sequence[Grounding]) -> list[tuple[str, int]]:
    """``(wrapper, anchor count)`` of each grounding: the shape an ``<offset>`` turn must match."""
    return [(g.kind, len(g.anchors)) for g in items]


def refinement_matches(previous: Sequence[Grounding], refinement: Refinement) -> bool:
    """Whether ``refinement`` refines ``previous`` one-to-one: the same wrappers in order and one
    offset (or ``<DELETE>``) per anchor."""
    return [(g.kind, len(g.steps)) for g in refinement.groups] == anchor_counts(previous)


def parse_refinement(completion: str, previous: str, n: int) -> tuple[list[Grounding], Refinement] | None:
    """``(previous groundings, refinement)`` if ``completion`` is one ``<offset>`` turn matching
    ``previous`` (which must itself be groundings, not a refinement); else None."""
    try:
        prev, items = parse(previous, n), parse(completion, n)
    except ParseError:
        return None
    if not prev or len(items) != 1 or not isinstance(items[0], Refinement):
        return None
    if any(isinstance(p, Refinement) for p in prev) or not refinement_matches(prev, items[0]):
        return None
    return prev, items[0]


def box_corner_step(grid: Grid, anchor: tuple[int, int], corner: tuple[float, float]) -> Step:
    """The step that brings a box corner's anchor closest to the true corner."""
    i, j = anchor
    errs = [math.hypot(*(np.subtract(grid.position(i, j, s), corner))) for s in STEP_PREFERENCE]
    return STEP_PREFERENCE[int(np.argmin(errs))]


def offset_answer(previous: Sequence[Grounding], grid: Grid, label_step: Callable[[int], Step | None],
                  box: Sequence[float]) -> str:
    """The ``<offset>`` turn that refines ``previous`` for one target: anchors of ``<seg>``,
    ``<point>`` and ``<pl>`` take their grid point's labelled step (``label_step(j * n + i)``,
    None = ``<DELETE>``); box corners take the step nearest to the target box's corner."""
    groups = []
    for g in previous:
        if isinstance(g, Box):
            x0, y0, x1, y1 = box
            steps = (box_corner_step(grid, g.top_left, (x0, y0)), box_corner_step(grid, g.bottom_right, (x1, y1)))
        else:
            steps = tuple(label_step(j * grid.n + i) for i, j in g.anchors)
        groups.append(OffsetGroup(g.kind, steps))
    return encode(Refinement(tuple(groups)))


def box_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """IoU of two ``[x0, y0, x1, y1]`` boxes (continuous coordinates); 0 if either is None or the
    union is empty."""
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def intersection_union(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """``(I, U)`` pixel counts of two bool masks of one shape; pixels of ``ignore`` (ReasonSeg's
    label-255 regions) count for neither, as LISA's ``intersectionAndUnionGPU(..., ignore_index=255)``
    (for cIoU = sum I / sum U over a split)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and GT {gt.shape} differ in shape")
    if ignore is not None:
        ignore = np.asarray(ignore, bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask {ignore.shape} and GT {gt.shape} differ in shape")
        pred, gt = pred & ~ignore, gt & ~ignore
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def mask_iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None, empty: float = 0.0) -> float:
    """IoU of two bool masks with ``ignore`` pixels left out; ``empty`` when the union is empty
    (1.0 scores an empty answer to a no-target query, gRefCOCO; 0.0 where a GT was expected)."""
    inter, union = intersection_union(pred, gt, ignore)
    return inter / union if union else float(empty)


__all__ = ["anchor_positions", "anchor_counts", "refinement_matches", "parse_refinement", "box_corner_step",
           "offset_answer", "box_iou", "mask_iou", "intersection_union", "STEP_PREFERENCE"]
