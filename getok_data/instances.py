"""Multi-instance queries of a built sample: who is asked for, and their canonical answers.

A query is one expression and the instances it names (docs/FORMAT.md section 3, ``points`` /
``boxes``). Derived from the sample JSON alone, so builds made before these tasks existed gain
them without a rebuild and their shards keep their bytes:

- a target with ``instances`` (gRefCOCO multi-target refs, HumanRef) names each instance, any
  other target with its own expressions names itself. An instance's point is the grid anchor
  lying on its mask (the anchor's pixel, rounded, as the scorer tests it) that is deepest inside
  it, the first in raster order among ties; a mask that holds no anchor gets the cell of its
  deepest pixel (the single ``point`` answer's rule, which does not ask for the anchor to lie on
  the mask: a thin object's deepest cell may have its centre outside it). Its box is its box
  on the grid (the single ``box`` answer's rule);
- a no-target target (gRefCOCO ``[-1]``, HumanRef's rejection domain) names nobody: the answer
  is ``<point></point>`` / ``<box></box>``;
- targets without an expression of their own (COCO: the category name is the expression) are
  grouped per category: one query per image and category, the category name as its expression,
  naming every such target of that category in target order, with target id ``category-<name>``
  (the name escaped as sample keys are), after the targets.

``candidates`` is what HumanRef's DensityF1 divides by: the source's candidate boxes when it
has them (HumanRef), else the instances themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .labelling import Depth, deepest_anchor
from .masks import gt_at
from .tokens import Box, Grid, Point, box_from_xyxy
from .tokens.answers import encode_instances
from .types import key_part

__all__ = ["Query", "queries_of_meta", "has_expressions", "instance_point"]


@dataclass
class Query:
    """One multi-instance question of a sample and its answer's parts."""

    target_id: str
    sentences: list[str]
    target: dict  # the target JSON (a category group: a synthetic one holding its members)
    points: list[Point]
    boxes: list[Box]
    instances: list[dict]  # [{"box": [x0, y0, x1, y1], "mask_rle": {...}}] in the query's order
    candidates: int

    def answer(self, task: str) -> str:
        return encode_instances(task, self.points if task == "points" else self.boxes)


def has_expressions(target: dict) -> bool:
    """Whether the target has an expression of its own (not just its category name, as COCO's)."""
    cat = str(target.get("category") or "").strip().lower()
    return any(s and s.strip() and s.strip().lower() != cat for s in target.get("sentences") or [])


def instance_point(mask: np.ndarray, grid: Grid) -> Point:
    """The anchor on ``mask`` deepest inside it (see the module's rules)."""
    depth = Depth(mask)
    n = grid.n
    i, j = np.meshgrid(np.arange(n), np.arange(n))  # raster order: row j, then column i
    xs, ys = (i.reshape(-1) + 0.5) * grid.width / n, (j.reshape(-1) + 0.5) * grid.height / n
    cols = np.clip(np.round(xs).astype(np.int64), 0, mask.shape[1] - 1)  # numpy rounds half to even, as round()
    rows = np.clip(np.round(ys).astype(np.int64), 0, mask.shape[0] - 1)
    d = np.where(mask[rows, cols], depth.at(cols, rows), -1.0)
    k = int(np.argmax(d))
    if d[k] <= 0:
        return Point(deepest_anchor(mask, grid, depth))
    return Point((int(i.reshape(-1)[k]), int(j.reshape(-1)[k])))


def _instance_items(inst: list[dict], grid: Grid) -> tuple[list[Point], list[Box]]:
    points, boxes = [], []
    for it in inst:
        points.append(instance_point(gt_at(it["mask_rle"]), grid))  # cached: rows and scoring reuse it
        boxes.append(box_from_xyxy([float(v) for v in it["box"]], grid))
    return points, boxes


def _own(target: dict) -> list[dict]:
    """A single-object target as its own instance."""
    return [{"box": list(target["box"]), "mask_rle": target["mask_rle"]}]


def queries_of_meta(meta: dict, include_low_quality: bool = False) -> Iterator[Query]:
    """The sample's multi-instance queries, in the documented order (low-quality targets left out
    unless asked, as every export leaves them out)."""
    grid = Grid(int(meta["grid"]["n"]), meta["width"], meta["height"], int(meta["grid"]["m"]))
    groups: dict[str, list[dict]] = {}
    for t in meta["targets"]:
        if t.get("low_quality") and not include_low_quality:
            continue
        if not has_expressions(t):
            if t.get("category") and not t.get("no_target"):
                groups.setdefault(t["category"], []).append(t)
            continue
        sents = [s for s in t["sentences"] if s and s.strip()]  # as every export numbers them
        cands = (t.get("candidate_boxes"))
        if t.get("no_target"):
            yield Query(str(t["target_id"]), sents, t, [], [], [], len(cands) if cands is not None else 0)
            continue
        inst = [{"box": list(i["box"]), "mask_rle": i["mask_rle"]} for i in t.get("instances") or []] or _own(t)
        points, boxes = _instance_items(inst, grid)
        yield Query(str(t["target_id"]), sents, t, points, boxes, inst,
                    len(cands) if cands is not None else len(inst))
    for cat, members in groups.items():
        inst = [i for t in members for i in _own(t)]
        points, boxes = _instance_items(inst, grid)
        tid = f"category-{key_part(cat)}"
        target = {"target_id": tid, "category": cat, "sentences": [cat], "instances": inst,
                  "members": [str(t["target_id"]) for t in members]}
        yield Query(tid, [cat], target, points, boxes, inst, len(inst))
