"""Decode masks from a sample's stored candidate table: no segmenter needed.

An anchor decodes to its grid point's candidate mask. A refined position (an anchor moved by an
offset step) decodes to the segmenter's own mask there when the build stored the offset masks
(``grid.offset_masks``: the table's ``offsets`` map), which is exact. Otherwise it has no
candidate of its own (with the default ``m = 2n`` it lies half-way between grid points) and
decodes to the mask of a grid point around it whose mask *contains* it (the
segmenter's mask for a point prompt covers that point, so this is the stored mask most like the
one the segmenter would give there), trying in order: the grid point nearest to it (ties toward
the move), the anchor itself, then the other grid points of the cell around it, nearest first.
If none does, the refined position adds nothing (the segmenter's mask there is one the table
does not hold; borrowing a neighbour's instead measured worse). The rule is normative
(docs/FORMAT.md); its error against the segmenter run at the refined positions is measured in
docs/TRAINING.md.
"""
from __future__ import annotations

import math

import numpy as np

from .masks import gt_at
from .tokens import OFFSET_STEPS, Grid

Step = tuple[int, int] | None


class TableDecoder:
    """Masks at the table resolution ``[h, w]`` from a sample's ``.cand.npz`` arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], n: int, m: int | None = None):
        self.index = arrays["index"]
        self.h, self.w = (int(v) for v in arrays["shape"])
        self.n = n
        self.m = m or 2 * n
        self.packed = arrays["masks"]
        self.offsets = arrays.get("offsets")  # [n, n, 9] or None (built without offset masks)
        self._cache: dict[int, np.ndarray] = {}

    def mask(self, u: int) -> np.ndarray:
        if u not in self._cache:
            bits = np.unpackbits(self.packed[u], count=self.h * self.w)
            self._cache[u] = bits.reshape(self.h, self.w).astype(bool)
        return self._cache[u]

    def moved(self, i: int, j: int, step: Step) -> tuple[int, int] | None:
        """The grid point nearest to anchor (i, j) moved by ``step``, ties toward the move
        (None: deleted). Pure geometry: where a refined box corner or point re-quantises to."""
        if step is None:
            return None
        du, dv = step
        return _round_toward(i + du * self.n / self.m, du), _round_toward(j - dv * self.n / self.m, -dv)

    def stand_in(self, i: int, j: int, step: Step) -> tuple[int, int] | None:
        """The grid point whose mask stands for anchor (i, j) moved by ``step``; None when deleted,
        off the image, or when no mask around the refined position contains it (it then adds
        nothing). The refined position's table pixel is ``floor`` of its table coordinates, as for
        the grid prompts (``points_to_table``): a half-cell step lands on a cell edge, which belongs
        to the cell right of / below it."""
        if step is None or tuple(step) == (0, 0):
            return None if step is None else (i, j)
        du, dv = step
        u, v = i + du * self.n / self.m, j - dv * self.n / self.m  # refined position in grid units
        row, col = math.floor((v + 0.5) * self.h / self.n), math.floor((u + 0.5) * self.w / self.n)
        if not (0 <= row < self.h and 0 <= col < self.w):
            return None  # off the image
        around = sorted({(a, b) for a in (math.floor(u), math.ceil(u)) for b in (math.floor(v), math.ceil(v))},
                        key=lambda q: ((q[0] - u) ** 2 + (q[1] - v) ** 2, q[1], q[0]))
        for q in dict.fromkeys([self.moved(i, j, step), (i, j), *around]):  # in order, no repeats
            cand = self._candidate(*q)
            if cand is not None and self.mask(cand)[row, col]:
                return q
        return None

    def _candidate(self, i: int, j: int) -> int | None:
        if 0 <= i < self.n and 0 <= j < self.n and self.index[j, i] >= 0:
            return int(self.index[j, i])
        return None

    def refined(self, i: int, j: int, step: Step) -> int | None:
        """Candidate id of anchor (i, j) moved by ``step`` (None: nothing): the stored offset mask
        when the table has them, else the mask of :meth:`stand_in`'s grid point."""
        if step is None:
            return None
        if self.offsets is not None and 0 <= i < self.n and 0 <= j < self.n:
            u = int(self.offsets[j, i, OFFSET_STEPS.index(tuple(step))])
            return u if u >= 0 else None
        q = self.stand_in(i, j, step)
        return None if q is None else self._candidate(*q)

    def union(self, points: list[tuple[int, int] | None]) -> np.ndarray:
        """Union of the candidate masks at grid points (None and points off the grid are skipped)."""
        return self._union_ids([None if p is None else self._candidate(*p) for p in points])

    def _union_ids(self, ids: list[int | None]) -> np.ndarray:
        out = np.zeros((self.h, self.w), bool)
        for u in ids:
            if u is not None:
                out |= self.mask(u)
        return out

    def decode(self, anchors: list[tuple[int, int]], steps: list[Step] | None = None) -> np.ndarray:
        """Mask of a ``<seg>`` answer, optionally refined by one step (or DELETE) per anchor."""
        if steps is None:
            return self.union(list(anchors))
        return self._union_ids([self.refined(i, j, s) for (i, j), s in zip(anchors, steps)])

    def gt(self, mask_rle: dict) -> np.ndarray:
        """A target's GT at the table resolution (nearest neighbour), as ``token_iou`` uses it."""
        return gt_at(mask_rle, (self.h, self.w))


def _round_toward(u: float, direction: int) -> int:
    """Nearest integer; an exact half goes in ``direction``."""
    lo = math.floor(u)
    frac = u - lo
    if abs(frac - 0.5) < 1e-9:
        return lo + 1 if direction > 0 else lo
    return lo + (1 if frac > 0.5 else 0)


def grid_for(meta: dict) -> Grid:
    return Grid(meta["grid"]["n"], meta["width"], meta["height"], meta["grid"]["m"])


