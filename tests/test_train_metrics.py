"""Evaluation metrics on hand-made predictions, against values worked out by hand."""
import numpy as np
import pytest

from getok_data.decode import TableDecoder
from getok_data.masks import mask_to_rle
from getok_data.tokens import Box, Mask, Point
from getok_data.train.data import Example
from getok_data.train.evaluate import Outcome, requantise
from getok_data.train.metrics import Meter, box_iou, point_in_mask


def rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_giou_and_ciou_by_hand():
    gt1, gt2 = rect(10, 10, 0, 4, 0, 5), rect(10, 10, 0, 10, 0, 10)  # 20 px, 100 px
    meter = Meter()
    # example 1: pred 0:4 x 0:10 -> inter 20, union 40 -> IoU 0.5
    assert meter.add_mask(rect(10, 10, 0, 4, 0, 10), gt1) == pytest.approx(0.5)
    # example 2: pred is the top half -> inter 50, union 100 -> IoU 0.5... make it a quarter: 25/100
    assert meter.add_mask(rect(10, 10, 0, 5, 0, 5), gt2) == pytest.approx(0.25)
    # example 3: no parsable answer -> empty prediction: inter 0, union 20
    assert meter.add_mask(None, gt1) == 0.0
    s = meter.summary()
    assert s["mask_giou"] == pytest.approx((0.5 + 0.25 + 0.0) / 3)
    assert s["mask_ciou"] == pytest.approx((20 + 25 + 0) / (40 + 100 + 20))
    assert s["n"] == 3


def test_box_iou_and_accuracy_thresholds():
    gt = (0.0, 0.0, 10.0, 10.0)
    assert box_iou((0, 0, 10, 10), gt) == 1.0
    assert box_iou((0, 0, 10, 5), gt) == pytest.approx(0.5)  # 50 / 100
    assert box_iou((5, 5, 15, 15), gt) == pytest.approx(25 / 175)
    assert box_iou((20, 20, 30, 30), gt) == 0.0 and box_iou(None, gt) == 0.0
    meter = Meter()
    for pred in [(0, 0, 10, 10), (0, 0, 10, 5), (0, 0, 10, 8.5), (5, 5, 15, 15), None]:
        meter.add_box(pred, gt)
    s = meter.summary()
    # IoUs: 1.0, 0.5, 0.85, 0.143, 0 -> >= 0.5: 3 of 5; >= 0.8: 2 of 5
    assert s["box_acc50"] == pytest.approx(3 / 5) and s["box_acc80"] == pytest.approx(2 / 5)


def test_point_hit_and_format_rate():
    gt = rect(10, 20, 2, 5, 3, 9)  # rows 2..4, cols 3..8
    assert point_in_mask((3.0, 2.0), gt) and point_in_mask((8.99, 4.99), gt)
    assert not point_in_mask((9.0, 4.0), gt) and not point_in_mask((-0.5, 3), gt) and not point_in_mask(None, gt)
    meter = Meter()
    for xy in [(4.5, 3.5), (9.5, 3.5), None, (3.0, 2.0)]:
        meter.add_point(xy, gt)
    for ok in [True, False, True, True]:
        meter.add_format(ok)
    s = meter.summary()
    assert s["point_hit"] == pytest.approx(2 / 4) and s["format_ok"] == pytest.approx(3 / 4)


def cell_table(n=4, size=8):
    """A table where grid point (i, j)'s mask is its own 2x2 cell at table resolution 8x8."""
    masks = np.stack([rect(size, size, 2 * j, 2 * j + 2, 2 * i, 2 * i + 2) for j in range(n) for i in range(n)])
    return {"index": np.arange(n * n, dtype=np.int32).reshape(n, n), "shape": np.array([size, size], np.int32),
            "masks": np.packbits(masks.reshape(n * n, -1), axis=1), "scores": np.ones(n * n, np.float32)}


def test_outcomes_decode_through_the_table_and_refine():
    gt = rect(8, 8, 0, 4, 0, 4)  # grid points (0,0) (1,0) (0,1) (1,1)
    info = {"n": 4, "m": 8, "width": 8, "height": 8, "mask_rle": mask_to_rle(gt), "box": [0, 0, 4, 4]}
    ex = Example("k", 0, "s", "seg", "", np.zeros((4, 4, 3), np.uint8), info=info, table=cell_table())
    dec = TableDecoder(ex.table, 4)
    o = Outcome(ex, "seg", dec)
    assert o.set_answer("<seg><grid_0_0><grid_2_0></seg>")
    inter, union = np.count_nonzero(o.result & gt), np.count_nonzero(o.result | gt)
    assert (inter, union) == (4, 20)  # one of four GT cells right, one cell wrong
    # refine: move (0,0) right half a cell: the position lies on the left edge of (1,0)'s cell, whose
    # mask stands for it; delete (2,0)
    assert o.refine("<offset><seg><OFF_1_0><DELETE></seg></offset>", "<seg><grid_0_0><grid_2_0></seg>")
    assert np.array_equal(o.result, rect(8, 8, 0, 2, 2, 4))
    assert o.item == Mask(((1, 0),))
    assert not o.refine("<offset><seg><OFF_0_0><OFF_0_0></seg></offset>", "<seg><grid_1_0></seg>")  # wrong count
    assert o.item is None and o.result is None


def test_requantise_boxes_and_points():
    from getok_data.tokens import Grid

    g = Grid(4, 8, 8)
    dec = TableDecoder(cell_table(), 4)
    # a step (half a cell) hands the anchor to the neighbour in the direction of the move
    assert requantise(Point((1, 1)), [(1, 0)], g, dec) == Point((2, 1))
    assert requantise(Point((1, 1)), [(-1, 1)], g, dec) == Point((0, 0))  # dv = +1 is up
    assert requantise(Point((0, 0)), [(-1, 0)], g, dec) == Point((0, 0))  # clamped to the grid
    assert requantise(Point((1, 1)), [None], g, dec) is None
    assert requantise(Box((0, 0), (2, 2)), [(0, 0), (1, -1)], g, dec) == Box((0, 0), (3, 3))
    assert requantise(Mask(((0, 0), (3, 3))), [None, (1, 0)], g, dec) is None  # deleted, moved off the grid
