"""Format version 2's superpixel: a thin object of its own colour stays one reachable segment."""
from __future__ import annotations

import cv2
import numpy as np

from getok_data.annotate import table_arrays
from getok_data.config import default_dict, load_config
from getok_data.masks import resize_nearest
from getok_data.segmenters import build_segmenter
from getok_data.selection import PackedTable, select


def stick_scene() -> tuple[np.ndarray, np.ndarray]:
    img = np.full((240, 320, 3), 128, np.uint8)
    cv2.line(img, (40, 200), (280, 60), (240, 200, 30), 4)
    cv2.circle(img, (80, 70), 40, (40, 160, 60), -1, lineType=cv2.LINE_AA)
    gt = np.zeros((240, 320), np.uint8)
    cv2.line(gt, (40, 200), (280, 60), 1, 4)
    return img, gt.astype(bool)


def stick_iou(seg, img, gt) -> float:
    pt = PackedTable.grid_of(table_arrays(seg.segment(img, 16)))
    return select(pt, np.packbits(resize_nearest(gt, pt.shape).reshape(-1)), "sorted", 0.9).token_iou


def test_thin_stick_is_representable_only_with_blend_test():
    img, gt = stick_scene()
    v1 = build_segmenter({"name": "superpixel", "blend_tol": None})
    v2 = build_segmenter({"name": "superpixel"})
    assert stick_iou(v1, img, gt) < 0.1  # the 4 px stick is dissolved into the background
    assert stick_iou(v2, img, gt) > 0.7
    assert "blend_tol" not in v1.identity and v2.identity["blend_tol"] == 60.0
    # the anti-aliased circle's edge blend is still dissolved: the circle stays one clean segment
    circle = np.zeros((240, 320), np.uint8)
    cv2.circle(circle, (80, 70), 40, 1, -1)
    t = v2.segment(img, 16)
    small = resize_nearest(circle.astype(bool), t.shape)
    m = t.masks[t.index[4, 4]]  # anchor (72.5, 67.5) lies in the circle
    assert (m & small).sum() / (m | small).sum() > 0.9


def test_multiscale_option_and_config_hash(tmp_path):
    img, _ = stick_scene()
    ms = build_segmenter({"name": "superpixel", "scales": [1, 3], "colour_tol": 30})
    t = ms.segment(img, 8, offset_m=16)
    assert ms.identity["scales"] == [1.0, 3.0] and t.index.shape == (8, 8) and (t.index >= 0).all()
    masks, _ = ms.segment_points(img, np.array([[80.0, 70.0]]))
    assert masks[0].any() and masks[0].shape == t.shape
    # the superpixel options are not a SAM build's; they do move a superpixel build's hash
    sam = load_config(None, {"segmenter": {"name": "sam", "sam_model": "tiny"}})
    assert "blend_tol" not in sam.output_dict()["segmenter"]
    sp = load_config(None, {})
    (tmp_path / "v1.yaml").write_text("segmenter:\n  blend_tol: null\n")
    v1 = load_config(tmp_path / "v1.yaml")  # the format-1 segmenter, from a config file
    assert v1.segmenter.options.blend_tol is None and "blend_tol" not in build_segmenter(v1.segmenter).identity
    assert default_dict()["segmenter"]["blend_tol"] == 60.0 and sp.hash != v1.hash
