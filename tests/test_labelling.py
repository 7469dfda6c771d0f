"""Region/offset labelling invariants, box corners and refinement samples."""
import math

import cv2
import numpy as np
import pytest

from getok_data.labelling import (
    DELETE_ID, STEPS, box_corner_steps, deepest_anchor, label_regions, refinement_samples, stable_rng,
)
from getok_data.tokens import OFFSET_STEPS, Grid, parse


def shapes(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
    cv2.circle(m, (cx, cy), int(rng.integers(8, min(h, w) // 3)), 1, -1)
    cv2.circle(m, (cx, cy), int(rng.integers(2, 8)), 0, -1)  # a hole
    cv2.line(m, (0, int(rng.integers(0, h))), (w - 1, int(rng.integers(0, h))), 1, 2)  # a thin part
    return m.astype(bool)


def pixel(gt, x, y):
    h, w = gt.shape
    xi, yi = math.floor(x), math.floor(y)
    return 0 <= xi < w and 0 <= yi < h and bool(gt[yi, xi])


@pytest.mark.parametrize("seed,size,n", [(0, (240, 320), 16), (1, (333, 500), 32), (2, (400, 210), 12), (3, (97, 131), 8)])
def test_region_invariants(seed, size, n):
    h, w = size
    gt = shapes(seed, h, w)
    grid = Grid(n, w, h)
    sx, sy = grid.step
    labels = label_regions(gt, grid, far_steps=2.0)
    assert len(labels.regions) == n * n and set(labels.regions) <= set("IRHF")
    for k, region in enumerate(labels.regions):
        i, j = k % n, k // n
        pos = [grid.position(i, j, s) for s in STEPS]
        inside = [pixel(gt, x, y) for x, y in pos]
        if region in "HF":
            assert not any(inside) and labels.step(k) is None and labels.offsets[k] == DELETE_ID
            x, y = grid.anchor(i, j)
            xs = slice(max(0, math.floor(x - 2 * sx)), max(0, math.floor(x + 2 * sx) + 1))
            ys = slice(max(0, math.floor(y - 2 * sy)), max(0, math.floor(y + 2 * sy) + 1))
            assert gt[ys, xs].any() == (region == "H")
        elif region == "I":
            # Inside the GT eroded by one step: the whole +-1-step box is GT.
            x, y = grid.anchor(i, j)
            x0, x1, y0, y1 = math.floor(x - sx), math.floor(x + sx) + 1, math.floor(y - sy), math.floor(y + sy) + 1
            assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h and gt[y0:y1, x0:x1].all()
            assert labels.step(k) == (0, 0)
        else:  # Ring: some step lands inside, and the chosen one does
            assert any(inside)
            step = labels.step(k)
            assert step is not None and pixel(gt, *grid.position(i, j, step))


def test_ring_step_goes_deepest():
    gt = np.zeros((100, 100), bool); gt[40:100, :] = True  # GT is the lower part
    grid = Grid(10, 100, 100)  # anchors at 5, 15, ...; a step is 5 px
    labels = label_regions(gt, grid)
    k = 3 * 10 + 4  # anchor (45, 35): 5 px above the GT edge; moving down (dv = -1) enters
    assert labels.regions[k] == "R" and labels.step(k) == (0, -1)


def test_box_corner_steps_reduce_error():
    grid = Grid(8, 320, 240)
    box = [33.0, 17.0, 251.0, 199.0]
    b, steps = box_corner_steps(box, grid)
    for anchor, step, corner in zip(b.anchors, steps, ((box[0], box[1]), (box[2], box[3]))):
        before = math.dist(grid.position(*anchor, (0, 0)), corner)
        after = math.dist(grid.position(*anchor, step), corner)
        assert after <= before
        assert after == min(math.dist(grid.position(*anchor, s), corner) for s in OFFSET_STEPS)


def test_deepest_anchor_is_inside():
    gt = shapes(5, 200, 300)
    i, j = deepest_anchor(gt, Grid(16, 300, 200))
    dist = cv2.distanceTransform(gt.view(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    assert (i, j) == (int(x * 16 / 300), int(y * 16 / 200))


def test_refinement_samples_parse_and_align():
    gt = shapes(7, 240, 320)
    grid = Grid(16, 320, 240)
    labels = label_regions(gt, grid)
    ys, xs = np.nonzero(gt)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    out = refinement_samples(labels, grid, box, [(3, 4), (8, 8)], k=6, samples=3,
                             weights={"I": 1, "R": 3, "H": 1, "F": 0.25}, rng=stable_rng("x", 1))
    assert [(s["kind"], s["origin"]) for s in out] == [("box", "nearest"), ("seg", "selected")] + [("seg", "sampled")] * 3
    for s in out:
        prompt, answer = parse(s["prompt"], 16)[0], parse(s["answer"], 16)[0]
        assert answer.groups[0].kind == prompt.kind
        assert len(answer.groups[0].steps) == len(prompt.anchors)
        if s["kind"] == "seg":
            for (i, j), step in zip(prompt.anchors, answer.groups[0].steps):
                assert step == labels.step(j * 16 + i)
    again = refinement_samples(labels, grid, box, [(3, 4), (8, 8)], k=6, samples=3,
                               weights={"I": 1, "R": 3, "H": 1, "F": 0.25}, rng=stable_rng("x", 1))
    assert again == out


def test_proposals_lean_towards_inside_and_ring():
    gt = np.zeros((256, 256), bool); gt[64:192, 64:192] = True
    grid = Grid(32, 256, 256)
    labels = label_regions(gt, grid)
    rng = stable_rng("p")
    from getok_data.labelling import sample_proposals
    drawn = [labels.regions[j * 32 + i] for _ in range(200)
             for i, j in sample_proposals(labels, 8, {"I": 1, "R": 3, "H": 1, "F": 0.0}, rng)]
    assert "F" not in drawn
    share_ir = sum(r in "IR" for r in drawn) / len(drawn)
    base_ir = sum(r in "IR" for r in labels.regions) / (32 * 32)
    assert share_ir > base_ir + 0.2


def test_a_delete_label_becomes_keep_where_the_points_own_mask_lies_on_the_target():
    """A thin bar between grid rows: no anchor lies on it, so the geometry says <DELETE>, but the
    point whose segment is the bar must keep it (its mask is what an answer decodes to)."""
    from getok_data.labelling import DELETE_ID, KEEP_ID, keep_masks_on_target
    from getok_data.selection import PackedTable, mostly_on

    n, h, w = 4, 32, 32
    gt = np.zeros((h, w), bool)
    gt[13:15, :] = True  # rows 13-14; anchors sit at y = 4, 12, 20, 28
    bar = gt.copy()
    bar[12] = True  # the bar's segment also holds the anchor row 12
    background = ~bar
    index = np.ones((n, n), np.int32)
    index[1, :] = 0  # grid row 1 (y = 12) picks the bar's segment
    table = PackedTable(np.packbits(np.stack([bar, background]).reshape(2, -1), axis=1), index, (h, w))
    labels = label_regions(gt, Grid(n, w, h))
    assert (labels.offsets[4:8] == DELETE_ID).all()  # by geometry: delete
    kept = keep_masks_on_target(labels, mostly_on(table, np.packbits(gt.reshape(-1))))
    assert (kept.offsets[4:8] == KEEP_ID).all() and kept.regions == labels.regions
    others = [k for k in range(n * n) if not 4 <= k < 8]
    assert (kept.offsets[others] == labels.offsets[others]).all()  # the background's points: unchanged
