"""The ``.cand.npz`` contract: deterministic bytes, safe loading, one validation.

Arrays (as :func:`load_npz` returns them, whatever the version on disk): ``index`` int32
``[n, n]`` (``[j, i]``, -1 = no mask), ``shape`` int32 ``[2]`` (h, w), ``masks`` uint8
``[U, ceil(h*w/8)]`` (bit-packed rows), ``scores`` float32 ``[U]``, optional ``offsets`` int32
``[n, n, 9]`` (``[j, i, step]``; ``[..., 4]`` equals ``index``).

On disk (format version 2, :func:`table_bytes`) ``masks`` is stored as a delta-coded, cropped
row stream kept as its non-zero bytes (docs/FORMAT.md "Candidate-table encoding"): ~11x cheaper
to write than deflating the packed masks, and ~40% smaller. Version 1 files (``masks`` stored as
is) and early version 2 files (the row stream itself, ``masks_rows``) are still read.
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


# Deflate (level, strategy) per member, others (1, default): on these tables level 6 costs ~5x
# the time for the same bytes, except ``offsets`` (superpixel builds: ~40% smaller at level 6).
# Run-length for the mask members (long zero runs; as small as level 1's matches, ~1.5x faster).
_MEMBER_DEFLATE = {"offsets": (6, zlib.Z_DEFAULT_STRATEGY),
                   **{k: (1, zlib.Z_RLE) for k in ("masks_rows", "masks_span", "masks_wmap", "masks_bmap", "masks_bytes")}}


def _deflate(raw: bytes, name: str) -> bytes:
    level, strategy = _MEMBER_DEFLATE.get(name, (1, zlib.Z_DEFAULT_STRATEGY))
    co = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
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
        data = _deflate(raw, name)
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


def _delta_chunks(masks: np.ndarray, shape: tuple[int, int]):
    """The XOR-delta chunks of :func:`encode_masks` (as uint64 words when ``L % 8 == 0``, else
    bytes) ``[U, C, *]``, each mask's ``first`` / ``end`` and the ``keep`` mask ``[U, C]``."""
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
    qnz = q != 0
    per = q.shape[2]  # words per chunk: a chunk's flags read as one integer when they fit one
    item = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(per)
    nz = qnz.view(item)[..., 0] != 0 if item is not None else qnz.any(axis=2)
    has = nz.any(axis=1)
    first = np.where(has, nz.argmax(axis=1), 0)
    end = np.where(has, chunks - nz[:, ::-1].argmax(axis=1), 0)
    pos = np.arange(chunks)
    keep = (pos >= first[:, None]) & (pos < end[:, None])
    return q, qnz, first, end, keep


def encode_masks(masks: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Packed masks ``[U, B]`` -> ``masks_rows`` uint8 ``[R, L]`` and ``masks_span`` int32 ``[U, 2]``.

    Each mask (zero padded to ``C * L`` bytes, ``L`` = :func:`_chunk_len`) is cut into ``C``
    chunks of ``L`` bytes; chunk ``c`` is XORed with chunk ``c - 1`` (so a smooth mask becomes its
    row-to-row edges), and only the chunks from the first to the last non-zero delta are kept:
    ``masks_span[u] = (first, end)``, rows of all masks concatenated in mask order.
    """
    q, _, first, end, keep = _delta_chunks(masks, shape)
    u, chunks, lag = len(q), q.shape[1], _chunk_len(shape)
    # gather whole chunks as single void items (faster than a byte-wise row gather; same bytes)
    rows = q.view(np.uint8).reshape(u * chunks, lag).view(np.dtype((np.void, lag)))[keep.reshape(-1)]
    rows = rows.view(np.uint8).reshape(-1, lag)
    return {"masks_rows": rows, "masks_span": np.stack([first, end], axis=1).astype(np.int32)}


def encode_masks_sparse(masks: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """``masks_span`` and the :func:`sparse_encode` members of the :func:`encode_masks` row stream.

    When chunks are whole words (``L % 8 == 0``, e.g. 256-px tables) the row stream is never
    gathered: chunks outside a mask's span are zero, so the stream's non-zero words are those of
    all chunks, in the same order, and its word bitmap is the chunks' one restricted to the spans.
    """
    if _chunk_len(shape) % 8:
        coded = encode_masks(masks, shape)
        return {"masks_span": coded["masks_span"], **sparse_encode(coded["masks_rows"])}
    q, qnz, first, end, keep = _delta_chunks(masks, shape)
    per = q.shape[2]  # a chunk's flags gathered as one item
    item = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(per, np.dtype((np.void, per)))
    wnz = np.compress(keep.reshape(-1), qnz.reshape(-1, per).view(item).reshape(-1)).view(bool)
    nzb = np.compress(qnz.reshape(-1), q.reshape(-1)).view(np.uint8)
    bnz = nzb != 0
    return {"masks_span": np.stack([first, end], axis=1).astype(np.int32),
            "masks_wmap": np.packbits(wnz.reshape(-1), bitorder="little"),
            "masks_bmap": np.packbits(bnz, bitorder="little"), "masks_bytes": np.compress(bnz, nzb)}


def sparse_encode(stream: np.ndarray) -> dict[str, np.ndarray]:
    """A flat uint8 row stream -> its non-zero bytes, addressed by two bitmaps.

    The delta-coded row stream is ~97% zero bytes; deflating it costs ~5 ms per n=32 table, so
    only what is not zero is kept: ``masks_wmap`` (bit ``k``, little-endian bit order, set when
    8-byte word ``k`` of the stream, zero padded, is not zero), ``masks_bmap`` (one byte per
    non-zero word, bit ``b`` set when its byte ``b`` is not zero) and ``masks_bytes`` (the
    non-zero bytes in stream order).
    """
    stream = np.ascontiguousarray(stream, dtype=np.uint8).reshape(-1)
    if len(stream) % 8:
        stream = np.concatenate([stream, np.zeros(-len(stream) % 8, np.uint8)])
    words = stream.view(np.uint64)
    wnz = words != 0
    nzb = np.compress(wnz, words).view(np.uint8)
    bnz = nzb != 0
    return {"masks_wmap": np.packbits(wnz, bitorder="little"), "masks_bmap": np.packbits(bnz, bitorder="little"),
            "masks_bytes": np.compress(bnz, nzb)}


def sparse_decode(wmap: np.ndarray, bmap: np.ndarray, vals: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`sparse_encode`: the flat uint8 stream of ``size`` bytes."""
    nwords = -(-size // 8)
    if wmap.ndim != 1 or bmap.ndim != 1 or vals.ndim != 1 or len(wmap) != -(-nwords // 8):
        raise TableError(f"masks_wmap {wmap.shape} does not fit a row stream of {size} bytes")
    wnz = np.unpackbits(wmap, count=nwords, bitorder="little").view(bool)
    k = int(np.count_nonzero(wnz))
    if len(bmap) != k:
        raise TableError(f"masks_bmap has {len(bmap)} entries for {k} non-zero words")
    bnz = np.unpackbits(bmap, bitorder="little").view(bool)
    if int(np.count_nonzero(bnz)) != len(vals):
        raise TableError(f"masks_bytes has {len(vals)} entries, masks_bmap marks {int(np.count_nonzero(bnz))}")
    nzb = np.zeros(8 * k, np.uint8)
    nzb[bnz] = vals
    words = np.zeros(nwords, np.uint64)
    words[wnz] = nzb.view(np.uint64)
    return words.view(np.uint8)[:size]


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
    stored.update(encode_masks_sparse(arrays["masks"], shape))
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
        sparse = ("masks_wmap", "masks_bmap", "masks_bytes")
        if "shape" not in arrays or "masks_span" not in arrays or not (
                "masks_rows" in arrays or all(k in arrays for k in sparse)):
            raise TableError("candidate table version 2 lacks shape, masks_span or the masks_wmap / "
                             "masks_bmap / masks_bytes stream")
        shape = tuple(int(v) for v in arrays["shape"])
        if "masks_rows" not in arrays:  # the released layout; masks_rows itself: early v2 builds
            span = arrays["masks_span"]
            if span.ndim != 2 or span.shape[1:] != (2,):
                raise TableError(f"masks_span {span.shape} is not [U, 2]")
            lag = _chunk_len(shape)
            count = int((span[:, 1].astype(np.int64) - span[:, 0]).sum())
            if count < 0:
                raise TableError(f"masks_span {span.shape} does not fit a {shape[0]}x{shape[1]} table")
            stream = sparse_decode(*(arrays.pop(k) for k in sparse), count * lag)
            arrays["masks_rows"] = stream.reshape(count, lag)
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
