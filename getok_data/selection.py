"""Greedy mask-to-anchor selection on a bit-packed candidate table (DESIGN.md section 3).

Masks are stored as ``np.packbits(masks.reshape(U, -1), axis=1)``; internally they are viewed
as 64-bit words so every AND / OR / popcount touches 8x fewer elements. Per image,
:class:`PackedTable` precomputes each mask's area; per target, intersections are counted over
the GT's span of words only. The greedy loop evaluates
candidates in blocks against the current union, so rejected candidates cost one vectorised
operation per block instead of one Python step each. No Python loops over pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("sorted", "gain")
BLOCK = 32  # candidates evaluated per vectorised step of the greedy loop


def _popcount(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.bitwise_count(a).sum(axis=axis, dtype=np.int64)


def to_words(packed: np.ndarray) -> np.ndarray:
    """uint8 [..., B] packed bits -> uint64 [..., ceil(B/8)] (zero padded)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    pad = (-packed.shape[-1]) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros(packed.shape[:-1] + (pad,), np.uint8)], axis=-1)
    return packed.view(np.uint64)


@dataclass
class PackedTable:
    """Candidate masks packed as ``np.packbits(masks.reshape(U, -1), axis=1)`` with an index map."""

    packed: np.ndarray  # uint8 [U, B]
    index: np.ndarray  # int32 [n, n], [j, i], -1 = none
    shape: tuple[int, int]  # (h, w)
    words: np.ndarray = field(init=False)  # uint64 [U, ceil(B/8)]
    area: np.ndarray = field(init=False)
    _anchors: list | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.words = to_words(self.packed)
        self.area = _popcount(self.words)

    @classmethod
    def grid_of(cls, arrays: dict[str, np.ndarray]) -> "PackedTable":
        """The grid's candidates from ``.cand.npz`` arrays. Masks that only offset positions
        produce are stored after the grid's (ids >= ``index.max() + 1``) and are left out."""
        index = arrays["index"]
        count = int(index.max()) + 1 if index.size else 0
        return cls(arrays["masks"][:count], index, tuple(int(v) for v in arrays["shape"]))

    def anchors_of(self) -> list[list[tuple[int, int]]]:
        """For each mask, the grid points (i, j) that map to it, in raster order (cached)."""
        if self._anchors is None:
            out: list[list[tuple[int, int]]] = [[] for _ in range(len(self.packed))]
            for j, i in zip(*np.nonzero(self.index >= 0)):
                out[self.index[j, i]].append((int(i), int(j)))
            self._anchors = out
        return self._anchors


@dataclass
class Selection:
    mask_ids: list[int]  # unique-mask ids in selection order
    token_iou: float
    reason: str | None = None  # why nothing was selected


def select(table: PackedTable, gt_packed: np.ndarray, method: str = "sorted", tau: float = 0.9) -> Selection:
    """Pick the fewest candidate masks whose union reaches IoU >= tau with the GT.

    ``sorted``: candidates by IoU with the GT (ties: lower id), each kept if it raises the
    union's IoU, stop once IoU >= tau. ``gain``: add the largest-gain candidate each step
    (ties: lower id). Candidates disjoint from the GT never raise IoU and are skipped.
    """
    if method not in METHODS:
        raise ValueError(f"selection method must be one of {METHODS}, got {method!r}")
    g = to_words(gt_packed)
    gt_area = int(_popcount(g))
    if gt_area == 0:
        return Selection([], 0.0, "target vanishes at the candidate-table resolution")
    nz = np.flatnonzero(g)
    glo, ghi = int(nz[0]), int(nz[-1]) + 1
    # A slice over all masks beats gathering the overlapping ones (no copy of the table).
    inter = np.add.reduce(np.bitwise_count(table.words[:, glo:ghi] & g[glo:ghi]), axis=1, dtype=np.int64)
    cand = np.flatnonzero(inter)
    inter = inter[cand]
    if len(cand) == 0:
        return Selection([], 0.0, "no grid point's candidate mask overlaps the target")
    if method == "sorted":
        area = table.area[cand]
        iou = inter / (area + gt_area - inter)
        return _greedy(table.words, g, gt_area, cand[np.lexsort((cand, -iou))], tau, first=True)
    return _greedy(table.words, g, gt_area, cand, tau, first=False)


def _greedy(words: np.ndarray, g: np.ndarray, gt_area: int, order: np.ndarray, tau: float, first: bool) -> Selection:
    """Shared loop. ``first``: accept the first candidate in ``order`` that raises the IoU
    (sorted); else accept the candidate with the largest new IoU among all remaining (gain)."""
    union = np.zeros_like(g)
    inside = outside = 0  # union pixels in / out of the GT
    best, chosen, pos = 0.0, [], 0
    remaining = order
    while best < tau:
        block = remaining[pos : pos + BLOCK] if first else remaining
        if len(block) == 0:
            break
        fresh = words[block] & ~union
        gain_in = _popcount(fresh & g)
        gain_out = _popcount(fresh) - gain_in
        iou = (inside + gain_in) / (gt_area + outside + gain_out)
        if first:
            better = np.flatnonzero(iou > best)
            if len(better) == 0:
                pos += BLOCK
                continue
            k = int(better[0])
        else:
            k = int(np.argmax(iou))  # first max: lowest position among ties
            if iou[k] <= best:
                break
        u = int(block[k])
        union |= words[u]
        inside, outside, best = inside + int(gain_in[k]), outside + int(gain_out[k]), float(iou[k])
        chosen.append(u)
        if first:
            pos += k + 1
        else:
            remaining = np.delete(remaining, k)
    return Selection(chosen, best)


def union_iou(table: PackedTable, mask_ids: list[int], gt_packed: np.ndarray) -> float:
    """IoU of the union of the given masks with the GT (the recorded ``token_iou``)."""
    g = to_words(gt_packed)
    union = np.bitwise_or.reduce(table.words[mask_ids], axis=0) if mask_ids else np.zeros_like(g)
    inter = int(_popcount(union & g))
    denom = int(_popcount(union)) + int(_popcount(g)) - inter
    return inter / denom if denom else 0.0
