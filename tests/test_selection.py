"""Greedy selection on constructed candidate tables, against a plain reference implementation."""
import numpy as np
import pytest

from getok_data.selection import PackedTable, select, union_iou


def table_of(masks: np.ndarray) -> PackedTable:
    u = len(masks)
    index = np.full((4, 4), -1, np.int32)
    index.flat[:u] = np.arange(u)
    return PackedTable(np.packbits(masks.reshape(u, -1), axis=1), index, masks.shape[1:])


def pack(m: np.ndarray) -> np.ndarray:
    return np.packbits(m.reshape(-1))


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def reference(masks, gt, method, tau):
    """Straightforward boolean-array greedy, the definition in DESIGN.md section 3."""
    cands = [k for k in range(len(masks)) if (masks[k] & gt).any()]
    union = np.zeros_like(gt)
    chosen, best = [], 0.0
    if method == "sorted":
        for k in sorted(cands, key=lambda k: (-iou(masks[k], gt), k)):
            v = iou(union | masks[k], gt)
            if v > best:
                union, best = union | masks[k], v
                chosen.append(k)
                if best >= tau:
                    break
    else:
        while cands and best < tau:
            vals = [iou(union | masks[k], gt) for k in cands]
            k = int(np.argmax(vals))
            if vals[k] <= best:
                break
            union, best = union | masks[cands[k]], vals[k]
            chosen.append(cands.pop(k))
    return chosen, best


def test_known_optimum_two_halves():
    h, w = 20, 30
    gt = np.zeros((h, w), bool); gt[5:15, 5:25] = True
    left = np.zeros_like(gt); left[5:15, 5:15] = True
    right = np.zeros_like(gt); right[5:15, 15:25] = True
    blob = np.zeros_like(gt); blob[0:20, 0:12] = True  # overlaps, but too big
    far = np.zeros_like(gt); far[0:3, 27:30] = True
    t = table_of(np.stack([blob, left, far, right]))
    for method in ("sorted", "gain"):
        s = select(t, pack(gt), method, 0.99)
        assert sorted(s.mask_ids) == [1, 3] and s.token_iou == 1.0 and s.reason is None


def test_duplicates_are_not_both_selected():
    gt = np.zeros((16, 16), bool); gt[2:10, 2:10] = True
    a = np.zeros_like(gt); a[2:10, 2:6] = True
    b = np.zeros_like(gt); b[2:10, 6:10] = True
    t = table_of(np.stack([a, a.copy(), b, b.copy()]))
    s = select(t, pack(gt), "sorted", 0.9)
    assert s.token_iou == 1.0 and len(s.mask_ids) == 2
    assert {s.mask_ids[0] // 2, s.mask_ids[1] // 2} == {0, 1}


def test_multiply_connected_gt_prefers_ring_pieces_over_the_disk():
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(xx - 20, yy - 20)
    ring = (r < 15) & (r >= 7)
    disk = r < 19  # covers the hole and more: lower IoU than either ring piece
    hole = r < 7  # disjoint from the GT: never worth a token
    top, bottom = ring & (yy < 23), ring & (yy >= 17)
    t = table_of(np.stack([disk, hole, top, bottom]))
    assert iou(disk, ring) < min(iou(top, ring), iou(bottom, ring))
    for method in ("sorted", "gain"):
        s = select(t, pack(ring), method, 0.95)
        assert sorted(s.mask_ids) == [2, 3] and s.token_iou == pytest.approx(1.0)


def test_no_overlap_at_all_keeps_a_reason():
    gt = np.zeros((16, 16), bool); gt[0:2, 0:2] = True
    other = np.zeros_like(gt); other[8:, 8:] = True
    s = select(table_of(other[None]), pack(gt), "sorted", 0.9)
    assert s.mask_ids == [] and s.token_iou == 0.0 and "overlaps" in s.reason
    s = select(table_of(other[None]), pack(np.zeros_like(gt)), "sorted", 0.9)
    assert s.mask_ids == [] and "vanishes" in s.reason


@pytest.mark.parametrize("method", ["sorted", "gain"])
@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_on_random_tables(method, seed):
    rng = np.random.default_rng(seed)
    h, w = 23, 37  # not a multiple of 8: packing straddles rows
    masks = []
    for _ in range(rng.integers(3, 16)):
        m = np.zeros((h, w), bool)
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y : y + rng.integers(2, 12), x : x + rng.integers(2, 15)] = True
        masks.append(m)
    masks = np.stack(masks)
    gt = masks[rng.choice(len(masks), 2, replace=False)].any(axis=0)
    gt[rng.integers(0, h), :] ^= True  # a stripe no candidate matches exactly
    tau = float(rng.uniform(0.5, 1.0))
    s = select(table_of(masks), pack(gt), method, tau)
    ref_ids, ref_iou = reference(masks, gt, method, tau)
    assert s.mask_ids == ref_ids
    assert s.token_iou == pytest.approx(ref_iou, abs=1e-12)
    assert union_iou(table_of(masks), s.mask_ids, pack(gt)) == pytest.approx(s.token_iou, abs=1e-12)


def test_unknown_method():
    with pytest.raises(ValueError):
        select(table_of(np.ones((1, 8, 8), bool)), pack(np.ones((8, 8), bool)), "best", 0.9)


@pytest.mark.parametrize("method", ["sorted", "gain"])
@pytest.mark.parametrize("seed", range(4))
def test_count_paths_equal_the_block_loop_on_larger_tables(method, seed):
    """More candidates than one block: the count-based loops (no ignore) choose exactly what the
    plain block loop (``_greedy``, used with ignore regions) and the reference choose."""
    from getok_data.selection import _greedy, _popcount, to_words

    rng = np.random.default_rng(100 + seed)
    h, w = 40, 64
    masks = np.zeros((120, h, w), bool)
    for m in masks:
        y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
        m[y : y + rng.integers(2, 20), x : x + rng.integers(2, 30)] = True
    gt = masks[rng.choice(len(masks), 4, replace=False)].any(axis=0)
    gt[rng.integers(0, h), :] ^= True
    u = len(masks)
    table = PackedTable(np.packbits(masks.reshape(u, -1), axis=1), np.arange(u, dtype=np.int32).reshape(10, 12),
                        (h, w))
    tau = 0.97
    s = select(table, pack(gt), method, tau)
    g = to_words(pack(gt))
    inter = _popcount(table.words & g)
    cand = np.flatnonzero(inter)
    if method == "sorted":
        iou_c = inter[cand] / (table.area[cand] + int(_popcount(g)) - inter[cand])
        cand = cand[np.lexsort((cand, -iou_c))]
    block = _greedy(table.words, g, int(_popcount(g)), cand, tau, first=method == "sorted")
    assert (s.mask_ids, s.token_iou) == (block.mask_ids, block.token_iou)
    ref_ids, ref_iou = reference(masks, gt, method, tau)
    assert s.mask_ids == ref_ids and s.token_iou == pytest.approx(ref_iou, abs=1e-12)
    assert len(s.mask_ids) >= 2
