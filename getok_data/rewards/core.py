"""GRPO rewards for GETok answers: pure functions over token strings, masks and boxes (no torch).

Conventions (docs/INTEROP.md, "Rewards"):

- Stage 1 (grid answers) rewards are >= 0 and an unparseable answer scores 0 on all of them,
  so a ground-truth answer never scores below a non-answer.
- Stage 2 (offset refinement) rewards lie in [-1, 1] and an unparseable or mis-counted
  refinement answer scores -1 (the floor) on every refinement reward and 0 on format. This is
  the guard against the known collapse where the policy learns to emit no offsets at all: a
  missing or short ``<offset>`` turn is never safer than an honest attempt.
- "Lazy keep" guard: a point kept (``<OFF_0_0>``) whose label says it must move or be deleted
  gets no credit (its score is capped at 0), so keeping every point is not a free +1.
- Masks are bool arrays; positions are pixel coordinates of the full image and are mapped onto
  a mask of any resolution (the table ``[h, w]`` or the full image) by :func:`inside`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..decode import TableDecoder
from ..masks import gt_at, ignore_mask
from ..metrics.instances import box_recall_precision, point_recall_precision
from ..metrics.instances import f1 as instance_f1
from ..tokens import Box, Grid, ParseError, decode_box, parse, positions
from ..tokens.codec import Grounding
from ..tokens.answers import MULTI_TASKS, parse_instances
from ..tokens.rules import box_iou, mask_iou, parse_refinement
from .table import default_weights, stage_of

XY = tuple[float, float]
Step = tuple[int, int] | None
BoxXYXY = Sequence[float]

MASK_IOU_MAX = 2.0
BOX_MAX = 2.0


# ---------------------------------------------------------------- parsing and format
def _parse_or_none(text: str, n: int) -> list | None:
    try:
        return parse(text, n)
    except (ParseError, ValueError):
        return None


def parse_grounding(completion: str, n: int, kind: str) -> Grounding | None:
    """The one grounding of ``kind`` a strictly formatted answer holds, else None."""
    items = _parse_or_none(completion, n)
    if items is None or len(items) != 1 or items[0].kind != kind:
        return None
    return items[0]


def format_reward(completion: str, n: int, kind: str) -> float:
    """1.0 iff ``completion`` parses strictly into exactly one grounding of ``kind``, else 0.0."""
    return 1.0 if parse_grounding(completion, n, kind) is not None else 0.0


def refinement_format_reward(completion: str, previous: str, n: int) -> float:
    """1.0 iff ``completion`` is one ``<offset>`` turn whose groups match ``previous``'s
    groundings one-to-one with exactly one offset (or ``<DELETE>``) per anchor, else 0.0."""
    return 1.0 if parse_refinement(completion, previous, n) is not None else 0.0


def repetition_reward(completion: str, n: int) -> float:
    """Non-repetition: ``1 - duplicates / anchors`` over the anchors of ``<seg>`` and ``<point>``
    groundings (duplicates = anchors - distinct anchors, per kind). Box corners and polylines
    are exempt (a one-cell box and a closed polyline repeat legitimately), as are refinement
    turns; an answer with no such anchors scores 1.0; an unparseable answer 0.0."""
    items = _parse_or_none(completion, n)
    if items is None:
        return 0.0
    total = dups = 0
    for kind in ("seg", "point"):
        anchors = [a for it in items if it.kind == kind for a in it.anchors]
        total += len(anchors)
        dups += len(anchors) - len(set(anchors))
    return 1.0 - dups / total if total else 1.0


# ---------------------------------------------------------------- geometry
def inside(mask: np.ndarray, points: Sequence[XY | None], width: float, height: float) -> np.ndarray:
    """Whether each pixel position lies in ``mask`` (any resolution covering the image).

    A position samples the mask pixel that contains it, ``floor(x * w / width)``; positions off
    the image and None (deleted) are outside.
    """
    h, w = mask.shape
    out = np.zeros(len(points), bool)
    for k, p in enumerate(points):
        if p is None:
            continue
        c, r = math.floor(p[0] * w / width), math.floor(p[1] * h / height)
        out[k] = 0 <= c < w and 0 <= r < h and bool(mask[r, c])
    return out


def corner_l1(pred: BoxXYXY, gt: BoxXYXY, width: float, height: float) -> float:
    """Mean absolute corner error, x normalised by ``width`` and y by ``height``."""
    scale = (width, height, width, height)
    return float(np.mean([abs(p - g) / s for p, g, s in zip(pred, gt, scale)]))


# ---------------------------------------------------------------- stage 1: grid answers
def mask_iou_reward(iou: float) -> float:
    """Piecewise mask reward, in [0, 2]: ``iou + 0.5*[iou >= 0.5] + 0.5*[iou >= 0.75]``.

    The linear term gives a gradient everywhere; the two bonuses reward crossing the usual
    "correct" thresholds.
    """
    iou = min(1.0, max(0.0, float(iou)))
    return iou + 0.5 * (iou >= 0.5) + 0.5 * (iou >= 0.75)


def box_reward(pred_xyxy: BoxXYXY | None, gt_xyxy: BoxXYXY, width: float, height: float) -> float:
    """Box reward, in [0, 2]: ``IoU(pred, gt) + max(0, 1 - corner_l1(pred, gt))`` where the
    corner L1 is normalised per axis by the image size. None (no box) scores 0."""
    if pred_xyxy is None:
        return 0.0
    return box_iou(pred_xyxy, gt_xyxy) + max(0.0, 1.0 - corner_l1(pred_xyxy, gt_xyxy, width, height))


def point_reward(points_xy: Sequence[XY], gt_mask: np.ndarray, width: float, height: float,
                 sparsity: float = 5.0, cost: float = 0.02) -> float:
    """Point reward, in [0, 1): ``max(0, hit * (1 - exp(-m / sparsity)) - cost * m)`` where ``m``
    is the number of points and ``hit`` the fraction inside the GT (mask at any resolution).

    The saturating factor discourages too-sparse answers, the linear cost too-dense ones; the
    clamp keeps every stage-1 reward >= 0 (a non-answer scores 0). ``sparsity=0`` drops the
    factor and ``cost=0`` the penalty: plain hit rate (used for the single-point task).
    """
    m = len(points_xy)
    if m == 0:
        return 0.0
    hit = float(inside(gt_mask, points_xy, width, height).mean())
    factor = 1.0 - math.exp(-m / sparsity) if sparsity > 0 else 1.0
    return max(0.0, hit * factor - cost * m)


# ---------------------------------------------------------------- stage 2: refinement
def refine_point_score(was_inside: bool, now_inside: bool, deleted: bool, valid_delete: bool) -> int:
    """Per-point refinement score in {-1, 0, +1}.

    - ``<DELETE>``: +1 if valid (no position of the point's one-step 3x3 neighbourhood lies in
      the GT: regions ``H``/``F``), else -1 (the point was inside or could have entered);
    - moved or kept: -1 if it leaves the GT (was inside, now outside); +1 if it ends inside
      (entering or staying); 0 if it stays outside.
    """
    if deleted:
        return 1 if valid_delete else -1
    if was_inside and not now_inside:
        return -1
    return 1 if now_inside else 0


def refine_point_scores(anchors: Sequence[tuple[int, int]], steps: Sequence[Step], gt_mask: np.ndarray,
                        grid: Grid, regions: str, offsets: str | None = None,
                        ignore: np.ndarray | None = None) -> list[int]:
    """:func:`refine_point_score` for each anchor moved by its step; ``regions``/``offsets`` are
    the target's ``n*n`` raster strings. With ``offsets`` the lazy-keep guard applies: a kept
    point whose labelled answer is not ``<OFF_0_0>`` (index 4) scores at most 0. With ``ignore``
    (full-size bool), a point that ends in the ignore region (or is deleted there) scores 0:
    those pixels are neither right nor wrong."""
    n = grid.n
    before = inside(gt_mask, [grid.anchor(i, j) for i, j in anchors], grid.width, grid.height)
    after = inside(gt_mask, [None if s is None else grid.position(i, j, s) for (i, j), s in zip(anchors, steps)],
                   grid.width, grid.height)
    out = []
    for k, ((i, j), s) in enumerate(zip(anchors, steps)):
        score = refine_point_score(bool(before[k]), bool(after[k]), s is None, regions[j * n + i] in "HF")
        if offsets is not None and s == (0, 0) and offsets[j * n + i] != "4":
            score = min(score, 0)
        if ignore is not None:
            end = grid.anchor(i, j) if s is None else grid.position(i, j, s)
            if inside(ignore, [end], grid.width, grid.height)[0]:
                score = 0
        out.append(score)
    return out


def refine_point_reward(scores: Sequence[int]) -> float:
    """Per-answer refinement reward: the mean point score, in [-1, 1] (-1 for no points)."""
    return float(np.mean(scores)) if len(scores) else -1.0


def box_refine_gain(before_xyxy: BoxXYXY, after_xyxy: BoxXYXY | None, gt_xyxy: BoxXYXY,
                    width: float, height: float) -> float:
    """``clip((box_reward(after) - box_reward(before)) / 2, -1, 1)``: the change in box IoU plus
    the decrease of the normalised corner L1, halved into [-1, 1]. A deleted corner scores -1."""
    if after_xyxy is None:
        return -1.0
    gain = box_reward(after_xyxy, gt_xyxy, width, height) - box_reward(before_xyxy, gt_xyxy, width, height)
    return float(min(1.0, max(-1.0, gain / 2)))


def mask_iou_gain(iou_before: float, iou_after: float) -> float:
    """``iou_after - iou_before``, in [-1, 1]."""
    return float(iou_after) - float(iou_before)


# ---------------------------------------------------------------- scoring a sample's target
def gt_mask(mask_rle: dict, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A target's GT at full resolution, or at ``shape`` by nearest neighbour (cached, read-only)."""
    return gt_at(mask_rle, shape)


def target_iou(pred: np.ndarray, target: dict, shape: tuple[int, int]) -> float:
    """IoU of a decoded mask (at ``shape``) with a sample target's GT, the shared rule of
    ``tokens.rules.mask_iou``: ignore pixels (``ignore_rle``) excluded; a no-target query scores 1.0
    for an empty answer and 0.0 for any other."""
    gt = gt_mask(target["mask_rle"], shape)
    return mask_iou(pred, gt, ignore_mask(target, shape), empty=1.0 if target.get("no_target") else 0.0)


# ---------------------------------------------------------------- multi-instance answers
def points_f1_reward(points_xy: Sequence[XY | None], instance_masks: Sequence[np.ndarray]) -> float:
    """``points``, in [0, 1]: point-in-mask F1 times the count penalty ``min(1, gt / pred)``.

    Matching is HumanRef's (an instance takes the first unused point on its mask, a point's pixel
    rounded). Nobody to point at (a rejection): 1 for the empty answer, else 0."""
    pts = [p for p in points_xy if p is not None]
    if not instance_masks:
        return 1.0 if not pts else 0.0
    if not pts:
        return 0.0
    recall, precision = point_recall_precision(list(instance_masks), pts)
    return instance_f1(precision, recall) * min(1.0, len(instance_masks) / len(pts))


def boxes_f1_reward(boxes: Sequence[BoxXYXY | None], gt_boxes: Sequence[BoxXYXY]) -> float:
    """``boxes``, in [0, 1]: F1 of the box set at IoU 0.5 (HumanRef's greedy matching), so a
    missed box lowers recall and a stray one precision. A rejection: 1 for the empty answer."""
    pred = [list(b) for b in boxes if b is not None]
    if not gt_boxes:
        return 1.0 if not pred else 0.0
    recall, precision = box_recall_precision([list(b) for b in gt_boxes], pred, 0.5)
    return instance_f1(precision, recall)


def score_instances(completion: str, target: dict, grid: Grid, kind: str) -> dict[str, float]:
    """Stage-1 rewards of a ``points`` / ``boxes`` answer: ``format``, ``repetition`` (points
    only: repeated anchors) and ``points_f1`` / ``boxes_f1``. ``target["instances"]``: the
    query's ``[{"box", "mask_rle"}]`` (empty: nobody matches)."""
    scores = {"format": 0.0, "repetition": 0.0, "points_f1": 0.0, "boxes_f1": 0.0}
    try:
        items = parse_instances(completion, grid.n, kind)
    except (ParseError, ValueError):
        return scores
    scores["format"] = 1.0
    scores["repetition"] = repetition_reward(completion, grid.n) if items else 1.0
    inst = target.get("instances") or []
    if kind == "points":
        pts = [positions(p, grid)[0] for p in items]
        scores["points_f1"] = points_f1_reward(pts, [gt_at(i["mask_rle"]) for i in inst])
    else:
        scores["boxes_f1"] = boxes_f1_reward([decode_box(b, grid) for b in items], [i["box"] for i in inst])
    return scores


def score_grid_answer(completion: str, target: dict, decoder: TableDecoder | None, grid: Grid,
                      kind: str) -> dict[str, float]:
    """Stage-1 rewards of a grid answer for one sample target (``mask_rle``, ``box``).

    Keys: ``format``, ``repetition``, ``mask_iou`` (seg; IoU at the table resolution, as
    ``token_iou``), ``box`` (box), ``point`` (point: hit; seg: anchors as points with the
    sparsity terms). Inapplicable rewards are 0; an unparseable answer scores 0 everywhere.
    """
    if kind in MULTI_TASKS:
        return score_instances(completion, target, grid, kind)
    scores = {"format": 0.0, "repetition": 0.0, "mask_iou": 0.0, "box": 0.0, "point": 0.0}
    g = parse_grounding(completion, grid.n, kind)
    if g is None:
        return scores
    scores["format"] = 1.0
    scores["repetition"] = repetition_reward(completion, grid.n)
    if kind == "seg":
        if decoder is None:
            raise ValueError("a <seg> answer needs the sample's TableDecoder")
        gt_small = gt_mask(target["mask_rle"], (decoder.h, decoder.w))
        scores["mask_iou"] = mask_iou_reward(target_iou(decoder.decode(list(g.anchors)), target, (decoder.h, decoder.w)))
        scores["point"] = point_reward(positions(g, grid), gt_small, grid.width, grid.height)
    elif kind == "box":
        scores["box"] = box_reward(decode_box(g, grid), target["box"], grid.width, grid.height)
    elif kind == "point":
        scores["point"] = point_reward(positions(g, grid), gt_mask(target["mask_rle"]), grid.width,
                                       grid.height, sparsity=0.0, cost=0.0)
    return scores


def score_refinement(completion: str, previous: str, target: dict, decoder: TableDecoder | None,
                     grid: Grid) -> dict[str, float]:
    """Stage-2 rewards of a refinement answer to ``previous`` for one sample target
    (``mask_rle``, ``box``, ``regions``, ``offsets``).

    Keys: ``format``; ``refine_point`` (mean point score over ``<seg>``/``<point>``/``<pl>``
    anchors, lazy-keep guard on); ``box_gain`` (mean :func:`box_refine_gain` over boxes);
    ``mask_gain`` (mean :func:`mask_iou_gain` over ``<seg>`` groups, decoded from the table);
    ``noop`` (-1 when the answer gives no valid offsets, or keeps every ``<seg>``/``<point>``/
    ``<pl>`` anchor while the labels say one must move or be deleted; else 0).
    Inapplicable rewards are 0; an unparseable / mis-counted answer scores format 0 and -1 on
    the applicable ones.
    """
    scores = {"format": 0.0, "refine_point": 0.0, "box_gain": 0.0, "mask_gain": 0.0, "noop": 0.0}
    prev_items = _parse_or_none(previous, grid.n) or []
    kinds = {it.kind for it in prev_items}
    parsed = parse_refinement(completion, previous, grid.n)
    if parsed is None:
        scores["noop"] = -1.0
        if kinds & {"seg", "point", "pl"}:
            scores["refine_point"] = -1.0
        if "box" in kinds:
            scores["box_gain"] = -1.0
        if "seg" in kinds:
            scores["mask_gain"] = -1.0
        return scores
    prev, ref = parsed
    scores["format"] = 1.0
    gt_full = gt_mask(target["mask_rle"])
    points, boxes, masks = [], [], []
    kept = [(a, s) for g, grp in zip(prev, ref.groups) if not isinstance(g, Box) for a, s in zip(g.anchors, grp.steps)]
    offsets = target.get("offsets")
    if kept and offsets and all(s == (0, 0) for _, s in kept) and any(offsets[j * grid.n + i] != "4" for (i, j), _ in kept):
        scores["noop"] = -1.0
    for g, grp in zip(prev, ref.groups):
        if isinstance(g, Box):
            boxes.append(box_refine_gain(decode_box(g, grid), decode_box(g, grid, grp.steps), target["box"],
                                         grid.width, grid.height))
            continue
        points += refine_point_scores(g.anchors, grp.steps, gt_full, grid, target["regions"], target.get("offsets"),
                                      ignore_mask(target))
        if g.kind == "seg":
            if decoder is None:
                raise ValueError("a <seg> refinement needs the sample's TableDecoder")
            shape = (decoder.h, decoder.w)
            masks.append(mask_iou_gain(target_iou(decoder.decode(list(g.anchors)), target, shape),
                                       target_iou(decoder.decode(list(g.anchors), list(grp.steps)), target, shape)))
    if points:
        scores["refine_point"] = refine_point_reward(points)
    if boxes:
        scores["box_gain"] = float(np.mean(boxes))
    if masks:
        scores["mask_gain"] = float(np.mean(masks))
    return scores


def weighted_total(scores: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """``sum(weights[k] * scores[k])`` over the keys present in both (default weights)."""
    w = default_weights(stage_of(scores)) if weights is None else weights
    return float(sum(w[k] * v for k, v in scores.items() if k in w))


def noop_outside_penalty(completion: str, previous: str, target: dict, grid: Grid) -> float:
    """No-op guard consistent with any decoder: -1 when an offset turn keeps every ``<seg>`` /
    ``<point>`` / ``<pl>`` anchor (all ``<OFF_0_0>``) although at least one of those anchors lies
    outside the GT (so it must move or be deleted); an unparseable / mis-counted turn is -1 too;
    else 0.

    Unlike ``score_refinement``'s ``noop`` (which follows the offset labels), keeping anchors
    that already sit inside the GT is not penalised: through the candidate table a "move deeper"
    step need not change the decoded mask, so following those labels is not always a gain.
    """
    parsed = parse_refinement(completion, previous, grid.n)
    if parsed is None:
        return -1.0
    prev, ref = parsed
    kept = [(a, s) for g, grp in zip(prev, ref.groups) if not isinstance(g, Box) for a, s in zip(g.anchors, grp.steps)]
    if not kept or any(s != (0, 0) for _, s in kept):
        return 0.0
    where = inside(gt_mask(target["mask_rle"]), [grid.anchor(i, j) for (i, j), _ in kept], grid.width, grid.height)
    return -1.0 if not where.all() else 0.0
