"""Greedy mask-to-anchor selection on a bit-packed candidate table (DESIGN.md section 3).

Per image, :class:`PackedTable` precomputes each unique mask's area and the byte span it
occupies; per target, only candidates whose span meets the GT's span are scored, on that span
only. All pixel work is numpy ``bitwise_count`` over packed bytes, never Python loops over pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("sorted", "gain")


def _popcount(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.bitwise_count(a).sum(axis=axis, dtype=np.int64)


@dataclass
class PackedTable:
    """Candidate masks packed as ``np.packbits(masks.reshape(U, -1), axis=1)`` with an index map."""

    packed: np.ndarray  # uint8 [U, B]
    index: np.ndarray  # int32 [n, n], [j, i], -1 = none
    shape: tuple[int, int]  # (h, w)
    area: np.ndarray = field(init=False)
    lo: np.ndarray = field(init=False)  # first non-zero byte per mask
    hi: np.ndarray = field(init=False)  # one past the last non-zero byte

    def __post_init__(self) -> None:
        nz = self.packed != 0
        any_nz = nz.any(axis=1)
        self.area = _popcount(self.packed)
        b = self.packed.shape[1]
        self.lo = np.where(any_nz, nz.argmax(axis=1), b)
        self.hi = np.where(any_nz, b - nz[:, ::-1].argmax(axis=1), 0)

    def anchors_of(self) -> list[list[tuple[int, int]]]:
        """For each mask, the grid points (i, j) that map to it, in raster order."""
        out: list[list[tuple[int, int]]] = [[] for _ in range(len(self.packed))]
        for j, i in zip(*np.nonzero(self.index >= 0)):
            out[self.index[j, i]].append((int(i), int(j)))
        return out


@dataclass
class Selection:
    mask_ids: list[int]  # unique-mask ids in selection order
    token_iou: float
    reason: str | None = None  # why nothing was selected


def _iou(inter: np.ndarray | int, area: np.ndarray | int, gt_area: int) -> np.ndarray | float:
    union = area + gt_area - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def select(table: PackedTable, gt_packed: np.ndarray, method: str = "sorted", tau: float = 0.9) -> Selection:
    """Pick the fewest candidate masks whose union reaches IoU >= tau with the GT.

    ``sorted``: candidates by IoU with the GT (ties: lower id), each kept if it raises the
    union's IoU, stop once IoU >= tau. ``gain``: add the largest-gain candidate each step.
    Candidates disjoint from the GT never raise IoU and are skipped.
    """
    if method not in METHODS:
        raise ValueError(f"selection method must be one of {METHODS}, got {method!r}")
    gt_area = int(_popcount(gt_packed))
    if gt_area == 0:
        return Selection([], 0.0, "target vanishes at the candidate-table resolution")
    nz = np.flatnonzero(gt_packed)
    glo, ghi = int(nz[0]), int(nz[-1]) + 1
    cand = np.flatnonzero((table.lo < ghi) & (table.hi > glo))
    g = gt_packed[glo:ghi]
    inter = _popcount(table.packed[cand, glo:ghi] & g) if len(cand) else np.zeros(0, np.int64)
    keep = inter > 0
    cand, inter = cand[keep], inter[keep]
    if len(cand) == 0:
        return Selection([], 0.0, "no grid point's candidate mask overlaps the target")
    iou = _iou(inter, table.area[cand], gt_area)
    if method == "sorted":
        return _sorted(table, gt_packed, gt_area, cand[np.lexsort((cand, -iou))], tau)
    return _gain(table, gt_packed, gt_area, cand, tau)


def _sorted(table: PackedTable, g: np.ndarray, gt_area: int, order: np.ndarray, tau: float) -> Selection:
    union = np.zeros_like(g)
    chosen: list[int] = []
    best = 0.0
    for u in order:
        new = union | table.packed[u]
        inter = int(_popcount(new & g))
        iou = float(_iou(inter, int(_popcount(new)), gt_area))
        if iou > best:
            union, best = new, iou
            chosen.append(int(u))
            if best >= tau:
                break
    return Selection(chosen, best)


def _gain(table: PackedTable, g: np.ndarray, gt_area: int, cand: np.ndarray, tau: float) -> Selection:
    rest = table.packed[cand]
    chosen: list[int] = []
    union = np.zeros_like(g)
    inter = out = 0  # pixels of the union inside / outside the GT
    best = 0.0
    while len(cand) and best < tau:
        fresh = rest & ~union
        gi = _popcount(fresh & g)
        go = _popcount(fresh) - gi
        iou = (inter + gi) / (gt_area + out + go)
        k = int(np.argmax(iou))  # first max: lowest candidate id among ties
        if iou[k] <= best:
            break
        union |= rest[k]
        inter, out, best = inter + int(gi[k]), out + int(go[k]), float(iou[k])
        chosen.append(int(cand[k]))
        cand, rest = np.delete(cand, k), np.delete(rest, k, axis=0)
    return Selection(chosen, best)


def union_iou(table: PackedTable, mask_ids: list[int], gt_packed: np.ndarray) -> float:
    """IoU of the union of the given masks with the GT (the recorded ``token_iou``)."""
    union = np.bitwise_or.reduce(table.packed[mask_ids], axis=0) if mask_ids else np.zeros_like(gt_packed)
    inter = int(_popcount(union & gt_packed))
    return float(_iou(inter, int(_popcount(union)), int(_popcount(gt_packed))))
