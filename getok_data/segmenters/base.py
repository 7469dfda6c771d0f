"""Shared pieces of every segmenter: table geometry, grid points and the candidate table.

A segmenter turns one RGB image into a :class:`CandidateTable`: the unique masks that the
``n x n`` grid points produce (one mask per point) plus an ``[n, n]`` index map from each grid
point to its mask. Masks live at a reduced "table" resolution (:func:`table_shape`), which keeps
tables small enough to store in every sample and to reward on at training time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


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
    xs = (np.arange(n, dtype=np.float64) + 0.5) * width / n
    ys = (np.arange(n, dtype=np.float64) + 0.5) * height / n
    gx, gy = np.meshgrid(xs, ys)  # [j, i]
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def points_to_table(points: np.ndarray, height: int, width: int, shape: tuple[int, int]) -> np.ndarray:
    """Map ``(x, y)`` pixel positions to integer ``(row, col)`` cells of a table of ``shape``."""
    h, w = shape
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    cols = np.clip(np.floor(pts[:, 0] * w / width), 0, w - 1).astype(np.int64)
    rows = np.clip(np.floor(pts[:, 1] * h / height), 0, h - 1).astype(np.int64)
    return np.stack([rows, cols], axis=1)


@dataclass
class CandidateTable:
    """Unique candidate masks for one image plus the grid-point -> mask index map.

    ``masks``: bool ``[U, h, w]``, ordered by first appearance in raster order of grid points.
    ``index``: int32 ``[n, n]`` indexed ``[j, i]``; ``-1`` = that point produced no (non-empty) mask.
    ``scores``: float32 ``[U]``; the predicted IoU of the first point that produced the mask
    (SAM) or 1.0 (weight-free segmenters).
    """

    masks: np.ndarray
    index: np.ndarray
    scores: np.ndarray

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
        )


@runtime_checkable
class Segmenter(Protocol):
    """What every segmenter provides.

    ``identity`` is recorded in every sample (JSON-serialisable, deterministic: no local paths,
    no device) so that decoding can use the same segmenter and multimask rule.
    """

    identity: dict

    def segment(self, image: np.ndarray, n: int) -> CandidateTable:
        """Candidate table for one uint8 RGB image ``[H, W, 3]`` on an ``n x n`` grid."""
        ...

    def segment_batch(self, images: list[np.ndarray], n: int) -> list[CandidateTable]:
        """Candidate tables for several images (same result as :meth:`segment` on each)."""
        ...


class SegmenterBase:
    """Convenience base: input checks and a looping :meth:`segment_batch`."""

    identity: dict

    def segment(self, image: np.ndarray, n: int) -> CandidateTable:  # pragma: no cover - abstract
        raise NotImplementedError

    def segment_batch(self, images: list[np.ndarray], n: int) -> list[CandidateTable]:
        """Default: one :meth:`segment` call per image."""
        return [self.segment(im, n) for im in images]


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
