"""Binary masks: decode COCO/REFER segmentations, encode RLE, boxes, resizing.

Every function here returns boolean ``[h, w]`` arrays. RLE is decoded here in numpy after validation
(pycocotools' C decoder trusts its input, and its ``decode`` raises numpy 2 deprecation warnings);
pycocotools rasterises polygons and encodes. Malformed input raises ``ValueError`` with a message
that says what is wrong.
"""
from __future__ import annotations

import ast
import functools
import math
from numbers import Integral, Real
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "segmentation_to_mask",
    "mask_to_rle",
    "rle_to_mask",
    "mask_box",
    "resize_nearest",
]

_MAX_PIXELS = 2**31 - 1


def _check_hw(h: Any, w: Any) -> tuple[int, int]:
    if isinstance(h, bool) or isinstance(w, bool) or not isinstance(h, Integral) or not isinstance(w, Integral):
        raise ValueError(f"mask height/width must be ints, got {h!r}, {w!r}")
    h, w = int(h), int(w)
    if h <= 0 or w <= 0 or h * w > _MAX_PIXELS:
        raise ValueError(f"invalid mask size {h}x{w} (height x width)")
    return h, w


def _parse_size(size: Any) -> tuple[int, int]:
    """RLE ``size`` as ``(h, w)``; accepts a list/tuple or a string such as ``'[864, 900]'``."""
    if isinstance(size, (str, bytes)):
        text = size.decode("ascii", "replace") if isinstance(size, bytes) else size
        try:
            size = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"RLE size is not a [h, w] pair: {text!r}") from e
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE size must be [h, w], got {size!r}")
    try:
        return _check_hw(size[0], size[1])
    except ValueError as e:
        raise ValueError(f"RLE size must be two positive ints, got {size!r}") from e


def _string_counts(s: bytes) -> np.ndarray:
    """Decode COCO's compressed counts string (vectorised mirror of pycocotools ``rleFrString``).

    Each count is a little-endian run of 5-bit groups (char - 48), 0x20 = "more follows",
    0x10 in the last group = negative; counts from index 3 on are deltas to ``counts[i - 2]``.
    """
    c = np.frombuffer(s, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ((c < 0) | (c > 63)).any():
        bad = int(c[(c < 0) | (c > 63)][0]) + 48
        raise ValueError(f"invalid character {chr(bad)!r} in compressed RLE counts")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("compressed RLE counts string is truncated")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    k = np.arange(c.size) - starts[group]
    if k.max() >= 7:
        raise ValueError("compressed RLE count is too long")
    x = np.bincount(group, weights=(c & 0x1F) << (5 * k), minlength=ends.size).astype(np.int64)
    neg = (c[ends] & 0x10) != 0
    x[neg] -= np.int64(1) << (5 * (k[ends][neg] + 1))
    # counts[m] = x[m] + counts[m - 2] for m >= 3: running sums over odd (from 1) and even (from 2) indices
    x[1::2] = np.cumsum(x[1::2])
    if x.size > 2:
        x[2::2] = np.cumsum(x[2::2])
    return x


def _counts_to_mask(counts: np.ndarray, h: int, w: int) -> np.ndarray:
    """Column-major runs (starting with background) -> bool [h, w]."""
    values = (np.arange(counts.size) % 2).astype(bool)
    return np.repeat(values, counts).reshape(w, h).T.copy()


def _check_counts(counts: np.ndarray, h: int, w: int) -> None:
    if (counts < 0).any():
        raise ValueError("RLE counts contain a negative run length")
    total = int(counts.sum())
    if total != h * w:
        raise ValueError(f"RLE counts sum to {total}, expected h*w = {h * w}")


def _rle_dict_to_mask(rle: dict, h: int, w: int) -> np.ndarray:
    if "counts" not in rle or "size" not in rle:
        raise ValueError(f"RLE dict needs 'counts' and 'size', got keys {sorted(map(str, rle))}")
    rh, rw = _parse_size(rle["size"])
    if (rh, rw) != (h, w):
        raise ValueError(f"RLE size {rh}x{rw} differs from the image size {h}x{w} (height x width)")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple)):  # uncompressed, column-major, starts with background
        if not all(isinstance(c, Integral) and not isinstance(c, bool) for c in counts):
            raise ValueError("uncompressed RLE counts must be a list of ints")
        if any(abs(int(c)) >= 2**40 for c in counts):
            raise ValueError("uncompressed RLE counts hold an implausibly large run")
        runs = np.array([int(c) for c in counts], dtype=np.int64)
    elif isinstance(counts, (str, bytes)):
        if isinstance(counts, str) and not counts.isascii():
            raise ValueError("compressed RLE counts must be ASCII")
        runs = _string_counts(counts.encode("ascii") if isinstance(counts, str) else bytes(counts))
    else:
        raise ValueError(f"RLE counts must be a list, str or bytes, got {type(counts).__name__}")
    _check_counts(runs, h, w)
    return _counts_to_mask(runs, h, w)


def _polygons_to_mask(parts: list, h: int, w: int) -> np.ndarray:
    limit = 4 * max(h, w) + 64
    clean: list[list[float]] = []
    for i, part in enumerate(parts):
        if not isinstance(part, (list, tuple, np.ndarray)):
            raise ValueError(f"polygon part {i} is not a list of coordinates")
        coords = list(part)
        if not all(isinstance(v, Real) and not isinstance(v, bool) for v in coords):
            raise ValueError(f"polygon part {i} holds non-numeric coordinates")
        vals = [float(v) for v in coords]
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"polygon part {i} holds non-finite coordinates")
        if any(abs(v) > limit for v in vals):
            raise ValueError(f"polygon part {i} has coordinates far outside the {h}x{w} image")
        if len(vals) % 2:
            raise ValueError(f"malformed polygon: part {i} of {len(parts)} has an odd number of "
                             f"coordinates ({len(vals)}), so its points cannot be paired")
        if len(vals) < 6:  # a point or a segment: never silently dropped from a multi-part mask
            raise ValueError(f"degenerate polygon: part {i} of {len(parts)} has {len(vals) // 2} point(s), "
                             "fewer than 3")
        clean.append(vals)
    merged = mask_utils.merge(mask_utils.frPyObjects(clean, h, w))
    return _counts_to_mask(_string_counts(merged["counts"]), h, w)


def segmentation_to_mask(seg: Any, h: int, w: int) -> np.ndarray:
    """Decode a COCO/REFER segmentation into a boolean ``[h, w]`` mask.

    Accepts polygon lists (``[[x1, y1, x2, y2, ...], ...]``; a part with an odd number of
    coordinates or fewer than 3 points raises, so the target is quarantined with the part named,
    never built from the remaining parts), an uncompressed RLE dict (``counts`` a list of ints, column-major), a
    compressed RLE dict (``counts`` str or bytes), or a list of RLE dicts (their union).
    An RLE ``size`` may be a string such as ``'[864, 900]'``. Overlapping parts are unioned,
    never summed. Raises ``ValueError`` for malformed input and for an RLE whose size is not
    ``(h, w)``.
    """
    h, w = _check_hw(h, w)
    if isinstance(seg, dict):
        return _rle_dict_to_mask(seg, h, w)
    if isinstance(seg, (list, tuple)):
        if len(seg) == 0:
            raise ValueError("empty segmentation")
        if all(isinstance(s, dict) for s in seg):
            out = np.zeros((h, w), dtype=bool)
            for s in seg:
                out |= _rle_dict_to_mask(s, h, w)
            return out
        if any(isinstance(s, dict) for s in seg):
            raise ValueError("segmentation mixes RLE dicts and polygons")
        if all(isinstance(s, Real) and not isinstance(s, bool) for s in seg):
            raise ValueError("polygon segmentation must be a list of parts, got a flat list of numbers")
        return _polygons_to_mask(list(seg), h, w)
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a 2-D mask: ``{"size": [h, w], "counts": str}``."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"mask must be a non-empty 2-D array, got shape {m.shape}")
    enc = mask_utils.encode(np.asfortranarray(m.astype(bool).astype(np.uint8)))
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": enc["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode one RLE dict (compressed or uncompressed) at its own ``size``; boolean ``[h, w]``."""
    if not isinstance(rle, dict) or "size" not in rle:
        raise ValueError("rle must be a dict with 'size' and 'counts'")
    h, w = _parse_size(rle["size"])
    return _rle_dict_to_mask(rle, h, w)


def mask_box(mask: np.ndarray) -> list[float] | None:
    """Tight box ``[x0, y0, x1, y1]`` in pixel-edge coordinates (x1 = last column + 1), or None."""
    m = np.asarray(mask, dtype=bool)
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(m.any(axis=1))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a mask to ``size = (h, w)``.

    Output pixel ``(y, x)`` takes input pixel ``(floor(y * H / h), floor(x * W / w))``: the
    convention of ``cv2.INTER_NEAREST`` and torch's ``interpolate(mode="nearest")``, the tools a
    reader of our shards most likely uses to recompute ``token_iou`` (docs/FORMAT.md).
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"mask must be a non-empty 2-D array, got shape {m.shape}")
    h, w = _check_hw(size[0], size[1])
    if (h, w) == m.shape:
        return m.astype(bool, copy=True)
    out = cv2.resize(m.astype(bool).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


@functools.lru_cache(maxsize=256)
def _gt_cached(counts: str, size: tuple[int, int], shape: tuple[int, int] | None) -> np.ndarray:
    gt = rle_to_mask({"counts": counts, "size": list(size)})
    gt = gt if shape is None or shape == gt.shape else resize_nearest(gt, shape)
    gt.flags.writeable = False  # shared through the cache
    return gt


def gt_at(mask_rle: dict, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A target's GT mask at full resolution, or at the table's ``shape`` by nearest neighbour,
    exactly as ``token_iou`` measures it (cached and read-only: copy before writing)."""
    return _gt_cached(str(mask_rle["counts"]), tuple(int(v) for v in mask_rle["size"]),
                      None if shape is None else (int(shape[0]), int(shape[1])))


def ignore_mask(target: dict, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """A sample target's ignore region (``ignore_rle``: pixels that count for neither intersection
    nor union) at full size or at ``shape`` (nearest, as the GT); None when it has none."""
    rle = target.get("ignore_rle")
    return None if rle is None else gt_at(rle, shape)
