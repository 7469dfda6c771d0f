"""getok_data.masks: decoding every segmentation form, RLE, boxes, resizing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from getok_data.masks import mask_box, mask_to_rle, resize_nearest, rle_to_mask, segmentation_to_mask

MMDET_EXCERPT = "open-mmlab__mmdetection/tests/data/coco_dummy/annotations/instances_val2017.EXCERPT.json"


def test_polygon_rectangle_is_pixel_exact():
    m = segmentation_to_mask([[2, 3, 8, 3, 8, 7, 2, 7]], 10, 12)
    assert m.dtype == bool and m.shape == (10, 12)
    assert m.sum() == 24  # 6 columns x 4 rows
    assert m[3:7, 2:8].all()
    assert mask_box(m) == [2.0, 3.0, 8.0, 7.0]


def test_multi_polygon_is_a_union_not_a_sum():
    a = [1, 1, 5, 1, 5, 5, 1, 5]
    b = [10, 10, 14, 10, 14, 14, 10, 14]
    one = segmentation_to_mask([a], 20, 20)
    both = segmentation_to_mask([a, b], 20, 20)
    assert both.sum() == 2 * one.sum() == 32
    twice = segmentation_to_mask([a, a, [3, 3, 7, 3, 7, 7, 3, 7]], 20, 20)
    assert twice.dtype == bool
    assert twice.sum() == 16 + 16 - 4  # overlap counted once


def test_a_degenerate_or_odd_part_is_an_error_naming_the_part_not_a_silent_drop():
    good = [1, 1, 5, 1, 5, 5, 1, 5]
    assert segmentation_to_mask([good], 8, 8).sum() == 16
    with pytest.raises(ValueError, match=r"degenerate polygon: part 1 of 2 has 2 point\(s\)"):
        segmentation_to_mask([good, [1, 2, 3, 4]], 8, 8)
    with pytest.raises(ValueError, match=r"malformed polygon: part 1 of 2 has an odd number of coordinates \(7\)"):
        segmentation_to_mask([good, [1, 1, 6, 1, 6, 6, 2]], 8, 8)
    with pytest.raises(ValueError, match="degenerate polygon"):
        segmentation_to_mask([[1, 2, 3, 4], [5, 6]], 8, 8)


def test_uncompressed_crowd_rle_from_real_coco(fixture_path):
    data = json.loads(fixture_path(MMDET_EXCERPT).read_text())
    crowd = next(a for a in data["annotations"] if a["iscrowd"] == 1)
    img = next(i for i in data["images"] if i["id"] == crowd["image_id"])
    assert isinstance(crowd["segmentation"]["counts"], list)
    m = segmentation_to_mask(crowd["segmentation"], img["height"], img["width"])
    assert m.shape == (427, 640)
    assert m.sum() == 3386  # the JSON 'area' (4015) is not the mask area
    x, y, w, h = crowd["bbox"]
    assert mask_box(m) == [59.0, 253.0, 312.0, 338.0]
    assert abs(mask_box(m)[2] - (x + w)) <= 1 and abs(mask_box(m)[3] - (y + h)) <= 1
    # the same RLE with a string size (as in mmpose's OCHuman file) decodes identically
    seg = dict(crowd["segmentation"], size=str(crowd["segmentation"]["size"]))
    assert (segmentation_to_mask(seg, 427, 640) == m).all()


def test_hand_written_uncompressed_rle_is_column_major():
    # 3x2 image; column-major: skip 1, then 2 ones -> (1,0), (2,0); then 3 zeros
    m = segmentation_to_mask({"counts": [1, 2, 3], "size": [3, 2]}, 3, 2)
    assert m.tolist() == [[False, False], [True, False], [True, False]]


@pytest.mark.parametrize("seed", range(4))
def test_compressed_rle_round_trip(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 60)), int(rng.integers(1, 60))
    m = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    rle = mask_to_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [h, w]
    assert (rle_to_mask(rle) == m).all()
    assert (segmentation_to_mask(rle, h, w) == m).all()
    as_bytes = {"counts": rle["counts"].encode(), "size": rle["size"]}
    assert (segmentation_to_mask(as_bytes, h, w) == m).all()
    # agrees with pycocotools' own encoder
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert ref["counts"].decode() == rle["counts"]


def test_empty_and_full_masks_round_trip():
    for m in (np.zeros((7, 5), bool), np.ones((7, 5), bool)):
        assert (rle_to_mask(mask_to_rle(m)) == m).all()
    assert mask_box(np.zeros((7, 5), bool)) is None
    assert mask_box(np.ones((7, 5), bool)) == [0.0, 0.0, 5.0, 7.0]


def test_list_of_rle_is_a_union():
    a = np.zeros((6, 6), bool)
    a[0:3, 0:3] = True
    b = np.zeros((6, 6), bool)
    b[2:5, 2:5] = True
    m = segmentation_to_mask([mask_to_rle(a), {"counts": mask_to_rle(b)["counts"], "size": "[6, 6]"}], 6, 6)
    assert (m == (a | b)).all() and m.sum() == 9 + 9 - 1


@pytest.mark.parametrize(
    "seg, match",
    [
        ({"counts": [0, 36], "size": [6, 5]}, "differs from the image size"),
        ({"counts": [1, 2], "size": [6, 6]}, "sum to"),
        ({"counts": [-1, 37], "size": [6, 6]}, "negative"),
        ({"counts": [1.5, 34.5], "size": [6, 6]}, "list of ints"),
        ({"counts": "0\x7f", "size": [6, 6]}, "invalid character"),
        ({"counts": "0Q", "size": [6, 6]}, "truncated"),
        ({"counts": "0é", "size": [6, 6]}, "ASCII"),
        ({"counts": [0, 2**70], "size": [6, 6]}, "implausibly large"),
        ({"counts": "06", "size": [6, 6]}, "sum to"),
        ({"counts": 5, "size": [6, 6]}, "counts must be"),
        ({"counts": "06"}, "needs 'counts' and 'size'"),
        ({"counts": [36], "size": "six by six"}, "size"),
        ({"counts": [36], "size": [6, -6]}, "size"),
        ([], "empty segmentation"),
        ([[1, 1, 4, "x", 4, 4]], "non-numeric"),
        ([[1, 1, 4, float("nan"), 4, 4]], "non-finite"),
        ([[1, 1, 4, 1, 4, 1e12]], "far outside"),
        ([1, 1, 4, 1, 4, 4], "flat list"),
        ([{"counts": [36], "size": [6, 6]}, [1, 1, 4, 1, 4, 4]], "mixes"),
        ([[1, 1, 4, 1, 4, 4], 5], "not a list of coordinates"),
        (None, "unsupported"),
        ("polygon", "unsupported"),
    ],
)
def test_malformed_segmentations_raise_value_error(seg, match):
    with pytest.raises(ValueError, match=match):
        segmentation_to_mask(seg, 6, 6)


def test_bad_image_size_raises():
    with pytest.raises(ValueError):
        segmentation_to_mask([[0, 0, 2, 0, 2, 2]], 0, 5)
    with pytest.raises(ValueError):
        segmentation_to_mask([[0, 0, 2, 0, 2, 2]], 5.0, 5)


@pytest.mark.parametrize("src, dst", [((7, 11), (20, 5)), ((100, 64), (33, 129)), ((240, 320), (64, 64))])
def test_resize_nearest_uses_the_floor_convention(src, dst):
    rng = np.random.default_rng(1)
    m = rng.random(src) > 0.5
    out = resize_nearest(m, dst)
    assert out.dtype == bool and out.shape == dst
    ys = np.floor(np.arange(dst[0]) * src[0] / dst[0]).astype(int)
    xs = np.floor(np.arange(dst[1]) * src[1] / dst[1]).astype(int)
    assert (out == m[ys][:, xs]).all()
    import torch  # the same as torch's nearest, which readers of the shards may use
    t = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None].float(), size=dst, mode="nearest")
    assert (out == t[0, 0].numpy().astype(bool)).all()


def test_resize_nearest_integer_upscale_repeats_pixels():
    m = np.array([[1, 0, 1], [0, 1, 0]], bool)
    assert (resize_nearest(m, (4, 6)) == np.kron(m, np.ones((2, 2), bool))).all()
    assert (resize_nearest(m, (2, 3)) == m).all()


def test_numpy_rle_decoder_agrees_with_pycocotools_on_large_runs():
    # long runs need multi-group counts and negative deltas in the compressed string
    h, w = 517, 733
    yy, xx = np.mgrid[0:h, 0:w]
    m = ((xx - 300) ** 2 / 200.0**2 + (yy - 250) ** 2 / 120.0**2 < 1) | ((xx > 600) & (yy < 40))
    m[::97, :] ^= True
    rle = mask_to_rle(m)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = mask_utils.decode({"counts": rle["counts"].encode(), "size": [h, w]}).astype(bool)
    assert (expected == m).all()
    assert (rle_to_mask(rle) == m).all()
