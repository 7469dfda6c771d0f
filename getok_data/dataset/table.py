"""The ``.cand.npz`` contract: deterministic bytes, safe loading, one validation.

Arrays: ``index`` int32 ``[n, n]`` (``[j, i]``, -1 = no mask), ``shape`` int32 ``[2]`` (h, w),
``masks`` uint8 ``[U, ceil(h*w/8)]`` (bit-packed rows), ``scores`` float32 ``[U]``, optional
``offsets`` int32 ``[n, n, 9]`` (``[j, i, step]``; ``[..., 4]`` equals ``index``).
"""
from __future__ import annotations

import io
import zipfile

import numpy as np

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class TableError(ValueError):
    """A candidate table that breaks the contract; the message says how."""


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (readable by ``np.load(..., allow_pickle=False)``) with deterministic bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            if arr.dtype == object:
                raise TypeError(f"array {name!r} has dtype object; the candidate table holds no pickles")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            body = io.BytesIO()
            np.lib.format.write_array(body, arr, allow_pickle=False)
            zf.writestr(info, body.getvalue(), compresslevel=6)
    return buf.getvalue()


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (never unpickles)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


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
