"""The TuSimple-style lane metric on cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from getok_data.metrics.lanes import frame_score, lane_metrics, pixel_thresh_for, polyline_xs

YS = np.arange(240, 720, 10, dtype=float)  # TuSimple 0313 rows: 48


def vertical(x: float) -> np.ndarray:
    return np.full(len(YS), float(x))


def test_exact_threshold_and_slope():
    gt = [vertical(300)]
    assert frame_score([vertical(319)], gt, YS).matched == 1
    off = frame_score([vertical(321)], gt, YS)  # 21 px > 20 px / cos(0)
    assert (off.accuracy, off.fp, off.fn, off.matched) == (0.0, 1.0, 1.0, 0)
    slanted = 100 + (YS - 240)  # slope 1: threshold 20 / cos(45 deg) = 28.28 px
    assert frame_score([slanted + 28], [slanted], YS).accuracy == 1.0
    assert frame_score([slanted + 29], [slanted], YS).accuracy == 0.0
    assert pixel_thresh_for(1640) == pytest.approx(25.625)
    assert frame_score([vertical(323)], gt, YS, pixel_thresh=pixel_thresh_for(1640)).matched == 1


def test_partial_lanes_missing_and_extra_predictions():
    gt = [vertical(x) for x in (200, 400, 600, 800)]
    part = vertical(400)
    part[: int(0.2 * len(YS)) + 1] = -2  # 10 of 48 rows missing: 79% < 85%
    s = frame_score([gt[0], part, gt[2], gt[3], vertical(1000)], gt, YS)
    assert s.matched == 3 and s.fp == pytest.approx(2 / 5) and s.fn == pytest.approx(1 / 4)
    assert s.accuracy == pytest.approx((3 + 38 / 48) / 4)
    assert frame_score(gt * 2, gt[:1] * 1, YS).fn == 1.0  # more than #gt + 2 predictions: (0, 0, 1)
    # more than 4 GT lanes: one FN forgiven and the worst accuracy dropped
    five = gt + [vertical(1000)]
    s5 = frame_score(gt, five, YS)
    assert (s5.accuracy, s5.fn, s5.fp) == (1.0, 0.0, 0.0)
    # the official quirk: GT rows without a point are hits where the prediction has none either
    g = vertical(500)
    g[:24] = -2
    p = vertical(500)
    p[:24] = -2
    assert frame_score([p], [g], YS).accuracy == 1.0
    with pytest.raises(ValueError, match="one x per row"):
        frame_score([vertical(1)[:5]], gt, YS)


def test_f1_from_counts_and_polyline_rows():
    gt = [vertical(x) for x in (200, 400, 600, 800)]
    frames = [frame_score(gt, gt, YS), frame_score(gt[:3] + [vertical(1100)], gt, YS)]
    m = lane_metrics(frames)
    assert (m["tp"], m["fp_lanes"], m["fn_lanes"]) == (7, 1, 1)
    assert m["f1"] == pytest.approx(0.875) and m["fn"] == pytest.approx(0.125) and m["accuracy"] == pytest.approx(0.875)
    # a decoded <pl> from (100, 700) up to (340, 460): x per row, -2 above its top
    xs = polyline_xs([(100, 700), (340, 460)], YS)
    assert xs[YS == 700][0] == 100 and xs[YS == 580][0] == pytest.approx(220) and (xs[YS < 460] == -2).all()
    assert frame_score([xs], [xs.copy()], YS).accuracy == 1.0
