"""The ``.cand.npz`` contract: deterministic bytes, safe loading, one validation.

Arrays (as :func:`load_npz` returns them, whatever the version on disk): ``index`` int32
``[n, n]`` (``[j, i]``, -1 = no mask), ``shape`` int32 ``[2]`` (h, w), ``masks`` uint8
``[U, ceil(h*w/8)]`` (bit-packed rows), ``scores`` float32 ``[U]``, optional ``offsets`` int32
``[n, n, 9]`` (``[j, i, step]``; ``[..., 4]`` equals ``index``).

On disk (format version 2, :func:`table_bytes`) ``masks`` is stored as a delta-coded, cropped
row stream (docs/FORMAT.md "Candidate-table encoding"): 6x cheaper to write than deflating the
packed masks, and smaller. Version 1 files (``masks`` stored as is) are still read.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
TABLE_VERSION = 2  # the .cand.npz encoding written by table_bytes
_DOS_DATE = ((ZIP_DATE[0] - 1980) << 9) | (ZIP_DATE[1] << 5) | ZIP_DATE[2]


class TableError(ValueError):
    """A candidate table that breaks the contract; the message says how."""


# Members whose deflate uses the run-length strategy at level 1 (long zero runs; 5x faster than
# the default strategy at level 6 and, after the delta coding, smaller).
_RLE_MEMBERS = ("masks_rows",)


def _deflate(raw: bytes, rle: bool) -> bytes:
    co = zlib.compressobj(1 if rle else 6, zlib.DEFLATED, -15, 8, zlib.Z_RLE if rle else zlib.Z_DEFAULT_STRATEGY)
    return co.compress(raw) + co.flush()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (readable by ``np.load(..., allow_pickle=False)``) with deterministic bytes.

    A plain zip written here (members sorted, fixed date 1980-01-01, mode 0644, deflate), so the
    compressor's strategy can be chosen per member.
    """
    out, central = bytearray(), bytearray()
    names = sorted(arrays)
    for name in names:
        arr = np.asarray(arrays[name])
        if arr.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; the candidate table holds no pickles")
        body = io.BytesIO()
        np.lib.format.write_array(body, arr, allow_pickle=False)
        raw = body.getbuffer()
        data = _deflate(raw, name in _RLE_MEMBERS)
        fname = f"{name}.npy".encode()
        crc, offset = zlib.crc32(raw), len(out)
        fields = (20, 0, 8, 0, _DOS_DATE, crc, len(data), len(raw), len(fname))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + fname + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0314, *fields, 0, 0, 0, 0,
                               0o100644 << 16, offset) + fname
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(names), len(names), len(central), len(out), 0)
    return bytes(out + central + end)


def _chunk_len(shape: tuple[int, int]) -> int:
    """Bytes per delta-coding chunk: one table row when rows are byte-aligned (``w % 8 == 0``),
    else eight rows (``w`` bytes), which always are."""
    h, w = shape
    return w // 8 if w % 8 == 0 else w


def encode_masks(masks: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Packed masks ``[U, B]`` -> ``masks_rows`` uint8 ``[R, L]`` and ``masks_span`` int32 ``[U, 2]``.

    Each mask (zero padded to ``C * L`` bytes, ``L`` = :func:`_chunk_len`) is cut into ``C``
    chunks of ``L`` bytes; chunk ``c`` is XORed with chunk ``c - 1`` (so a smooth mask becomes its
    row-to-row edges), and only the chunks from the first to the last non-zero delta are kept:
    ``masks_span[u] = (first, end)``, rows of all masks concatenated in mask order.
    """
    masks = np.ascontiguousarray(masks, dtype=np.uint8)
    u, b = masks.shape
    lag = _chunk_len(shape)
    chunks = -(-b // lag)
    if chunks * lag != b:
        masks = np.concatenate([masks, np.zeros((u, chunks * lag - b), np.uint8)], axis=1)
    r = masks.reshape(u, chunks, lag)
    word = r.view(np.uint64) if lag % 8 == 0 else r
    q = np.empty_like(word)
    q[:, :1] = word[:, :1]
    np.bitwise_xor(word[:, 1:], word[:, :-1], out=q[:, 1:])
    acc = q[..., 0].copy()  # OR of each chunk's words (faster than .any on the word axis)
    for k in range(1, q.shape[2]):
        acc |= q[..., k]
    nz = acc != 0
    has = nz.any(axis=1)
    first = np.where(has, nz.argmax(axis=1), 0)
    end = np.where(has, chunks - nz[:, ::-1].argmax(axis=1), 0)
    pos = np.arange(chunks)
    keep = (pos >= first[:, None]) & (pos < end[:, None])
    # gather whole chunks as single void items (faster than a byte-wise row gather; same bytes)
    rows = q.view(np.uint8).reshape(u * chunks, lag).view(np.dtype((np.void, lag)))[keep.reshape(-1)]
    rows = rows.view(np.uint8).reshape(-1, lag)
    return {"masks_rows": rows, "masks_span": np.stack([first, end], axis=1).astype(np.int32)}


def decode_masks(rows: np.ndarray, span: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_masks`: packed masks uint8 ``[U, ceil(h*w/8)]``."""
    h, w = shape
    if h < 1 or w < 1 or rows.ndim != 2 or span.ndim != 2 or span.shape[1:] != (2,):
        raise TableError(f"masks_rows {rows.shape} / masks_span {span.shape} do not fit a {h}x{w} table")
    b, lag = (h * w + 7) // 8, _chunk_len(shape)
    chunks, u = -(-b // lag), len(span)
    first, end = span[:, 0].astype(np.int64), span[:, 1].astype(np.int64)
    if rows.shape[1:] != (lag,) or np.any(first < 0) or np.any(end > chunks) or np.any(first > end) \
            or int((end - first).sum()) != len(rows):
        raise TableError(f"masks_rows {rows.shape} / masks_span do not fit a {h}x{w} table")
    pos = np.arange(chunks)
    keep = (pos >= first[:, None]) & (pos < end[:, None])
    q = np.zeros((u * chunks, lag), np.uint8)
    q[keep.reshape(-1)] = rows
    q = q.reshape(u, chunks, lag)
    word = q.view(np.uint64) if lag % 8 == 0 else q
    packed = np.bitwise_xor.accumulate(word, axis=1).view(np.uint8).reshape(u, chunks * lag)
    return np.ascontiguousarray(packed[:, :b])


def table_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The ``.cand.npz`` bytes of a candidate table (format version 2: masks delta-coded)."""
    stored = {k: v for k, v in arrays.items() if k != "masks"}
    shape = tuple(int(v) for v in arrays["shape"])
    stored.update(encode_masks(arrays["masks"], shape))
    stored["table_version"] = np.asarray(TABLE_VERSION, dtype=np.int32)
    return npz_bytes(stored)


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (never unpickles). A version 2 candidate table is decoded, so
    callers always see ``masks`` as packed rows, whatever version wrote it."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if "table_version" in arrays:
        version = int(arrays.pop("table_version"))
        if version != TABLE_VERSION:
            raise TableError(f"candidate table version {version} is not supported (this reader knows 1 and 2)")
        if "shape" not in arrays or "masks_rows" not in arrays or "masks_span" not in arrays:
            raise TableError("candidate table version 2 lacks shape, masks_rows or masks_span")
        shape = tuple(int(v) for v in arrays["shape"])
        arrays["masks"] = decode_masks(arrays.pop("masks_rows"), arrays.pop("masks_span"), shape)
    return arrays


def check_table(arrays: dict[str, np.ndarray], n: int | None = None) -> list[str]:
    """Problems with a loaded candidate table (empty: it keeps the contract)."""
    missing = [k for k in ("index", "shape", "masks", "scores") if k not in arrays]
    if missing:
        return [f"candidate table lacks {missing}"]
    index, shape, masks = arrays["index"], arrays["shape"], arrays["masks"]
    problems = []
    if index.ndim != 2 or index.shape[0] != index.shape[1] or (n is not None and index.shape != (n, n)):
        problems.append(f"index shape {index.shape} != ({n}, {n})" if n else f"index shape {index.shape} not square")
        return problems
    if shape.shape != (2,) or int(shape.min()) < 1:
        return problems + [f"shape {shape.tolist()} is not a positive (h, w)"]
    h, w = (int(v) for v in shape)
    count = len(masks)
    if masks.ndim != 2 or masks.dtype != np.uint8 or masks.shape[1] != (h * w + 7) // 8:
        problems.append(f"masks {masks.dtype} {masks.shape} != uint8 [U, {(h * w + 7) // 8}]")
    if arrays["scores"].shape != (count,):
        problems.append(f"scores has {arrays['scores'].shape} entries for {count} masks")
    if index.size and (int(index.min()) < -1 or int(index.max()) >= count):
        problems.append(f"index values outside [-1, {count})")
    if "offsets" in arrays:
        off = arrays["offsets"]
        k = index.shape[0]
        if off.shape != (k, k, 9):
            problems.append(f"offsets shape {off.shape} != ({k}, {k}, 9)")
        elif off.size and (int(off.min()) < -1 or int(off.max()) >= count):
            problems.append(f"offsets values outside [-1, {count})")
        elif not np.array_equal(off[..., 4], index):
            problems.append("offsets[..., 4] (keep) differs from index")
    return problems
