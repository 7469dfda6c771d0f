"""GRPO rewards on hand-made cases: formulas, the valid-DELETE rule, guards, edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from getok_data.decode import TableDecoder
from getok_data.labelling import label_regions
from getok_data.masks import mask_to_rle
from getok_data.rewards import (
    box_iou, box_refine_gain, box_reward, format_reward, inside, mask_iou_gain, mask_iou_reward,
    point_reward, refine_point_reward, refine_point_score, refine_point_scores, refinement_format_reward,
    repetition_reward, score_grid_answer, score_refinement, weighted_total,
)
from getok_data.rewards.trl import completion_text, format_reward as trl_format
from getok_data.tokens import OFFSET_STEPS, Grid

N = 4
GRID = Grid(N, 64, 64)  # cells of 16 px, one offset step = 8 px


def square_gt() -> np.ndarray:
    gt = np.zeros((64, 64), bool)
    gt[16:48, 16:48] = True  # exactly the cells (1..2, 1..2)
    return gt


def cell_decoder() -> TableDecoder:
    """An 8x8 table where grid point (i, j) owns its 2x2 block: the cells tile the image."""
    masks = np.zeros((N * N, 8, 8), bool)
    for j in range(N):
        for i in range(N):
            masks[j * N + i, 2 * j:2 * j + 2, 2 * i:2 * i + 2] = True
    arrays = {"index": np.arange(N * N, dtype=np.int32).reshape(N, N), "shape": np.array([8, 8], np.int32),
              "masks": np.packbits(masks.reshape(N * N, -1), axis=1)}
    return TableDecoder(arrays, N)


def target_for(gt: np.ndarray) -> dict:
    labels = label_regions(gt, GRID)
    ys, xs = np.nonzero(gt)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if gt.any() else [0.0] * 4
    return {"mask_rle": mask_to_rle(gt), "box": box, "regions": labels.regions, "offsets": labels.offsets_str}


def test_format_reward():
    assert format_reward("<seg><grid_1_1><grid_2_2></seg>", N, "seg") == 1.0
    assert format_reward(" <point><grid_0_3></point>\n", N, "point") == 1.0
    assert format_reward("<seg><grid_1_1></seg>", N, "box") == 0.0  # wrong kind
    assert format_reward("<seg><grid_1_1></seg><seg><grid_2_2></seg>", N, "seg") == 0.0  # two groundings
    assert format_reward("<seg><grid_4_0></seg>", N, "seg") == 0.0  # outside the grid
    assert format_reward("The answer is <seg><grid_1_1></seg>", N, "seg") == 0.0
    assert format_reward("", N, "seg") == 0.0
    assert format_reward("<box><grid_2_2><grid_1_1></box>", N, "box") == 0.0  # corners out of order


def test_refinement_format_reward():
    prev = "<seg><grid_1_1><grid_2_2></seg>"
    assert refinement_format_reward("<offset><seg><OFF_0_0><DELETE></seg></offset>", prev, N) == 1.0
    assert refinement_format_reward("<offset><seg><OFF_0_0></seg></offset>", prev, N) == 0.0  # too few offsets
    assert refinement_format_reward("<offset><seg><OFF_0_0><OFF_0_0><OFF_0_0></seg></offset>", prev, N) == 0.0
    assert refinement_format_reward("<offset><pl><OFF_0_0><DELETE></pl></offset>", prev, N) == 0.0  # wrapper
    assert refinement_format_reward("<offset></offset>", prev, N) == 0.0  # no offsets at all
    assert refinement_format_reward("", prev, N) == 0.0
    assert refinement_format_reward(prev, prev, N) == 0.0  # a grid answer is not a refinement
    assert refinement_format_reward("<offset><seg><OFF_0_0></seg></offset>", "junk", N) == 0.0
    two = "<box><grid_0_0><grid_1_1></box><seg><grid_2_2></seg>"
    assert refinement_format_reward("<offset><box><OFF_1_0><OFF_0_-1></box><seg><DELETE></seg></offset>", two, N) == 1.0
    assert refinement_format_reward("<offset><box><OFF_1_0><OFF_0_-1></box></offset>", two, N) == 0.0


def test_repetition_reward():
    assert repetition_reward("<seg><grid_1_1><grid_2_2></seg>", N) == 1.0
    assert repetition_reward("<seg><grid_1_1><grid_1_1><grid_2_2></seg>", N) == pytest.approx(2 / 3)
    assert repetition_reward("<seg><grid_1_1><grid_1_1><grid_1_1><grid_1_1></seg>", N) == pytest.approx(0.25)
    assert repetition_reward("<box><grid_1_1><grid_1_1></box>", N) == 1.0  # a one-cell box is legitimate
    assert repetition_reward("<point><grid_1_1></point><point><grid_1_1></point>", N) == 0.5
    assert repetition_reward("nothing", N) == 0.0


def test_mask_iou_reward_pieces():
    assert mask_iou_reward(0.0) == 0.0
    assert mask_iou_reward(0.49) == pytest.approx(0.49)
    assert mask_iou_reward(0.5) == pytest.approx(1.0)
    assert mask_iou_reward(0.74) == pytest.approx(1.24)
    assert mask_iou_reward(0.75) == pytest.approx(1.75)
    assert mask_iou_reward(1.0) == pytest.approx(2.0)
    assert mask_iou_reward(1.5) == pytest.approx(2.0) and mask_iou_reward(-1) == 0.0


def test_box_reward():
    gt = [10, 10, 30, 30]
    assert box_reward(gt, gt, 100, 100) == pytest.approx(2.0)
    assert box_reward(None, gt, 100, 100) == 0.0
    shifted = [20, 10, 40, 30]
    assert box_iou(shifted, gt) == pytest.approx(1 / 3)
    assert box_reward(shifted, gt, 100, 100) == pytest.approx(1 / 3 + 1 - 0.05)
    assert box_reward([90, 90, 100, 100], [0, 0, 5, 5], 100, 100) == pytest.approx(1 - 0.925)
    assert box_iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0  # empty union


def test_inside_and_point_reward():
    gt = square_gt()
    assert inside(gt, [(20, 20), (5, 5), None, (-1, 20), (64, 20)], 64, 64).tolist() == [True, False, False, False, False]
    small = gt[::8, ::8]  # same GT at 8x8: positions map by floor(x * 8 / 64)
    assert inside(small, [(20, 20), (5, 5)], 64, 64).tolist() == [True, False]
    pts = [(20, 20)] * 5
    assert point_reward(pts, gt, 64, 64) == pytest.approx((1 - math.exp(-1)) - 0.1)
    half = [(20, 20), (5, 5)]
    assert point_reward(half, gt, 64, 64) == pytest.approx(max(0, 0.5 * (1 - math.exp(-0.4)) - 0.04))
    assert point_reward([(5, 5)] * 3, gt, 64, 64) == 0.0  # clamped at 0, never below a non-answer
    assert point_reward([], gt, 64, 64) == 0.0
    assert point_reward([(20, 20)], np.zeros((64, 64), bool), 64, 64) == 0.0  # empty GT
    assert point_reward([(20, 20)], gt, 64, 64, sparsity=0, cost=0) == 1.0


def test_refine_point_score_table():
    # (was_inside, now_inside, deleted, valid_delete) -> score
    assert refine_point_score(True, False, False, False) == -1  # leaves the GT
    assert refine_point_score(False, True, False, False) == 1  # enters
    assert refine_point_score(True, True, False, False) == 1  # stays inside
    assert refine_point_score(False, False, False, True) == 0  # stays outside without deleting
    assert refine_point_score(False, False, True, True) == 1  # valid DELETE
    assert refine_point_score(True, False, True, False) == -1  # DELETE of a point that was inside
    assert refine_point_score(False, False, True, False) == -1  # DELETE of a point that could enter


def test_refine_point_scores_valid_delete_rule():
    gt = np.zeros((64, 64), bool)
    gt[14:44, 14:44] = True
    t = target_for(gt)
    regions = t["regions"]
    could_enter, inner, far, edge = (0, 0), (1, 1), (3, 3), (2, 2)  # at (8,8) (24,24) (56,56) (40,40)
    # (0,0) is outside but one step (1,-1) lands at (16,16), inside: Ring, so DELETE is invalid
    assert [regions[j * N + i] for i, j in (could_enter, inner, far, edge)] == ["R", "I", "H", "R"]
    anchors = [could_enter, inner, far]
    assert refine_point_scores(anchors, [None, None, None], gt, GRID, regions) == [-1, -1, 1]
    assert refine_point_scores(anchors, [(1, -1), (0, 0), (0, 0)], gt, GRID, regions) == [1, 1, 0]
    assert refine_point_scores([edge], [(1, -1)], gt, GRID, regions) == [-1]  # (48,48): leaves the GT
    assert refine_point_scores([inner], [(-1, 1)], gt, GRID, regions) == [1]  # stays inside
    # the labelled answers score +1 everywhere, with the lazy-keep guard on
    everywhere = [(i, j) for j in range(N) for i in range(N)]
    steps = [None if t["offsets"][j * N + i] == "9" else OFFSET_STEPS[int(t["offsets"][j * N + i])]
             for i, j in everywhere]
    assert refine_point_scores(everywhere, steps, gt, GRID, regions, t["offsets"]) == [1] * (N * N)


def test_lazy_keep_guard():
    gt = np.zeros((64, 64), bool)
    gt[20:64, 20:64] = True  # anchor (1, 1) at (24, 24) is inside but near the edge: labelled to move
    t = target_for(gt)
    k = 1 * N + 1
    assert t["regions"][k] == "R" and t["offsets"][k] != "4"
    assert refine_point_scores([(1, 1)], [(0, 0)], gt, GRID, t["regions"]) == [1]  # plain rule: stays inside
    assert refine_point_scores([(1, 1)], [(0, 0)], gt, GRID, t["regions"], t["offsets"]) == [0]  # guard
    assert refine_point_reward([]) == -1.0


def test_box_refine_gain_and_mask_iou_gain():
    gt = [10, 10, 30, 30]
    assert box_refine_gain([12, 12, 30, 30], gt, gt, 100, 100) > 0
    assert box_refine_gain(gt, [12, 12, 30, 30], gt, 100, 100) < 0
    assert box_refine_gain(gt, gt, gt, 100, 100) == 0.0
    assert box_refine_gain(gt, None, gt, 100, 100) == -1.0  # a deleted corner
    assert -1.0 <= box_refine_gain([90, 90, 100, 100], gt, gt, 100, 100) <= 1.0
    assert mask_iou_gain(0.25, 0.75) == 0.5 and mask_iou_gain(0.5, 0.5) == 0.0


def test_score_grid_answer():
    gt, dec = square_gt(), cell_decoder()
    t = target_for(gt)
    seg = score_grid_answer("<seg><grid_1_1><grid_2_1><grid_1_2><grid_2_2></seg>", t, dec, GRID, "seg")
    assert seg["format"] == 1.0 and seg["repetition"] == 1.0
    assert seg["mask_iou"] == pytest.approx(2.0)
    assert seg["point"] == pytest.approx((1 - math.exp(-0.8)) - 0.08)
    half = score_grid_answer("<seg><grid_1_1><grid_2_1></seg>", t, dec, GRID, "seg")
    assert half["mask_iou"] == pytest.approx(1.0)  # IoU 0.5 -> 0.5 + 0.5
    box = score_grid_answer("<box><grid_1_1><grid_2_2></box>", t, dec, GRID, "box")
    assert 0 < box["box"] < 2 and box["mask_iou"] == 0.0
    assert score_grid_answer("<point><grid_1_2></point>", t, None, GRID, "point")["point"] == 1.0
    assert score_grid_answer("<point><grid_0_0></point>", t, None, GRID, "point")["point"] == 0.0
    bad = score_grid_answer("no idea", t, dec, GRID, "seg")
    assert set(bad.values()) == {0.0}
    assert weighted_total(seg) > weighted_total(bad) == 0.0


def test_score_grid_answer_empty_gt():
    empty = np.zeros((64, 64), bool)
    t = {"mask_rle": mask_to_rle(empty), "box": [0.0, 0.0, 0.0, 0.0]}
    s = score_grid_answer("<seg><grid_1_1></seg>", t, cell_decoder(), GRID, "seg")
    assert s["format"] == 1.0 and s["mask_iou"] == 0.0 and s["point"] == 0.0


def test_score_refinement():
    gt, dec = square_gt(), cell_decoder()
    t = target_for(gt)
    prev = "<seg><grid_3_0><grid_1_1></seg>"  # (3,0): no step reaches the GT; (1,1): Inside
    good = score_refinement("<offset><seg><DELETE><OFF_0_0></seg></offset>", prev, t, dec, GRID)
    assert good["format"] == 1.0 and good["refine_point"] == 1.0
    assert good["mask_gain"] == pytest.approx(0.25 - 0.2)  # 1 cell of 4 vs 2 cells' union over 5
    assert good["box_gain"] == 0.0 and good["noop"] == 0.0  # no box in the previous answer
    lazy = score_refinement("<offset><seg><OFF_0_0><OFF_0_0></seg></offset>", prev, t, dec, GRID)
    assert lazy["format"] == 1.0 and lazy["noop"] == -1.0  # (3,0) had to be deleted
    assert lazy["refine_point"] == pytest.approx(0.5)  # (3,0) stays outside: 0; (1,1) kept inside: +1
    fine = score_refinement("<offset><seg><OFF_0_0></seg></offset>", "<seg><grid_1_1></seg>", t, dec, GRID)
    assert fine["noop"] == 0.0 and fine["refine_point"] == 1.0  # keeping is right for an Inside point
    for wrong in ("<offset><seg><OFF_0_0></seg></offset>", "<offset></offset>", "sure!", ""):
        s = score_refinement(wrong, prev, t, dec, GRID)
        assert s == {"format": 0.0, "refine_point": -1.0, "box_gain": 0.0, "mask_gain": -1.0, "noop": -1.0}, wrong
    box_prev = "<box><grid_0_0><grid_3_3></box>"
    better = score_refinement("<offset><box><OFF_1_-1><OFF_-1_1></box></offset>", box_prev, t, None, GRID)
    assert better["format"] == 1.0 and better["box_gain"] > 0 and better["refine_point"] == 0.0
    assert score_refinement("<offset><box><DELETE><OFF_0_0></box></offset>", box_prev, t, None, GRID)["box_gain"] == -1.0
    assert score_refinement("nope", box_prev, t, None, GRID)["box_gain"] == -1.0


def test_completion_text_forms():
    s = "<point><grid_1_1></point>"
    assert completion_text(s) == s
    assert completion_text([{"role": "assistant", "content": s}]) == s
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": s}]}]) == s
    assert completion_text({"role": "assistant", "content": s}) == s
    assert completion_text([]) == ""
    cols = {"stage": ["grid"], "task": ["point"], "grid_n": [N], "grid_m": [2 * N], "width": [64], "height": [64],
            "gt_box": [[16.0, 16.0, 48.0, 48.0]], "gt_mask_rle": [mask_to_rle(square_gt())], "cand_npz": [""],
            "previous": [""], "regions": [""], "offsets": [""]}
    assert trl_format(None, [[{"role": "assistant", "content": s}]], **cols, completion_ids=[[1]]) == [1.0]
    with pytest.raises(KeyError):
        trl_format(None, [s], task=["point"])
