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

from dataclasses import dataclass
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


@dataclass
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
    """

    masks: np.ndarray
    index: np.ndarray
    scores: np.ndarray
    offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        self.index = np.asarray(self.index, dtype=np.int32)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be [U, h, w], got shape {self.masks.shape}")
        if self.index.ndim != 2 or self.index.shape[0] != self.index.shape[1]:
            raise ValueError(f"index must be [n, n], got shape {self.index.shape}")
        u = self.masks.shape[0]
        if self.scores.shape[0] != u:
            raise ValueError(f"scores has {self.scores.shape[0]} entries for {u} masks")
        if self.index.size and (self.index.min() < -1 or self.index.max() >= u):
            raise ValueError(f"index values must be in [-1, {u}), got {self.index.min()}..{self.index.max()}")
        if self.offsets is not None:
            self.offsets = np.asarray(self.offsets, dtype=np.int32)
            n = self.index.shape[0]
            if self.offsets.shape != (n, n, 9):
                raise ValueError(f"offsets must be [{n}, {n}, 9], got shape {self.offsets.shape}")
            if self.offsets.min() < -1 or self.offsets.max() >= u:
                raise ValueError(f"offsets values must be in [-1, {u})")
            if not np.array_equal(self.offsets[..., 4], self.index):
                raise ValueError("offsets[..., 4] (keep) must equal index")

    @property
    def shape(self) -> tuple[int, int]:
        """Table resolution ``(h, w)``."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def n(self) -> int:
        """Grid size."""
        return int(self.index.shape[0])

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def with_offsets(self, packed: np.ndarray, scores: np.ndarray, where: np.ndarray) -> "CandidateTable":
        """This table plus the masks one offset step from each anchor: ``packed`` uint8 ``[Q, B]``
        (rows as :meth:`packed`), ``scores`` ``[Q]``, and ``where`` int ``[n, n, 8]`` (as from
        :func:`offset_positions`: each move's row of ``packed``, -1 off the image). Masks already
        in the table are reused, new ones appended in row order, empty ones -1."""
        own = self.packed()
        seen = {row.tobytes(): u for u, row in enumerate(own)}
        rows_id = np.full(len(packed), -1, dtype=np.int64)
        new: list[int] = []
        for q, row in enumerate(np.asarray(packed, dtype=np.uint8)):
            if not row.any():
                continue
            key = row.tobytes()
            if key not in seen:
                seen[key] = len(own) + len(new)
                new.append(q)
            rows_id[q] = seen[key]
        h, w = self.shape
        extra = np.unpackbits(np.asarray(packed, np.uint8)[new], axis=1, count=h * w).reshape(len(new), h, w)
        ids = np.where(where >= 0, rows_id[np.maximum(where, 0)], -1)
        offsets = np.concatenate([ids[..., :4], self.index[..., None], ids[..., 4:]], axis=2)
        return CandidateTable(
            masks=np.concatenate([self.masks, extra.astype(bool)]), index=self.index,
            scores=np.concatenate([self.scores, np.asarray(scores, np.float32)[new]]), offsets=offsets,
        )

    def packed(self) -> np.ndarray:
        """Bit-packed masks: ``np.packbits(masks.reshape(U, -1), axis=1)``, uint8 ``[U, ceil(h*w/8)]``."""
        return np.packbits(self.masks.reshape(self.masks.shape[0], -1), axis=1)

    @classmethod
    def from_packed(
        cls,
        packed: np.ndarray,
        index: np.ndarray,
        shape: Sequence[int],
        scores: np.ndarray | None = None,
    ) -> "CandidateTable":
        """Inverse of :meth:`packed`."""
        h, w = int(shape[0]), int(shape[1])
        packed = np.asarray(packed, dtype=np.uint8)
        u = packed.shape[0]
        masks = np.unpackbits(packed.reshape(u, -1), axis=1, count=h * w).reshape(u, h, w).astype(bool)
        if scores is None:
            scores = np.ones(u, dtype=np.float32)
        return cls(masks=masks, index=index, scores=scores)

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
            rows: list[np.ndarray | None] = list(np.packbits(arr.reshape(p, -1), axis=1))
        else:
            rows = []
            for k, m in enumerate(point_masks):
                if m is None:
                    rows.append(None)
                    continue
                m = np.asarray(m, dtype=bool)
                if hw is None:
                    hw = (int(m.shape[0]), int(m.shape[1]))
                elif m.shape != hw:
                    raise ValueError(f"point mask {k} has shape {m.shape}, expected {hw}")
                rows.append(np.packbits(m.reshape(-1)))
        seen: dict[bytes, int] = {}
        first: list[int] = []
        index = np.full(p, -1, dtype=np.int32)
        for k, row in enumerate(rows):
            if row is None or not row.any():
                continue
            key = row.tobytes()
            u = seen.get(key)
            if u is None:
                u = seen[key] = len(first)
                first.append(k)
            index[k] = u
        if hw is None:
            raise ValueError("no point has a mask; pass shape=(h, w)")
        if isinstance(point_masks, np.ndarray):
            masks = np.asarray(point_masks, dtype=bool)[first].reshape(len(first), *hw)
        else:
            masks = np.zeros((len(first), *hw), dtype=bool)
            for u, k in enumerate(first):
                masks[u] = np.asarray(point_masks[k], dtype=bool)
        sc = np.ones(len(first), np.float32) if scores is None else np.asarray(scores, np.float32)[first]
        return cls(masks=masks, index=index.reshape(n, n), scores=sc)

    def equals(self, other: "CandidateTable") -> bool:
        """Exact equality of masks, index and scores."""
        return (
            self.masks.shape == other.masks.shape
            and np.array_equal(self.masks, other.masks)
            and np.array_equal(self.index, other.index)
            and np.array_equal(self.scores, other.scores)
            and (self.offsets is None) == (other.offsets is None)
            and (self.offsets is None or np.array_equal(self.offsets, other.offsets))
        )


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
