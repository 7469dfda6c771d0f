"""Multi-instance queries of a built sample: who is asked for, and their canonical answers.

A query is one expression and the instances it names (docs/FORMAT.md section 3, ``points`` /
``boxes``). Derived from the sample JSON alone, so builds made before these tasks existed gain
them without a rebuild and their shards keep their bytes:

- a target with ``instances`` (gRefCOCO multi-target refs, HumanRef) names each instance: its
  point is the deepest anchor of the instance's mask (the rule of the single ``point`` answer),
  its box the instance's box on the grid;
- a no-target target (gRefCOCO ``[-1]``, HumanRef's rejection domain) names nobody: the answer
  is ``<point></point>`` / ``<box></box>``;
- any other target with its own expressions names itself (its stored ``point`` / ``box`` tokens);
- targets without expressions (COCO: the category name stands in) are grouped per category: one
  query "the {category}" per image naming every such target of that category, in target order,
  with target id ``category-<name>`` (the name escaped as sample keys are), after the targets.

``candidates`` is what HumanRef's DensityF1 divides by: the source's candidate boxes when it
has them (HumanRef), else the instances themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .labelling import Depth, deepest_anchor
from .masks import rle_to_mask
from .tokens import Box, Grid, Point, box_from_xyxy, parse_one
from .tokens.answers import encode_instances
from .types import key_part

__all__ = ["Query", "queries_of_meta", "has_expressions"]


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
    return any(s and s.strip() for s in target.get("sentences") or [])


def _instance_items(inst: list[dict], grid: Grid) -> tuple[list[Point], list[Box]]:
    points, boxes = [], []
    for it in inst:
        mask = rle_to_mask(it["mask_rle"])
        points.append(Point(deepest_anchor(mask, grid, Depth(mask))))
        boxes.append(box_from_xyxy([float(v) for v in it["box"]], grid))
    return points, boxes


def _own(target: dict, grid: Grid) -> tuple[list[Point], list[Box], list[dict]]:
    """A single-object target as its own instance, from its stored tokens."""
    tokens = target.get("tokens") or {}
    point = parse_one(tokens["point"], grid.n, "point")
    box = parse_one(tokens["box"], grid.n, "box")
    return [point], [box], [{"box": list(target["box"]), "mask_rle": target["mask_rle"]}]


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
        sents = [s for s in t["sentences"] if s and s.strip()]
        cands = (t.get("candidate_boxes"))
        if t.get("no_target"):
            yield Query(str(t["target_id"]), sents, t, [], [], [], len(cands) if cands is not None else 0)
            continue
        if t.get("instances"):
            inst = [{"box": list(i["box"]), "mask_rle": i["mask_rle"]} for i in t["instances"]]
            points, boxes = _instance_items(inst, grid)
        else:
            points, boxes, inst = _own(t, grid)
        yield Query(str(t["target_id"]), sents, t, points, boxes, inst,
                    len(cands) if cands is not None else len(inst))
    for cat, members in groups.items():
        points, boxes, inst = [], [], []
        for t in members:
            p, b, i = _own(t, grid)
            points += p
            boxes += b
            inst += i
        tid = f"category-{key_part(cat)}"
        target = {"target_id": tid, "category": cat, "sentences": [f"the {cat}"], "instances": inst,
                  "members": [str(t["target_id"]) for t in members]}
        yield Query(tid, [f"the {cat}"], target, points, boxes, inst, len(inst))
