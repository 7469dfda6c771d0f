"""Decode masks from a sample's stored candidate table: no segmenter needed.

An anchor decodes to its grid point's candidate mask. A refined position (an anchor moved by an
offset step) decodes to the candidate of the grid point nearest to it, ties going in the
direction of the move: with the default ``m = 2n`` a step lands exactly half-way between two
grid points, so any move hands the point to the neighbouring grid point's mask. This is an
approximation of running the segmenter at the refined position (documented in docs/FORMAT.md;
its error is measured in docs/BENCHMARKS.md).
"""
from __future__ import annotations

import math

import numpy as np

from .masks import resize_nearest, rle_to_mask
from .tokens import Grid

Step = tuple[int, int] | None


class TableDecoder:
    """Masks at the table resolution ``[h, w]`` from a sample's ``.cand.npz`` arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], n: int, m: int | None = None):
        self.index = arrays["index"]
        self.h, self.w = (int(v) for v in arrays["shape"])
        self.n = n
        self.m = m or 2 * n
        self.packed = arrays["masks"]
        self._cache: dict[int, np.ndarray] = {}

    def mask(self, u: int) -> np.ndarray:
        if u not in self._cache:
            bits = np.unpackbits(self.packed[u], count=self.h * self.w)
            self._cache[u] = bits.reshape(self.h, self.w).astype(bool)
        return self._cache[u]

    def moved(self, i: int, j: int, step: Step) -> tuple[int, int] | None:
        """The grid point whose mask stands for anchor (i, j) moved by ``step`` (None: deleted)."""
        if step is None:
            return None
        du, dv = step
        return (_round_toward(i + du * self.n / self.m, du), _round_toward(j - dv * self.n / self.m, -dv))

    def union(self, points: list[tuple[int, int] | None]) -> np.ndarray:
        """Union of the candidate masks at grid points (None and points off the grid are skipped)."""
        out = np.zeros((self.h, self.w), bool)
        for p in points:
            if p is None:
                continue
            i, j = p
            if 0 <= i < self.n and 0 <= j < self.n and self.index[j, i] >= 0:
                out |= self.mask(int(self.index[j, i]))
        return out

    def decode(self, anchors: list[tuple[int, int]], steps: list[Step] | None = None) -> np.ndarray:
        """Mask of a ``<seg>`` answer, optionally refined by one step (or DELETE) per anchor."""
        if steps is None:
            return self.union(list(anchors))
        return self.union([self.moved(i, j, s) for (i, j), s in zip(anchors, steps)])

    def gt(self, mask_rle: dict) -> np.ndarray:
        """A target's GT at the table resolution (nearest neighbour), as ``token_iou`` uses it."""
        return resize_nearest(rle_to_mask(mask_rle), (self.h, self.w))


def _round_toward(u: float, direction: int) -> int:
    """Nearest integer; an exact half goes in ``direction``."""
    lo = math.floor(u)
    frac = u - lo
    if abs(frac - 0.5) < 1e-9:
        return lo + 1 if direction > 0 else lo
    return lo + (1 if frac > 0.5 else 0)


def grid_for(meta: dict) -> Grid:
    return Grid(meta["grid"]["n"], meta["width"], meta["height"], meta["grid"]["m"])


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0
