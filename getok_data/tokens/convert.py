"""Between pixel geometry and groundings: quantise to anchors, decode with offsets applied."""
from __future__ import annotations

from .codec import Box, Grounding, Item, OffsetGroup, Point, Polyline, Refinement, Step
from .geometry import Grid

XY = tuple[float, float]


def point_from_xy(x: float, y: float, grid: Grid) -> Point:
    return Point(grid.nearest(x, y))


def box_from_xyxy(box: list[float] | tuple[float, ...], grid: Grid) -> Box:
    """Each corner's nearest anchor (x1, y1 are pixel-edge coordinates)."""
    x0, y0, x1, y1 = box
    return Box(grid.nearest(x0, y0), grid.nearest(x1, y1))


def polyline_from_xy(points: list[XY], grid: Grid) -> Polyline:
    """Ordered anchors of a polyline; consecutive duplicates collapse (they carry no shape)."""
    anchors: list[tuple[int, int]] = []
    for x, y in points:
        a = grid.nearest(x, y)
        if not anchors or anchors[-1] != a:
            anchors.append(a)
    if len(anchors) < 2:
        raise ValueError("polyline collapses to fewer than 2 anchors at this grid")
    return Polyline(tuple(anchors))


def keypoints_to_points(keypoints: list[list[float]], grid: Grid) -> tuple[list[Point], list[int]]:
    """COCO keypoints ``[[x, y, v], ...]`` -> points of the labelled ones (v > 0) and their indices."""
    points, idx = [], []
    for k, (x, y, v) in enumerate(keypoints):
        if v > 0:
            points.append(point_from_xy(x, y, grid))
            idx.append(k)
    return points, idx


def positions(item: Grounding, grid: Grid, steps: tuple[Step, ...] | None = None) -> list[XY | None]:
    """Pixel positions of a grounding's anchors, each moved by its step (None = deleted)."""
    steps = steps or ((0, 0),) * len(item.anchors)
    if len(steps) != len(item.anchors):
        raise ValueError(f"{len(steps)} offsets for {len(item.anchors)} anchors of <{item.kind}>")
    return [None if s is None else grid.position(i, j, s) for (i, j), s in zip(item.anchors, steps)]


def decode_point(p: Point, grid: Grid, step: Step = (0, 0)) -> XY | None:
    return positions(p, grid, (step,))[0]


def decode_box(b: Box, grid: Grid, steps: tuple[Step, Step] = ((0, 0), (0, 0))) -> tuple[float, float, float, float] | None:
    """Box from its two (refined) corner anchors; None if a corner was deleted."""
    tl, br = positions(b, grid, steps)
    if tl is None or br is None:
        return None
    return (min(tl[0], br[0]), min(tl[1], br[1]), max(tl[0], br[0]), max(tl[1], br[1]))


def apply_refinement(previous: list[Grounding], refinement: Refinement, grid: Grid) -> list[list[XY | None]]:
    """Refined positions for each grounding of the previous answer.

    Raises ValueError if the refinement's groups do not match the previous answer's groundings
    (same number, same wrappers, one offset per anchor).
    """
    if len(refinement.groups) != len(previous):
        raise ValueError(f"{len(refinement.groups)} offset groups for {len(previous)} groundings")
    out = []
    for g, grp in zip(previous, refinement.groups):
        if grp.kind != g.kind:
            raise ValueError(f"offset group <{grp.kind}> does not match grounding <{g.kind}>")
        out.append(positions(g, grid, grp.steps))
    return out


def refinement_for(previous: list[Grounding], steps: list[tuple[Step, ...]]) -> Refinement:
    """Build a refinement turn from per-anchor steps for each previous grounding."""
    return Refinement(tuple(OffsetGroup(g.kind, tuple(s)) for g, s in zip(previous, steps)))


def groundings_of(items: list[Item]) -> list[Grounding]:
    return [it for it in items if not isinstance(it, Refinement)]


