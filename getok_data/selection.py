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
    """Set bits along ``axis`` (int64), summed in uint16 when they fit (~3x cheaper)."""
    acc = np.uint16 if 64 * a.shape[axis] < 2**16 else np.int64
    return np.bitwise_count(a).sum(axis=axis, dtype=acc).astype(np.int64)


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
    _spans: tuple[np.ndarray, np.ndarray] | None = field(init=False, default=None)

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

    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Each mask's [lo, hi) of non-zero words (empty mask: (0, 0)), cached."""
        if self._spans is None:
            nz = self.words != 0
            has = nz.any(axis=1)
            lo = np.where(has, nz.argmax(axis=1), 0)
            hi = np.where(has, nz.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
            self._spans = lo, hi
        return self._spans

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
    counts = np.bitwise_count(np.bitwise_and(words[:, glo:ghi], g[glo:ghi]))
    # sums in the narrowest integer that holds them (a row sums to at most 64 per word): ~3x
    # cheaper than accumulating uint8 counts in int64, same integers
    acc = np.uint16 if 64 * (ghi - glo) < 2**16 else np.int64
    return np.add.reduce(counts, axis=1, dtype=acc).astype(np.int64)


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
        order = np.lexsort((cand, -iou))
        if keep is None:
            return _sorted_counts(table.words, g, gt_area, cand[order], inter[order], area[order], tau)
        return _greedy(table.words, g, gt_area, cand[order], tau, first=True, keep=keep)
    if keep is None:
        return _gain_counts(table, g, gt_area, cand, inter, table.area[cand], tau)
    return _greedy(table.words, g, gt_area, cand, tau, first=False, keep=keep)


def _span(words: np.ndarray) -> tuple[int, int]:
    """[lo, hi) of the non-zero words (empty: (0, 0))."""
    nz = np.flatnonzero(words)
    return (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)


def _sorted_counts(words: np.ndarray, g: np.ndarray, gt_area: int, order: np.ndarray, inter: np.ndarray,
                   area: np.ndarray, tau: float) -> Selection:
    """:func:`_greedy` (sorted) without ignored pixels, from each candidate's GT overlap and area.

    A candidate's new pixels are ``area - |c & union|`` and its new GT pixels ``inter - |c & g &
    union|``, counted over the union's span of words only. Candidates that cannot raise the IoU
    whatever the union (at best all their GT pixels are new and their outside pixels overlap the
    union's: ``(inside + inter) / (gt + outside + max(0, area - inter - outside)) <= best``) are
    skipped uncounted. The bound is exact (division rounds monotonically) and the counts are the
    same integers as :func:`_greedy`'s, so the same choices and the same IoU.
    """
    union = np.zeros_like(g)
    u_lo = u_hi = gu_lo = gu_hi = 0
    gu = union
    inside = outside = 0
    best, chosen, pos = 0.0, [], 0
    while best < tau and pos < len(order):
        rest_in, rest_area = inter[pos:], area[pos:]
        bound = (inside + rest_in) / (gt_area + outside + np.maximum(0, rest_area - rest_in - outside))
        at = pos + np.flatnonzero(bound > best)[:BLOCK]
        if len(at) == 0:
            break
        block = order[at]
        if u_hi > u_lo:
            # one gather of the block over the union's span; |c & g & union| from |c & union|'s
            # words (gu = union & g lies inside the union's span)
            part = words[:, u_lo:u_hi][block]
            np.bitwise_and(part, union[u_lo:u_hi], out=part)
            on_union = _popcount(part)
            on_gt_union = _popcount(np.bitwise_and(part, g[u_lo:u_hi], out=part)) if gu_hi > gu_lo else 0
        else:
            on_union = on_gt_union = 0
        gain_in = inter[at] - on_gt_union
        gain_out = area[at] - on_union - gain_in
        iou = (inside + gain_in) / (gt_area + outside + gain_out)
        better = np.flatnonzero(iou > best)
        if len(better) == 0:
            pos = int(at[-1]) + 1
            continue
        k = int(better[0])
        u = int(block[k])
        union = union | words[u]
        gu = union & g
        (u_lo, u_hi), (gu_lo, gu_hi) = _span(union), _span(gu)
        inside, outside, best = inside + int(gain_in[k]), outside + int(gain_out[k]), float(iou[k])
        chosen.append(u)
        pos = int(at[k]) + 1
    return Selection(chosen, best)


def _gain_counts(table: PackedTable, g: np.ndarray, gt_area: int, order: np.ndarray, inter: np.ndarray,
                 area: np.ndarray, tau: float) -> Selection:
    """:func:`_greedy` (gain) without ignored pixels, from each candidate's GT overlap and area.

    A candidate's new pixels are ``area - |c & union|`` and its new GT pixels ``inter - |c & g &
    union|``; both counts are kept for every candidate and updated on each accept by the
    accepted mask's new pixels only, for the candidates whose word span meets theirs. Same
    integers as :func:`_greedy`'s, so the same choices and the same IoU.
    """
    words, (lo, hi) = table.words, table.spans()
    on_u = np.zeros(len(order), np.int64)
    on_gu = np.zeros(len(order), np.int64)
    c_lo, c_hi = lo[order], hi[order]
    union = np.zeros_like(g)
    taken = np.zeros(len(order), bool)
    inside = outside = 0
    best, chosen, pos = 0.0, [], 0
    first = False
    while best < tau and pos < len(order):
        gain_in = inter[pos:] - on_gu[pos:]
        gain_out = area[pos:] - on_u[pos:] - gain_in
        iou = (inside + gain_in) / (gt_area + outside + gain_out)
        if first:
            better = np.flatnonzero(iou > best)
            if len(better) == 0:
                break
            k = int(better[0])
        else:
            iou[taken] = -1.0  # IoUs are >= 0: never the argmax while a candidate is left
            k = int(np.argmax(iou))  # first max: lowest position among ties
            if taken[k] or iou[k] <= best:
                break
        u = int(order[pos + k])
        inside, outside, best = inside + int(gain_in[k]), outside + int(gain_out[k]), float(iou[k])
        chosen.append(u)
        new = words[u] & ~union
        union |= words[u]
        if first:
            pos += k + 1
        else:
            taken[k] = True
        for counts, bits in ((on_u, new), (on_gu, new & g)):
            b_lo, b_hi = _span(bits)
            if b_hi <= b_lo:
                continue
            at = pos + np.flatnonzero((c_lo[pos:] < b_hi) & (c_hi[pos:] > b_lo))
            if len(at):
                counts[at] += _popcount(words[:, b_lo:b_hi][order[at]] & bits[b_lo:b_hi])
    return Selection(chosen, best)


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
