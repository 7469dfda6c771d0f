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
    _by_mask: tuple[np.ndarray, np.ndarray] | None = field(init=False, default=None)

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

    def _grouped(self) -> tuple[np.ndarray, np.ndarray]:
        """Raster positions of the mapped grid points grouped by mask id (raster order within a
        group) and each id's start in that list: one stable sort instead of a loop per point."""
        if self._by_mask is None:
            flat = self.index.reshape(-1)
            pos = np.flatnonzero(flat >= 0)
            order = pos[np.argsort(flat[pos], kind="stable")]
            starts = np.searchsorted(flat[order], np.arange(len(self.packed) + 1))
            self._by_mask = order, starts
        return self._by_mask

    def anchors_for(self, u: int) -> list[tuple[int, int]]:
        """The grid points (i, j) that map to mask ``u``, in raster order."""
        order, starts = self._grouped()
        n = self.index.shape[1]
        return [(int(p % n), int(p // n)) for p in order[starts[u] : starts[u + 1]].tolist()]

    def anchors_of(self) -> list[list[tuple[int, int]]]:
        """For each mask, the grid points (i, j) that map to it, in raster order (cached)."""
        if self._anchors is None:
            self._anchors = [self.anchors_for(u) for u in range(len(self.packed))]
        return self._anchors


def overlap(table: PackedTable, gt_packed: np.ndarray) -> np.ndarray:
    """int64 [U]: each candidate's pixels on the (packed) GT; computed once per target and
    shared by :func:`select` and :func:`mostly_on`."""
    return _span_overlap(table.words, to_words(np.asarray(gt_packed, np.uint8)[None])[0])


def mostly_on(table: PackedTable, gt_packed: np.ndarray, inter: np.ndarray | None = None) -> np.ndarray:
    """bool ``[n*n]`` (raster order): whether each grid point's candidate mask has at least half
    of its pixels on the GT (False where a point has no mask). ``inter``: :func:`overlap` of
    this GT, when the caller has it."""
    if inter is None:
        inter = overlap(table, gt_packed)
    on = (2 * inter >= table.area) & (table.area > 0)
    index = table.index.reshape(-1)
    return np.where(index >= 0, on[np.maximum(index, 0)] if len(on) else False, False)


def _span_overlap(words: np.ndarray, g: np.ndarray) -> np.ndarray:
    """int64 [U]: each mask's pixels on ``g``, counted over the words where ``g`` has any bit
    (the others contribute nothing), so a small GT costs a small slice of the table."""
    nz = np.flatnonzero(g)
    if len(nz) == 0 or len(words) == 0:
        return np.zeros(len(words), np.int64)
    glo, ghi = int(nz[0]), int(nz[-1]) + 1
    return np.add.reduce(np.bitwise_count(words[:, glo:ghi] & g[glo:ghi]), axis=1, dtype=np.int64)


@dataclass
class Selection:
    mask_ids: list[int]  # unique-mask ids in selection order
    token_iou: float
    reason: str | None = None  # why nothing was selected


def select(table: PackedTable, gt_packed: np.ndarray, method: str = "sorted", tau: float = 0.9,
           ignore_packed: np.ndarray | None = None, inter: np.ndarray | None = None) -> Selection:
    """Pick the fewest candidate masks whose union reaches IoU >= tau with the GT.

    ``sorted``: candidates by IoU with the GT (ties: lower id), each kept if it raises the
    union's IoU, stop once IoU >= tau. ``gain``: add the largest-gain candidate each step
    (ties: lower id). Candidates disjoint from the GT never raise IoU and are skipped.
    ``ignore_packed`` (packed like the GT): pixels that count for neither intersection nor
    union (``tokens.rules.mask_iou``), so a candidate spilling into them is not penalised.
    ``inter``: :func:`overlap` of this GT when the caller has it (used only without ignore).
    """
    if method not in METHODS:
        raise ValueError(f"selection method must be one of {METHODS}, got {method!r}")
    g = to_words(gt_packed)
    keep = None if ignore_packed is None else ~to_words(ignore_packed)
    if keep is not None:
        g = g & keep
    gt_area = int(_popcount(g))
    if gt_area == 0:
        return Selection([], 0.0, "target vanishes at the candidate-table resolution")
    # A slice over all masks beats gathering the overlapping ones (no copy of the table).
    if inter is None or keep is not None:
        inter = _span_overlap(table.words, g)
    cand = np.flatnonzero(inter)
    inter = inter[cand]
    if len(cand) == 0:
        return Selection([], 0.0, "no grid point's candidate mask overlaps the target")
    if method == "sorted":
        area = table.area[cand] if keep is None else _popcount(table.words[cand] & keep)
        iou = inter / (area + gt_area - inter)
        return _greedy(table.words, g, gt_area, cand[np.lexsort((cand, -iou))], tau, first=True, keep=keep)
    return _greedy(table.words, g, gt_area, cand, tau, first=False, keep=keep)


def _greedy(words: np.ndarray, g: np.ndarray, gt_area: int, order: np.ndarray, tau: float, first: bool,
            keep: np.ndarray | None = None) -> Selection:
    """Shared loop. ``first``: accept the first candidate in ``order`` that raises the IoU
    (sorted); else accept the candidate with the largest new IoU among all remaining (gain).
    ``keep``: words of the pixels that count (not ignored); None = all."""
    union = np.zeros_like(g)
    inside = outside = 0  # union pixels in / out of the GT
    best, chosen, pos = 0.0, [], 0
    remaining = order
    while best < tau:
        block = remaining[pos : pos + BLOCK] if first else remaining
        if len(block) == 0:
            break
        fresh = words[block] & ~union
        if keep is not None:
            fresh &= keep
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


def union_iou(table: PackedTable, mask_ids: list[int], gt_packed: np.ndarray,
              ignore_packed: np.ndarray | None = None) -> float:
    """IoU of the union of the given masks with the GT (the recorded ``token_iou``); pixels of
    ``ignore_packed`` count for neither intersection nor union."""
    g = to_words(gt_packed)
    union = np.bitwise_or.reduce(table.words[mask_ids], axis=0) if mask_ids else np.zeros_like(g)
    if ignore_packed is not None:
        keep = ~to_words(ignore_packed)
        g, union = g & keep, union & keep
    inter = int(_popcount(union & g))
    denom = int(_popcount(union)) + int(_popcount(g)) - inter
    return inter / denom if denom else 0.0
