"""Segmenters: table geometry, the candidate table, tiny SAM end to end, superpixels, config."""
import cv2
import re
import numpy as np
import pytest

from getok_data.segmenters import CandidateTable, build_segmenter, grid_points, table_shape
from getok_data.segmenters.base import points_to_table


# ---------------------------------------------------------------- geometry
def test_table_shape():
    assert table_shape(240, 320, 256) == (192, 256)
    assert table_shape(100, 50, 256) == (100, 50)  # never upscaled
    assert table_shape(1000, 3, 256) == (256, 1)  # at least one pixel per side
    assert table_shape(480, 640, 128) == (96, 128)
    with pytest.raises(ValueError):
        table_shape(0, 10, 256)


def test_grid_points_non_square():
    H, W, n = 240, 320, 4
    pts = grid_points(H, W, n)
    assert pts.shape == (16, 2) and pts.dtype == np.float64
    for j in range(n):
        for i in range(n):
            x, y = pts[j * n + i]  # raster order: row j outer, column i inner
            assert x == pytest.approx((i + 0.5) * W / n) and y == pytest.approx((j + 0.5) * H / n)
    assert tuple(pts[1]) == (120.0, 30.0)  # <grid_1_0>
    rc = points_to_table(pts, H, W, (192, 256))
    assert rc[:, 0].max() < 192 and rc[:, 1].max() < 256
    assert tuple(rc[n + 2]) == (int(90 * 192 / 240), int(200 * 256 / 320))  # <grid_2_1>


# ---------------------------------------------------------------- candidate table
def _masks():
    a = np.zeros((5, 6), bool)
    a[1:3, 1:4] = True
    b = np.zeros((5, 6), bool)
    b[4, :] = True
    return a, b


def test_from_point_masks_dedupes_and_marks_empty():
    a, b = _masks()
    empty = np.zeros_like(a)
    pm = [a, b, a.copy(), empty, None, b.copy(), a, empty, b]  # n = 3, raster order
    t = CandidateTable.from_point_masks(pm, 3, scores=np.arange(9, dtype=np.float32))
    assert len(t) == 2 and t.shape == (5, 6) and t.n == 3
    assert t.index.dtype == np.int32
    assert t.index.tolist() == [[0, 1, 0], [-1, -1, 1], [0, -1, 1]]
    assert np.array_equal(t.masks[0], a) and np.array_equal(t.masks[1], b)
    assert t.scores.tolist() == [0.0, 1.0]  # score of the first point giving each mask
    t2 = CandidateTable.from_point_masks(np.stack([m if m is not None else empty for m in pm]), 3)
    assert np.array_equal(t2.index, t.index) and np.array_equal(t2.masks, t.masks)
    assert t2.scores.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        CandidateTable.from_point_masks(pm[:8], 3)
    none = CandidateTable.from_point_masks([None] * 4, 2, shape=(5, 6))
    assert none.masks.shape == (0, 5, 6) and (none.index == -1).all()


def test_packed_contract_and_round_trip():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 7, 9)) > 0.5  # 63 bits: not a multiple of 8
    t = CandidateTable(masks=masks, index=np.array([[0, 1], [3, -1]]), scores=[0.5, 0.6, 0.7, 0.8])
    p = t.packed()
    assert p.dtype == np.uint8 and p.shape == (4, 8)
    assert np.array_equal(p, np.packbits(masks.reshape(4, -1), axis=1))
    back = CandidateTable.from_packed(p, t.index, (7, 9), t.scores)
    assert back.equals(t)
    assert CandidateTable.from_packed(p, t.index, (7, 9)).scores.tolist() == [1.0] * 4
    with pytest.raises(ValueError):
        CandidateTable(masks=masks, index=np.array([[0, 4], [0, 0]]), scores=[1] * 4)


# ---------------------------------------------------------------- tiny SAM
def _shapes_image(h=240, w=320, shift=0):
    img = np.full((h, w, 3), 200, np.uint8)
    rect = np.zeros((h, w), np.uint8)
    circ = np.zeros((h, w), np.uint8)
    cv2.rectangle(rect, (30 + shift, 40), (140 + shift, 160), 1, -1)
    cv2.circle(circ, (230 - shift, 120), 60, 1, -1)
    img[rect > 0] = (220, 30, 30)
    img[circ > 0] = (30, 60, 200)
    return img, rect > 0, circ > 0


@pytest.fixture(scope="module")
def tiny():
    return build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "points_per_batch": 64})


def test_tiny_sam_end_to_end(tiny):
    img, _, _ = _shapes_image()
    t = tiny.segment(img, 8)
    h, w = table_shape(240, 320, 256)
    assert t.index.shape == (8, 8) and t.index.dtype == np.int32
    assert t.masks.shape[1:] == (h, w) and t.masks.dtype == bool
    assert 1 <= len(t) <= 64 and t.scores.shape == (len(t),) and t.scores.dtype == np.float32
    assert t.index.min() >= -1 and t.index.max() < len(t)
    assert set(np.unique(t.index[t.index >= 0])) == set(range(len(t)))  # every mask is used
    assert all(m.any() for m in t.masks)
    assert len(t) < 64  # this fixed tiny model repeats masks: deduplication happens
    assert tiny.segment(img, 8).equals(t)  # deterministic on CPU
    ident = tiny.identity
    assert ident["name"] == "sam" and ident["model_type"] == "tiny"
    assert ident["checkpoint_sha256"] == "random-seed-0" and ident["multimask"] == "best_iou"
    assert ident["table_max_side"] == 256 and ident["dtype"] == "float32"
    import json

    assert json.loads(json.dumps(ident)) == ident and "device" not in ident


def test_tiny_sam_points_per_batch_does_not_change_results(tiny):
    img, _, _ = _shapes_image()
    ref = tiny.segment(img, 8)
    small = build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "points_per_batch": 7})
    t = small.segment(img, 8)
    # masks and index exactly; scores to float rounding (CPU matmul kernels depend on batch size)
    assert np.array_equal(t.index, ref.index) and np.array_equal(t.masks, ref.masks)
    np.testing.assert_allclose(t.scores, ref.scores, atol=1e-5)


def test_tiny_sam_segment_batch_equals_segment(tiny):
    a, _, _ = _shapes_image()
    b = np.ascontiguousarray(_shapes_image(200, 300, shift=20)[0][::-1])
    batch = tiny.segment_batch([a, b], 6)
    assert len(batch) == 2
    assert batch[0].equals(tiny.segment(a, 6)) and batch[1].equals(tiny.segment(b, 6))
    assert batch[1].shape == table_shape(200, 300, 256)


def test_tiny_sam_multimask_rules_and_seed():
    img, _, _ = _shapes_image()
    tables = {}
    for rule in ("0", "2", "single"):
        s = build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "multimask": rule})
        tables[rule] = s.segment(img, 4)
        assert s.identity["multimask"] == rule
    assert not tables["0"].equals(tables["2"])
    other = build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "seed": 1})
    assert other.identity["checkpoint_sha256"] == "random-seed-1"
    with pytest.raises(ValueError, match="multimask"):
        build_segmenter({"name": "sam", "sam_model": "tiny", "multimask": "3"})


@pytest.mark.parametrize("fast", [True, False])
def test_sam_decode_never_builds_full_resolution_masks(tiny, monkeypatch, fast):
    import torch

    import getok_data.segmenters.sam as sam_module

    def forbidden(*args, **kwargs):
        raise AssertionError("postprocess_masks builds full-resolution masks")

    monkeypatch.setattr(tiny.model, "postprocess_masks", forbidden)
    monkeypatch.setattr(tiny, "fast_decoder", fast)
    seen = []
    owner, name = (sam_module, "shared_image_decode") if fast else (tiny.model.mask_decoder, "forward")
    orig = getattr(owner, name)

    def spy(*args, **kwargs):
        low, iou = orig(*args, **kwargs)
        seen.append(tuple(low.shape))
        return low, iou

    monkeypatch.setattr(owner, name, spy)
    big = []
    real_interp = torch.nn.functional.interpolate

    def interp(x, *args, **kwargs):
        out = real_interp(x, *args, **kwargs)
        big.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch.nn.functional, "interpolate", interp)
    img, _, _ = _shapes_image()
    t = tiny.segment(img, 10)
    assert t.index.shape == (10, 10)
    assert seen and all(s[0] <= 64 and s[1:] == (3, 256, 256) for s in seen)  # low-res only
    assert sum(s[0] for s in seen) == 100
    assert all(np.prod(s[2:]) <= 256 * 256 for s in big)


def test_vit_b_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"sam_checkpoint: required for vit_b \(--sam-checkpoint PATH"):
        build_segmenter({"name": "sam", "sam_model": "vit_b"})
    with pytest.raises(FileNotFoundError):
        build_segmenter({"name": "sam", "sam_model": "vit_h", "sam_checkpoint": str(tmp_path / "no.pth")})
    with pytest.raises(ValueError, match=re.escape("sam_model: expected vit_b | vit_l | vit_h | tiny")):
        build_segmenter({"name": "sam", "sam_model": "vit_x"})


def test_checkpoint_is_loaded_and_hashed(tmp_path, monkeypatch):
    import hashlib

    import torch

    import getok_data.segmenters.sam as sam_mod
    from getok_data.segmenters.tiny_sam import build_tiny_sam

    ckpt = tmp_path / "tiny.pth"
    torch.save(build_tiny_sam(3).state_dict(), ckpt)
    # stand-in for vit_b: the registry builds the (tiny) architecture, our loader fills the weights
    monkeypatch.setitem(sam_mod.sam_model_registry, "vit_b", lambda checkpoint=None: build_tiny_sam(99))
    seg = build_segmenter({"name": "sam", "sam_model": "vit_b", "sam_checkpoint": str(ckpt), "device": "cpu"})
    assert seg.identity["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert str(tmp_path) not in str(seg.identity)
    ref = build_tiny_sam(3)
    assert all(torch.equal(a, b) for a, b in zip(seg.model.state_dict().values(), ref.state_dict().values()))


def test_unknown_segmenter_name():
    with pytest.raises(ValueError, match="sam, sam2, superpixel"):
        build_segmenter({"name": "sam3"})


# ---------------------------------------------------------------- superpixel
def test_superpixel_shapes_are_reachable():
    img, rect, circ = _shapes_image()
    seg = build_segmenter({"name": "superpixel"})
    n = 16
    t = seg.segment(img, n)
    h, w = table_shape(240, 320, 256)
    assert t.shape == (h, w) and t.index.shape == (n, n) and (t.index >= 0).all()
    assert np.all(t.scores == 1.0)
    pts = grid_points(240, 320, n)
    for shape in (rect, circ):
        small = cv2.resize(shape.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        inside = [p for p in range(n * n) if shape[int(pts[p, 1]), int(pts[p, 0])]]
        assert len(inside) >= 4
        for p in inside:
            m = t.masks[t.index.flat[p]]
            iou = (m & small).sum() / (m | small).sum()
            assert iou > 0.8, iou
    assert seg.segment(img, n).equals(t)
    assert seg.identity["name"] == "superpixel" and seg.identity["table_max_side"] == 256
    masks, scores = seg.segment_points(img, pts[:3])
    assert masks.shape == (3, h, w) and np.array_equal(masks[1], t.masks[t.index[0, 1]])


def test_superpixel_anti_aliased_and_noisy_image():
    rng = np.random.default_rng(1)
    img = np.clip(200 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    cv2.circle(img, (160, 120), 70, (40, 160, 60), -1, lineType=cv2.LINE_AA)
    shape = np.zeros((240, 320), np.uint8)
    cv2.circle(shape, (160, 120), 70, 1, -1, lineType=cv2.LINE_AA)
    seg = build_segmenter({"name": "superpixel", "table_max_side": 128})
    t = seg.segment(img, 8)
    h, w = t.shape
    assert (h, w) == (96, 128)
    small = cv2.resize(shape, (w, h), interpolation=cv2.INTER_NEAREST) > 0
    m = t.masks[t.index[4, 4]]
    assert (m & small).sum() / (m | small).sum() > 0.8


@pytest.mark.parametrize("multimask", ["best_iou", "single", "2"])
def test_shared_image_decoder_gives_the_same_tables(multimask):
    """``fast_decoder`` (the default) is the same math as ``model.mask_decoder``: identical tables."""
    cfg = {"name": "sam", "sam_model": "tiny", "device": "cpu", "multimask": multimask, "points_per_batch": 16}
    fast, plain = build_segmenter({**cfg, "fast_decoder": True}), build_segmenter({**cfg, "fast_decoder": False})
    img, _, _ = _shapes_image()
    a, b = fast.segment(img, 8), plain.segment(img, 8)
    assert a.equals(b) and np.array_equal(a.scores, b.scores)
    points = np.array([[3.5, 7.25], [40.0, 20.0], [0.0, 0.0]])
    (ma, sa), (mb, sb) = fast.segment_points(img, points), plain.segment_points(img, points)
    assert np.array_equal(ma, mb) and np.array_equal(sa, sb)


def test_points_per_batch_auto_resolves_by_device_and_rejects_nonsense():
    import torch

    from getok_data.segmenters.sam import resolve_points_per_batch

    assert resolve_points_per_batch("auto", torch.device("cpu")) == 4
    assert resolve_points_per_batch("auto", torch.device("cuda")) == 64
    assert resolve_points_per_batch("16", torch.device("cpu")) == 16
    for bad in (0, -3, "many", None):
        with pytest.raises(ValueError, match="points_per_batch must be a positive integer or 'auto'"):
            resolve_points_per_batch(bad, torch.device("cpu"))
    seg = build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu"})
    assert seg.points_per_batch == 4 and seg.identity["points_per_batch"] == 4 and seg.fast_decoder


# ---------------------------------------------------------------- offset masks (grid.offset_masks)
from getok_data.segmenters.base import offset_positions  # noqa: E402
from getok_data.tokens import OFFSET_STEPS, Grid  # noqa: E402

MOVES = [s for s in OFFSET_STEPS if s != (0, 0)]


@pytest.mark.parametrize("h, w, n, m", [(240, 320, 8, 16), (97, 131, 5, 10), (64, 64, 4, 4)])
def test_offset_positions_are_the_moved_anchors(h, w, n, m):
    points, where = offset_positions(h, w, n, m)
    grid = Grid(n, w, h, m)
    assert where.shape == (n, n, 8) and len(np.unique(points, axis=0)) == len(points)
    for j in range(n):
        for i in range(n):
            for k, s in enumerate(MOVES):
                x, y = grid.position(i, j, s)
                if 0 <= x < w and 0 <= y < h:
                    np.testing.assert_allclose(points[where[j, i, k]], (x, y), rtol=0, atol=1e-9)
                else:
                    assert where[j, i, k] == -1
    # neighbours that land on the same spot share one row (m = 2n: half-way between two anchors)
    if m == 2 * n:
        assert where[0, 0, MOVES.index((1, 0))] == where[0, 1, MOVES.index((-1, 0))]
        assert len(points) < (where >= 0).sum()


def test_with_offsets_reuses_masks_appends_new_ones_and_maps_empty_to_none():
    a, b = _masks()
    base = CandidateTable.from_point_masks([a, b, a, None], 2)  # two masks, one point without
    n, (h, w) = 2, base.shape
    points, where = offset_positions(8, 8, n, 4)
    q = len(points)
    rows = np.zeros((q, h, w), bool)
    rows[0] = base.masks[0]  # already in the table: reused
    rows[1] = True  # new: appended
    rows[2] = True  # the same new mask again: stored once
    t = base.with_offsets(np.packbits(rows.reshape(q, -1), axis=1), np.arange(q, dtype=np.float32), where)
    assert len(t) == len(base) + 1 and int(t.index.max()) + 1 == len(base)  # grid masks first
    assert np.array_equal(t.masks[: len(base)], base.masks) and np.array_equal(t.index, base.index)
    assert np.array_equal(t.offsets[..., 4], t.index) and t.scores[-1] == 1.0
    ids = {int(r): int(t.offsets[j, i, k if k < 4 else k + 1]) for (j, i, k), r in np.ndenumerate(where) if r >= 0}
    assert ids[0] == 0 and ids[1] == ids[2] == len(base)
    assert all(v == -1 for r, v in ids.items() if r > 2)  # empty masks: nothing
    assert (t.offsets[where_off(where)] == -1).all()
    with pytest.raises(ValueError, match="keep"):
        bad = t.offsets.copy()
        bad[0, 0, 4] = -1 if bad[0, 0, 4] >= 0 else 0
        CandidateTable(t.masks, t.index, t.scores, bad)


def where_off(where: np.ndarray) -> np.ndarray:
    """Bool [n, n, 9] of the (anchor, step) pairs whose position is off the image."""
    return np.concatenate([where[..., :4] < 0, np.zeros(where.shape[:2] + (1,), bool), where[..., 4:] < 0], axis=2)


def test_superpixel_offset_masks_are_the_segmenters_masks_at_the_moved_positions():
    img, _, _ = _shapes_image()
    seg = build_segmenter({"name": "superpixel"})
    n = 8
    plain, t = seg.segment(img, n), seg.segment(img, n, offset_m=2 * n)
    assert plain.offsets is None
    # the grid part is unchanged, so tokens and selection are too
    assert np.array_equal(t.index, plain.index) and np.array_equal(t.masks[: len(plain)], plain.masks)
    grid = Grid(n, 320, 240, 2 * n)
    for j in range(n):
        for i in range(n):
            for s_id, s in enumerate(OFFSET_STEPS):
                x, y = grid.position(i, j, s)
                u = int(t.offsets[j, i, s_id])
                if not (0 <= x < 320 and 0 <= y < 240):
                    assert u == -1
                    continue
                want = seg.segment_points(img, np.array([[x, y]]))[0][0] if (i + j) % 5 == 0 else None
                if want is not None:
                    assert np.array_equal(t.masks[u], want)


def test_tiny_sam_offset_masks_match_decoding_the_moved_positions(tiny):
    img, _, _ = _shapes_image()
    n = 4
    plain, t = tiny.segment(img, n), tiny.segment(img, n, offset_m=2 * n)
    assert np.array_equal(t.index, plain.index) and np.array_equal(t.masks[: len(plain)], plain.masks)
    points, where = offset_positions(240, 320, n, 2 * n)
    masks, _ = tiny.segment_points(img, points)
    for (j, i, k), r in np.ndenumerate(where):
        u = int(t.offsets[j, i, k if k < 4 else k + 1])
        if r < 0 or not masks[r].any():
            assert u == -1
        else:
            assert np.array_equal(t.masks[u], masks[r])
    assert tiny.segment_batch([img], n, offset_m=2 * n)[0].equals(t)
