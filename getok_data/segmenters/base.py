"""Shared pieces of every segmenter: table geometry, grid points and the candidate table.

A segmenter turns one RGB image into a :class:`CandidateTable`: the unique masks that the
``n x n`` grid points produce (one mask per point) plus an ``[n, n]`` index map from each grid
point to its mask. Masks live at a reduced "table" resolution (:func:`table_shape`), which keeps
tables small enough to store in every sample and to reward on at training time.

Optionally (``offset_m``) the table also holds the masks at every position one offset step from
an anchor (:func:`offset_positions`), so a refined anchor decodes exactly, as the segmenter would
decode it, instead of borrowing a grid point's mask.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..registry import Registry
from ..tokens.geometry import Grid
from ..tokens.rules import anchor_positions
from ..tokens.vocab import KEEP, OFFSET_STEPS

#: Every segmenter registers itself here (its options dataclass and a factory).
SEGMENTERS = Registry("segmenter")


def table_shape(height: int, width: int, max_side: int = 256) -> tuple[int, int]:
    """Resolution ``(h, w)`` of the candidate table for an ``height x width`` image.

    ``scale = min(1, max_side / max(H, W))``; each side is ``max(1, round(side * scale))``.
    The default 256 is SAM's native low-res mask size for its 1024 input, so nothing is lost.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max_side < 1:
        raise ValueError(f"table_max_side must be >= 1, got {max_side}")
    scale = min(1.0, max_side / max(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def grid_points(height: int, width: int, n: int) -> np.ndarray:
    """Anchor positions of the ``n x n`` grid, float64 ``[n*n, 2]`` as ``(x, y)`` pixels.

    Raster order (row ``j`` outer, column ``i`` inner): ``x = (i + 0.5) * W / n``,
    ``y = (j + 0.5) * H / n``; point ``p = j * n + i``.
    """
    if n < 1:
        raise ValueError(f"grid n must be >= 1, got {n}")
    return np.stack(anchor_positions(Grid(n, width, height)), axis=1)


def points_to_table(points: np.ndarray, height: int, width: int, shape: tuple[int, int]) -> np.ndarray:
    """Map ``(x, y)`` pixel positions to integer ``(row, col)`` cells of a table of ``shape``."""
    h, w = shape
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    cols = np.clip(np.floor(pts[:, 0] * w / width), 0, w - 1).astype(np.int64)
    rows = np.clip(np.floor(pts[:, 1] * h / height), 0, h - 1).astype(np.int64)
    return np.stack([rows, cols], axis=1)


def offset_positions(height: int, width: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each grid anchor lands after each of the eight moves, deduplicated.

    Returns the unique in-image positions, float64 ``[Q, 2]`` as ``(x, y)`` pixels, and int64
    ``[n, n, 8]`` (``[j, i, k]``, ``k`` over the moves of ``OFFSET_STEPS`` without keep) giving
    each one's row; ``-1`` when it is off the image. Anchor ``(i, j)`` moved by ``(du, dv)`` is at
    ``x = ((2i + 1) m + 2 du n) * W / (2 n m)``, ``y = ((2j + 1) m - 2 dv n) * H / (2 n m)``: the
    integer numerators make neighbours that land on the same spot share a row exactly.
    """
    if m < 1:
        raise ValueError(f"offset lattice m must be >= 1, got {m}")
    moves = [s for s in OFFSET_STEPS if s != KEEP]
    du = np.array([s[0] for s in moves])
    dv = np.array([s[1] for s in moves])
    i = np.arange(n)[None, :, None]
    j = np.arange(n)[:, None, None]
    kx = np.broadcast_to((2 * i + 1) * m + 2 * du * n, (n, n, 8))
    ky = np.broadcast_to((2 * j + 1) * m - 2 * dv * n, (n, n, 8))
    inside = (kx >= 0) & (kx < 2 * n * m) & (ky >= 0) & (ky < 2 * n * m)
    keys = np.stack([ky[inside], kx[inside]], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    where = np.full((n, n, 8), -1, dtype=np.int64)
    where[inside] = inverse.reshape(-1)
    points = np.stack([uniq[:, 1] * width, uniq[:, 0] * height], axis=1) / (2 * n * m)
    return points.astype(np.float64), where


class CandidateTable:
    """Unique candidate masks for one image plus the grid-point -> mask index map.

    ``masks``: bool ``[U, h, w]``, ordered by first appearance in raster order of grid points.
    ``index``: int32 ``[n, n]`` indexed ``[j, i]``; ``-1`` = that point produced no (non-empty) mask.
    ``scores``: float32 ``[U]``; the predicted IoU of the first point that produced the mask
    (SAM) or 1.0 (weight-free segmenters).
    ``offsets``: optional int32 ``[n, n, 9]`` (``[j, i, s]``, ``s`` in ``OFFSET_STEPS`` order):
    the mask of anchor ``(i, j)`` moved by step ``s`` (``-1`` = none, or off the image);
    ``offsets[..., 4]`` (keep) equals ``index``. The grid's masks come first (ids
    ``0 .. index.max()``), the masks only offset positions produce after them.

    A table holds its masks bool, bit-packed (:meth:`packed`), or both: one made from packed
    rows (``packed=``, ``shape=``; what a segmenter that packs on the device hands over) unpacks
    ``masks`` only when asked, so the build never materialises the bool masks on the host.
    """

    def __init__(self, masks: np.ndarray | None = None, index: np.ndarray | None = None,
                 scores: np.ndarray | Sequence[float] | None = None, offsets: np.ndarray | None = None, *,
                 packed: np.ndarray | None = None, shape: Sequence[int] | None = None) -> None:
        if index is None or scores is None:
            raise TypeError("CandidateTable needs index and scores")
        if (masks is None) == (packed is None):
            raise TypeError("CandidateTable needs exactly one of masks= or packed= (with shape=)")
        self._masks: np.ndarray | None = None
        self._packed: np.ndarray | None = None
        if masks is not None:
            self._masks = np.asarray(masks, dtype=bool)
            if self._masks.ndim != 3:
                raise ValueError(f"masks must be [U, h, w], got shape {self._masks.shape}")
            self._shape = (int(self._masks.shape[1]), int(self._masks.shape[2]))
            u = self._masks.shape[0]
        else:
            if shape is None or len(shape) != 2 or min(int(v) for v in shape) < 1:
                raise ValueError(f"packed masks need a positive shape=(h, w), got {shape}")
            self._shape = (int(shape[0]), int(shape[1]))
            self._packed = np.ascontiguousarray(packed, dtype=np.uint8)
            b = (self._shape[0] * self._shape[1] + 7) // 8
            if self._packed.ndim != 2 or self._packed.shape[1] != b:
                raise ValueError(f"packed masks must be uint8 [U, {b}] for shape {self._shape}, got {self._packed.shape}")
            u = self._packed.shape[0]
        self.index = np.asarray(index, dtype=np.int32)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.offsets = None if offsets is None else np.asarray(offsets, dtype=np.int32)
        if self.index.ndim != 2 or self.index.shape[0] != self.index.shape[1]:
            raise ValueError(f"index must be [n, n], got shape {self.index.shape}")
        if self.scores.shape[0] != u:
            raise ValueError(f"scores has {self.scores.shape[0]} entries for {u} masks")
        if self.index.size and (self.index.min() < -1 or self.index.max() >= u):
            raise ValueError(f"index values must be in [-1, {u}), got {self.index.min()}..{self.index.max()}")
        if self.offsets is not None:
            n = self.index.shape[0]
            if self.offsets.shape != (n, n, 9):
                raise ValueError(f"offsets must be [{n}, {n}, 9], got shape {self.offsets.shape}")
            if self.offsets.min() < -1 or self.offsets.max() >= u:
                raise ValueError(f"offsets values must be in [-1, {u})")
            if not np.array_equal(self.offsets[..., 4], self.index):
                raise ValueError("offsets[..., 4] (keep) must equal index")

    @property
    def masks(self) -> np.ndarray:
        """Bool masks ``[U, h, w]`` (unpacked on first use when the table was made packed)."""
        if self._masks is None:
            h, w = self._shape
            u = len(self._packed)
            self._masks = np.unpackbits(self._packed, axis=1, count=h * w).reshape(u, h, w).view(bool)
        return self._masks

    def __getstate__(self) -> dict:
        """Pickle (CPU worker processes) the packed form only: 8x smaller than the bool masks."""
        state = dict(self.__dict__)
        state["_packed"] = self.packed()
        state["_masks"] = None
        return state

    def __repr__(self) -> str:
        return f"CandidateTable(U={len(self)}, shape={self._shape}, n={self.n}, offsets={self.offsets is not None})"

    @property
    def shape(self) -> tuple[int, int]:
        """Table resolution ``(h, w)``."""
        return self._shape

    @property
    def n(self) -> int:
        """Grid size."""
        return int(self.index.shape[0])

    def __len__(self) -> int:
        return int(len(self._packed) if self._packed is not None else len(self._masks))

    def with_offsets(self, packed: np.ndarray, scores: np.ndarray, where: np.ndarray) -> "CandidateTable":
        """This table plus the masks one offset step from each anchor: ``packed`` uint8 ``[Q, B]``
        (rows as :meth:`packed`), ``scores`` ``[Q]``, and ``where`` int ``[n, n, 8]`` (as from
        :func:`offset_positions`: each move's row of ``packed``, -1 off the image). Masks already
        in the table are reused, new ones appended in row order, empty ones -1."""
        own = self.packed()
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        rows_id, new = _dedup_rows(packed, own)
        ids = np.where(where >= 0, rows_id[np.maximum(where, 0)], -1)
        offsets = np.concatenate([ids[..., :4], self.index[..., None], ids[..., 4:]], axis=2)
        return CandidateTable(
            packed=np.concatenate([own, packed[new]]), shape=self.shape, index=self.index,
            scores=np.concatenate([self.scores, np.asarray(scores, np.float32)[new]]), offsets=offsets,
        )

    def packed(self) -> np.ndarray:
        """Bit-packed masks: ``np.packbits(masks.reshape(U, -1), axis=1)``, uint8 ``[U, ceil(h*w/8)]``
        (computed once, then kept)."""
        if self._packed is None:
            h, w = self._shape
            self._packed = np.packbits(self._masks.reshape(len(self._masks), h * w), axis=1)
        return self._packed

    @classmethod
    def from_packed(
        cls,
        packed: np.ndarray,
        index: np.ndarray,
        shape: Sequence[int],
        scores: np.ndarray | None = None,
    ) -> "CandidateTable":
        """Inverse of :meth:`packed`."""
        packed = np.asarray(packed, dtype=np.uint8)
        packed = packed.reshape(len(packed), -1)
        if scores is None:
            scores = np.ones(len(packed), dtype=np.float32)
        return cls(packed=packed, shape=shape, index=index, scores=scores)

    @classmethod
    def from_point_masks(
        cls,
        point_masks: np.ndarray | Sequence[np.ndarray | None],
        n: int,
        scores: np.ndarray | Sequence[float] | None = None,
        shape: Sequence[int] | None = None,
    ) -> "CandidateTable":
        """Build a table from one mask per grid point (raster order, ``n*n`` of them).

        Identical masks (exact equality of the packed bits) are stored once; ``None`` or empty
        masks map to ``-1``. ``shape`` is only needed when no point has a mask.
        """
        p = len(point_masks)
        if p != n * n:
            raise ValueError(f"expected {n * n} point masks for n={n}, got {p}")
        if scores is not None and len(scores) != p:
            raise ValueError(f"expected {p} scores, got {len(scores)}")
        hw: tuple[int, int] | None = (int(shape[0]), int(shape[1])) if shape is not None else None
        if isinstance(point_masks, np.ndarray):
            arr = np.asarray(point_masks, dtype=bool)
            if arr.ndim != 3 or (hw is not None and arr.shape[1:] != hw):
                raise ValueError(f"point masks must be [P, h, w] (h, w = {hw}), got {arr.shape}")
            hw = (int(arr.shape[1]), int(arr.shape[2]))
            rows = np.packbits(arr.reshape(p, hw[0] * hw[1]), axis=1)
        else:
            listed: list[np.ndarray | None] = []
            for k, m in enumerate(point_masks):
                if m is None:
                    listed.append(None)
                    continue
                m = np.asarray(m, dtype=bool)
                if hw is None:
                    hw = (int(m.shape[0]), int(m.shape[1]))
                elif m.shape != hw:
                    raise ValueError(f"point mask {k} has shape {m.shape}, expected {hw}")
                listed.append(np.packbits(m.reshape(-1)))
            if hw is None:
                raise ValueError("no point has a mask; pass shape=(h, w)")
            rows = np.zeros((p, (hw[0] * hw[1] + 7) // 8), np.uint8)
            for k, row in enumerate(listed):
                if row is not None:
                    rows[k] = row
        return cls.from_point_rows(rows, n, scores, hw)

    @classmethod
    def from_point_rows(cls, rows: np.ndarray, n: int, scores: np.ndarray | Sequence[float] | None,
                        shape: Sequence[int]) -> "CandidateTable":
        """A table from one bit-packed mask row per grid point (uint8 ``[n*n, B]``, raster order):
        identical rows are stored once (first appearance), all-zero rows map to ``-1``."""
        rows = np.ascontiguousarray(rows, dtype=np.uint8)
        if rows.ndim != 2 or len(rows) != n * n:
            raise ValueError(f"expected {n * n} packed point masks for n={n}, got {rows.shape}")
        ids, first = _dedup_rows(rows)
        sc = np.ones(len(first), np.float32) if scores is None else np.asarray(scores, np.float32)[first]
        return cls(packed=rows[first], shape=shape, index=ids.astype(np.int32).reshape(n, n), scores=sc)

    def equals(self, other: "CandidateTable") -> bool:
        """Exact equality of masks, index and scores."""
        return (
            self.shape == other.shape
            and np.array_equal(self.packed(), other.packed())
            and np.array_equal(self.index, other.index)
            and np.array_equal(self.scores, other.scores)
            and (self.offsets is None) == (other.offsets is None)
            and (self.offsets is None or np.array_equal(self.offsets, other.offsets))
        )


def _fingerprints(rows: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint per packed row (a fixed random linear hash of its words, mod 2^64):
    equal rows always share one; :func:`_dedup_rows` confirms every match exactly."""
    b = rows.shape[1]
    pad = (-b) % 8
    if pad:
        rows = np.concatenate([rows, np.zeros((len(rows), pad), np.uint8)], axis=1)
    words = rows.view(np.uint64)
    mult = np.random.default_rng(0x6E70).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (words * mult).sum(axis=1, dtype=np.uint64) ^ words[:, :1].reshape(-1)


def _dedup_rows(rows: np.ndarray, known: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Deduplicate packed rows in order: ``(ids, first)`` with ``ids[q]`` the id of row ``q``
    (``-1`` for an all-zero row; rows equal to ``known[u]`` get ``u``, new ones
    ``len(known) + k``) and ``first`` the rows that are new, in order. Exact (fingerprint
    matches are compared byte for byte)."""
    base = 0 if known is None else len(known)
    ids = np.full(len(rows), -1, dtype=np.int64)
    if not len(rows):
        return ids, []
    nonzero = rows.any(axis=1)
    fps = _fingerprints(rows).tolist()
    seen: dict[int, list[tuple[int, np.ndarray]]] = {}
    if known is not None and len(known):
        for u, fp in enumerate(_fingerprints(known).tolist()):
            seen.setdefault(fp, []).append((u, known[u]))
    first: list[int] = []
    for q in np.flatnonzero(nonzero).tolist():
        row = rows[q]
        bucket = seen.setdefault(fps[q], [])
        for u, other in bucket:
            if np.array_equal(row, other):
                ids[q] = u
                break
        else:
            ids[q] = base + len(first)
            bucket.append((base + len(first), row))
            first.append(q)
    return ids, first


@runtime_checkable
class Segmenter(Protocol):
    """What every segmenter provides.

    ``identity`` is recorded in every sample (JSON-serialisable, deterministic: no local paths,
    no device) so that decoding can use the same segmenter and multimask rule.
    """

    identity: dict

    def segment(self, image: np.ndarray, n: int, offset_m: int | None = None) -> CandidateTable:
        """Candidate table for one uint8 RGB image ``[H, W, 3]`` on an ``n x n`` grid; with
        ``offset_m``, also the masks one step (lattice ``m``) from each anchor."""
        ...

    def segment_batch(self, images: list[np.ndarray], n: int, offset_m: int | None = None) -> list[CandidateTable]:
        """Candidate tables for several images (same result as :meth:`segment` on each)."""
        ...


class SegmenterBase:
    """Convenience base: input checks and a looping :meth:`segment_batch`."""

    identity: dict

    def segment(self, image: np.ndarray, n: int, offset_m: int | None = None) -> CandidateTable:  # pragma: no cover
        raise NotImplementedError

    def segment_batch(self, images: list[np.ndarray], n: int, offset_m: int | None = None) -> list[CandidateTable]:
        """Default: one :meth:`segment` call per image."""
        return [self.segment(im, n, offset_m) for im in images]


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate a uint8 RGB ``[H, W, 3]`` image (grey ``[H, W]`` is expanded); return it contiguous."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image {image.shape}")
    return np.ascontiguousarray(image)
