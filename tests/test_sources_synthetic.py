"""The embedded synthetic source: determinism, splits, geometry, expressions, laziness."""
from __future__ import annotations

import hashlib
import itertools
import time

import cv2
import numpy as np
import pytest
from scipy import ndimage

from getok_data.masks import mask_box, rle_to_mask
from getok_data.sources import get_source
from getok_data.sources.synthetic import COLOURS, DEFAULT_SIZES, SHAPES


def _take(n: int, **options) -> list:
    return list(itertools.islice(get_source("synthetic", **options).records(), n))


@pytest.fixture(scope="module")
def train30() -> list:
    return _take(30, split="train")


def _rgb(rec) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(rec.image_bytes, np.uint8), cv2.IMREAD_COLOR)
    return img[..., ::-1]


def test_defaults_and_describe():
    src = get_source("synthetic")
    d = src.describe()
    assert d["split"] == "train" and d["seed"] == 0 and d["sizes"] == {"train": DEFAULT_SIZES["train"]}
    assert DEFAULT_SIZES["train"] >= 1000 and DEFAULT_SIZES["val"] > 0 and DEFAULT_SIZES["test"] > 0


def test_deterministic_bytes_and_masks(train30):
    again = _take(30, split="train")
    for a, b in zip(train30, again):
        assert a.image_bytes == b.image_bytes
        assert [t.mask_rle for t in a.targets] == [t.mask_rle for t in b.targets]
        assert [t.sentences for t in a.targets] == [t.sentences for t in b.targets]
    other_seed = _take(5, split="train", seed=1)
    assert [r.image_bytes for r in other_seed] != [r.image_bytes for r in train30[:5]]


def test_train_and_val_are_disjoint(train30):
    val = _take(30, split="val")
    h_train = {hashlib.sha256(r.image_bytes).hexdigest() for r in train30}
    h_val = {hashlib.sha256(r.image_bytes).hexdigest() for r in val}
    assert len(h_train) == 30 and len(h_val) == 30 and not (h_train & h_val)
    assert all(r.split == "val" for r in val)


def test_records_are_sorted_images_non_square_and_png(train30):
    assert [r.image_id for r in train30] == list(range(30))
    sizes = {(r.width, r.height) for r in train30}
    assert len(sizes) >= 2 and all(w != h for w, h in sizes)
    for r in train30:
        assert r.image_ext == "png" and r.image_path is None and r.image_bytes.startswith(b"\x89PNG")
        assert _rgb(r).shape == (r.height, r.width, 3)
        assert 2 <= len(r.targets) <= 5 and not r.errors
        assert r.key == f"synthetic_train_{r.image_id}"


def test_targets_masks_boxes_and_pixels_agree(train30):
    for r in train30:
        img = _rgb(r)
        union = np.zeros((r.height, r.width), bool)
        for t in r.targets:
            assert t.category in SHAPES
            m = rle_to_mask(t.mask_rle)
            assert m.shape == (r.height, r.width) and m.any()
            assert not (m & union).any(), "visible masks must not overlap"
            union |= m
            assert t.box == mask_box(m)
            assert len(t.target_id) and t.sentences and all(s.strip() for s in t.sentences)
            colour = next(c for c in COLOURS if c in t.sentences[0].split())
            rgb = np.array(COLOURS[colour])
            dark = np.round(rgb * 0.7)
            px = img[m].astype(float)
            ok = (np.abs(px - rgb).max(1) == 0) | (np.abs(px - dark).max(1) == 0)
            assert ok.all(), f"{r.key} {t.target_id}: GT mask pixels must show the object's colour exactly"
        # outside every object the background is grey-ish, never an object colour
        bg = img[~union].astype(int)
        assert (bg.max(1) - bg.min(1)).max() <= 12


def test_ring_has_a_hole_and_bars_are_thin():
    rings = bars = 0
    for r in _take(60, split="train"):
        for t in r.targets:
            m = rle_to_mask(t.mask_rle)
            if t.category == "ring" and m.sum() > 200:
                filled = ndimage.binary_fill_holes(m)
                rings += int(filled.sum() > m.sum())
            if t.category == "bar":
                # thin: no pixel lies more than ~4 px from the background (width 4-6 px, rounded vertices)
                bars += 1
                assert ndimage.distance_transform_edt(np.pad(m, 1)).max() <= 4.5
    assert rings >= 3 and bars >= 3


def test_expressions_single_out_shapes_with_size_and_position_words():
    words = set()
    for r in _take(80, split="train"):
        for t in r.targets:
            assert all(s.startswith("the ") for s in t.sentences)
            words.update(" ".join(t.sentences).split())
    assert {"small", "large"} & words
    assert {"left", "right", "top", "bottom"} <= words


def test_split_all_limit_and_errors():
    recs = list(get_source("synthetic", split="all", size=2).records())
    assert [(r.split, r.image_id) for r in recs] == [(s, i) for s in ("test", "train", "val") for i in (0, 1)]
    assert len(list(get_source("synthetic", split="val", size=5, limit=3).records())) == 3
    with pytest.raises(ValueError):
        get_source("synthetic", split="dev")
    with pytest.raises(TypeError, match=r"bogus.*colour|colour.*bogus"):
        get_source("synthetic", bogus=1, colour="red")


def test_generation_is_lazy():
    src = get_source("synthetic", size=100_000)
    t0 = time.perf_counter()
    first = next(iter(src.records()))
    assert time.perf_counter() - t0 < 1.0
    assert first.image_id == 0
