"""What the shard job writes and hands between stages: the .cand.npz v2 encoding (v1 still read),
packed-first candidate tables, and tables thresholded / packed / deduplicated on the device."""
import io
import zipfile

import numpy as np
import pytest
import torch

from getok_data.dataset import TableError, check_table, load_npz, npz_bytes, table_bytes
from getok_data.dataset.table import TABLE_VERSION, encode_masks
from getok_data.segmenters.base import CandidateTable
from getok_data.segmenters.device_tables import dedup_rows, pack_rows


def _arrays(rng, h, w, u, n=3, offsets=False):
    masks = rng.random((u, h, w)) < rng.uniform(0.05, 0.6, (u, 1, 1))
    masks[:, : h // 3] = False  # empty leading rows: the crop is exercised
    out = {"index": rng.integers(-1, u, (n, n)).astype(np.int32), "shape": np.array([h, w], np.int32),
           "masks": np.packbits(masks.reshape(u, h * w), axis=1), "scores": rng.random(u).astype(np.float32)}
    if offsets:
        off = rng.integers(-1, u, (n, n, 9)).astype(np.int32)
        off[..., 4] = out["index"]
        out["offsets"] = off
    return out


@pytest.mark.parametrize("h, w", [(192, 256), (256, 171), (1, 1), (7, 9), (3, 8), (256, 256)])
def test_v2_round_trips_exactly_and_is_deterministic(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    for u, offsets in ((0, False), (1, True), (37, True)):
        arrays = _arrays(rng, h, w, u, offsets=offsets)
        if u == 0:
            arrays["index"][:] = -1
        data = table_bytes(arrays)
        assert table_bytes({k: v.copy() for k, v in arrays.items()}) == data
        assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None  # a plain zip any npz reader opens
        back = load_npz(data)
        assert set(back) == set(arrays) and not check_table(back, 3)
        for k, v in arrays.items():
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k


def test_v2_is_smaller_than_v1_on_smooth_masks_and_v1_is_still_read():
    import cv2

    rng = np.random.default_rng(0)
    masks = np.zeros((64, 192, 256), np.uint8)
    for k in range(64):
        cv2.ellipse(masks[k], (int(rng.integers(0, 256)), int(rng.integers(0, 192))),
                    (int(rng.integers(3, 80)), int(rng.integers(3, 60))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    arrays = {"index": np.arange(64, dtype=np.int32).reshape(8, 8), "shape": np.array([192, 256], np.int32),
              "masks": np.packbits(masks.reshape(64, -1).astype(bool), axis=1), "scores": np.ones(64, np.float32)}
    v1 = io.BytesIO()
    np.savez_compressed(v1, **arrays)  # the version 1 layout: masks stored as packed rows
    assert len(table_bytes(arrays)) < len(v1.getvalue())
    for data in (v1.getvalue(), table_bytes(arrays)):
        back = load_npz(data)
        assert all(np.array_equal(back[k], arrays[k]) for k in arrays)


def test_a_broken_or_unknown_v2_table_is_a_clear_error():
    rng = np.random.default_rng(1)
    arrays = _arrays(rng, 20, 16, 5)
    stored = dict(np.load(io.BytesIO(table_bytes(arrays)), allow_pickle=False))
    bad = dict(stored, masks_span=stored["masks_span"] + 1)
    buf = io.BytesIO()
    np.savez(buf, **bad)
    with pytest.raises(TableError, match="masks_rows .* do not fit a 20x16 table"):
        load_npz(buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, **dict(stored, table_version=np.int32(3)))
    with pytest.raises(TableError, match="version 3 is not supported"):
        load_npz(buf.getvalue())


def test_packed_first_tables_equal_bool_ones_and_pickle_packed():
    import pickle

    rng = np.random.default_rng(2)
    point = rng.random((16, 9, 13)) < 0.3
    point[[3, 7]] = point[1]  # duplicates
    point[5] = False  # empty
    from_bool = CandidateTable.from_point_masks(point, 4, np.arange(16, dtype=np.float32), shape=(9, 13))
    rows = np.packbits(point.reshape(16, -1), axis=1)
    from_rows = CandidateTable.from_point_rows(rows, 4, np.arange(16, dtype=np.float32), (9, 13))
    assert from_rows.equals(from_bool) and len(from_rows) == 13
    assert from_rows.index.reshape(-1)[[1, 3, 5, 7]].tolist() == [1, 1, -1, 1]
    assert np.array_equal(from_rows.masks, point[[k for k in range(16) if k not in (3, 5, 7)]])
    again = pickle.loads(pickle.dumps(from_bool))
    assert again._masks is None and again.equals(from_bool)


def test_device_pack_and_dedup_equal_numpy_and_the_host_dedup():
    rng = np.random.default_rng(3)
    for h, w in ((9, 13), (16, 16), (1, 3)):
        bits = torch.as_tensor(rng.random((40, h, w)) < 0.4)
        bits[10:20] = bits[0:10]
        bits[25] = False
        rows = pack_rows(bits)
        ref = np.packbits(bits.numpy().reshape(40, -1), axis=1)
        assert rows.dtype == torch.uint8 and np.array_equal(rows.numpy(), ref)
        ids, first = dedup_rows(rows)
        table = CandidateTable.from_point_rows(ref[:36], 6, None, (h, w))
        got = CandidateTable(packed=rows[:36][dedup_rows(rows[:36])[1]].numpy(), shape=(h, w),
                             index=dedup_rows(rows[:36])[0].numpy().reshape(6, 6), scores=np.ones(len(table)))
        assert got.equals(table)
        assert ids[25] == -1 and np.array_equal(ids[10:20].numpy(), ids[0:10].numpy())
        assert first.tolist() == sorted(first.tolist())


def test_the_early_v2_row_stream_layout_is_still_read_and_a_broken_sparse_stream_is_an_error():
    rng = np.random.default_rng(4)
    for h, w in ((192, 256), (256, 171)):  # whole-word chunks (no stream gather) and byte chunks
        arrays = _arrays(rng, h, w, 23)
        early = {k: v for k, v in arrays.items() if k != "masks"}
        early.update(encode_masks(arrays["masks"], (h, w)), table_version=np.int32(TABLE_VERSION))
        stored = dict(np.load(io.BytesIO(table_bytes(arrays)), allow_pickle=False))
        assert "masks_rows" not in stored and {"masks_wmap", "masks_bmap", "masks_bytes"} <= set(stored)
        for data in (npz_bytes(early), table_bytes(arrays)):
            back = load_npz(data)
            assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
    bad = dict(stored, masks_bytes=stored["masks_bytes"][:-1])
    with pytest.raises(TableError, match="masks_bytes has .* entries, masks_bmap marks"):
        load_npz(npz_bytes(bad))
    bad = dict(stored, masks_bmap=stored["masks_bmap"][:-1])
    with pytest.raises(TableError, match="masks_bmap has .* entries for .* non-zero words"):
        load_npz(npz_bytes(bad))
