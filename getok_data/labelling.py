"""Offset supervision around a GT mask: regions, offset targets, box corners, proposals.

For every grid point ``p`` and its 3x3 neighbourhood at one offset step, an ordered rule puts
``p`` in exactly one region (DESIGN.md section 3):

1. none of the 9 positions inside the GT -> ``F`` (Far: no GT pixel within ``far_steps`` steps,
   Chebyshev, per axis in that axis's step) or ``H`` (Hard-Delete: near, but no single step lands
   inside); both are answered ``<DELETE>``;
2. ``p`` inside the GT eroded by one step (the whole +-1-step box around ``p`` is GT) -> ``I``
   (Inside), answered ``<OFF_0_0>``;
3. otherwise ``R`` (Ring), answered by the step whose landing point is deepest inside the GT
   (largest distance to the background; ties keep ``(0, 0)``, then straight moves before
   diagonal ones).

A position samples the pixel that contains it; positions off the image are background.
"""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from .tokens import OFFSET_STEPS, Box, Grid, Mask, encode
from .tokens.rules import STEP_PREFERENCE, anchor_positions, box_corner_step
from .tokens.rules import offset_answer as refine_answer

# Candidate steps in tie-break order: keep, then straight moves, then diagonals.
STEPS = STEP_PREFERENCE
DELETE_ID = len(OFFSET_STEPS)  # offset index of <DELETE> in vocabulary order
_VOCAB_INDEX = np.array([OFFSET_STEPS.index(s) for s in STEPS])


@dataclass
class Labels:
    regions: str  # n*n chars I/R/H/F, raster order
    offsets: np.ndarray  # int8 [n*n]: offset-token index in vocabulary order (9 = <DELETE>)

    def step(self, k: int) -> tuple[int, int] | None:
        o = int(self.offsets[k])
        return None if o == DELETE_ID else OFFSET_STEPS[o]

    @property
    def offsets_str(self) -> str:
        # offsets are single digits 0..9: one byte each
        return (np.asarray(self.offsets, np.uint8) + ord("0")).tobytes().decode("ascii")


@functools.lru_cache(maxsize=64)
def neighbourhood(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Pixel columns/rows sampled by each grid point's 9 positions: int arrays [n*n, 9] (STEPS order)."""
    sx, sy = grid.step
    ax, ay = (p[:, None] for p in anchor_positions(grid))
    du = np.array([s[0] for s in STEPS])[None, :]
    dv = np.array([s[1] for s in STEPS])[None, :]
    cols = np.floor(ax + du * sx).astype(np.int64)
    rows = np.floor(ay - dv * sy).astype(np.int64)
    cols.flags.writeable = rows.flags.writeable = False  # shared through the cache
    return cols, rows


class Depth:
    """Distance to the background inside the GT (L2, 5x5 mask), on a padded crop of its bbox.

    Computed once per target; used for Ring steps and for the point grounding.
    """

    def __init__(self, gt: np.ndarray):
        ys, xs = np.flatnonzero(gt.any(axis=1)), np.flatnonzero(gt.any(axis=0))  # the bbox
        self.y0, self.x0 = int(ys[0]) - 1, int(xs[0]) - 1
        y1, x1 = int(ys[-1]) + 2, int(xs[-1]) + 2
        crop = np.zeros((y1 - self.y0, x1 - self.x0), np.uint8)
        crop[1:-1, 1:-1] = gt[self.y0 + 1 : y1 - 1, self.x0 + 1 : x1 - 1]
        self.dist = cv2.distanceTransform(crop, cv2.DIST_L2, 5)

    def at(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Depth at pixel positions; -1 outside the crop (so outside the GT)."""
        c, r = cols - self.x0, rows - self.y0
        h, w = self.dist.shape
        ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
        out = np.full(cols.shape, -1.0, np.float32)
        out[ok] = self.dist[r[ok], c[ok]]
        return np.where(out > 0, out, -1.0)

    def deepest(self) -> tuple[float, float]:
        """Centre of the most interior pixel (first in raster order among ties)."""
        y, x = np.unravel_index(int(np.argmax(self.dist)), self.dist.shape)
        return x + self.x0 + 0.5, y + self.y0 + 0.5


def _sample(mask: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    ok = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    out = np.zeros(cols.shape, bool)
    out[ok] = mask[rows[ok], cols[ok]]
    return out


def _box_sum(integral: np.ndarray, x0, y0, x1, y1) -> np.ndarray:
    """Sum over pixel columns [x0, x1) and rows [y0, y1) (already clipped)."""
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def label_regions(gt: np.ndarray, grid: Grid, far_steps: float = 2.0, depth: Depth | None = None) -> Labels:
    """Region and offset target of every grid point for one GT mask (bool [H, W], non-empty)."""
    h, w = gt.shape
    cols, rows = neighbourhood(grid)
    inside = _sample(gt, cols, rows)  # [n*n, 9]
    integral = cv2.integral(gt.view(np.uint8))  # [h+1, w+1] int32
    sx, sy = grid.step
    px, py = anchor_positions(grid)

    # Inside: the +-1-step box of pixels (as sampled) is entirely GT and entirely on the image.
    bx0, bx1 = cols.min(axis=1), cols.max(axis=1) + 1
    by0, by1 = rows.min(axis=1), rows.max(axis=1) + 1
    on_image = (bx0 >= 0) & (by0 >= 0) & (bx1 <= w) & (by1 <= h)
    cx0, cx1 = np.clip(bx0, 0, w), np.clip(bx1, 0, w)
    cy0, cy1 = np.clip(by0, 0, h), np.clip(by1, 0, h)
    full = _box_sum(integral, cx0, cy0, cx1, cy1) == (cx1 - cx0) * (cy1 - cy0)
    is_inside = on_image & full & inside[:, 0]

    # Far vs Hard-Delete: any GT pixel within far_steps steps (Chebyshev box)?
    fx0 = np.clip(np.floor(px - far_steps * sx), 0, w).astype(np.int64)
    fx1 = np.clip(np.floor(px + far_steps * sx) + 1, 0, w).astype(np.int64)
    fy0 = np.clip(np.floor(py - far_steps * sy), 0, h).astype(np.int64)
    fy1 = np.clip(np.floor(py + far_steps * sy) + 1, 0, h).astype(np.int64)
    near = _box_sum(integral, fx0, fy0, fx1, fy1) > 0

    none_in = ~inside.any(axis=1)
    # region letters as bytes (one per grid point), decoded once
    regions = np.where(none_in, np.where(near, ord("H"), ord("F")), np.where(is_inside, ord("I"), ord("R")))
    offsets = np.full(len(regions), DELETE_ID, np.int8)
    offsets[is_inside & ~none_in] = OFFSET_STEPS.index((0, 0))

    ring = np.flatnonzero(regions == ord("R"))
    if len(ring):
        depth = depth or Depth(gt)
        offsets[ring] = _VOCAB_INDEX[np.argmax(depth.at(cols[ring], rows[ring]), axis=1)]
    return Labels(regions.astype(np.uint8).tobytes().decode("ascii"), offsets)


KEEP_ID = OFFSET_STEPS.index((0, 0))  # offset index of <OFF_0_0> in vocabulary order


def keep_masks_on_target(labels: Labels, on_target: np.ndarray) -> Labels:
    """Labels whose ``<DELETE>`` answers become ``<OFF_0_0>`` at grid points whose own candidate
    mask lies mostly on the GT (``on_target``, bool ``[n*n]``): a decoded answer uses the point's
    mask, not its position, so deleting such a point (a thin object no grid position lies on)
    would lose GT pixels. Regions stay as the geometry says (docs/FORMAT.md section 5)."""
    offsets = labels.offsets.copy()
    offsets[(offsets == DELETE_ID) & np.asarray(on_target, bool)] = KEEP_ID
    return Labels(labels.regions, offsets)


def box_corner_steps(box: list[float], grid: Grid) -> tuple[Box, tuple[tuple[int, int], tuple[int, int]]]:
    """Each corner's nearest anchor, then the step that most reduces that corner's error."""
    x0, y0, x1, y1 = box
    tokens = Box(grid.nearest(x0, y0), grid.nearest(x1, y1))
    return tokens, (box_corner_step(grid, tokens.top_left, (x0, y0)), box_corner_step(grid, tokens.bottom_right, (x1, y1)))


def deepest_anchor(gt: np.ndarray, grid: Grid, depth: Depth | None = None) -> tuple[int, int]:
    """The anchor of the cell holding the GT's most interior pixel (the point grounding)."""
    return grid.nearest(*(depth or Depth(gt)).deepest())


def sample_proposals(labels: Labels, k: int, weights: dict[str, float], rng: np.random.Generator,
                     exclude: np.ndarray | None = None) -> list[tuple[int, int]]:
    """K distinct grid points drawn by region weight (towards Inside and Ring), raster order.
    ``exclude`` (bool [n*n]): grid points never drawn (anchors in an ignore region)."""
    n = int(round(math.sqrt(len(labels.regions))))
    w = _region_weights(labels.regions, weights)
    if exclude is not None:
        w[exclude] = 0.0
    if w.sum() <= 0:
        return []
    k = min(k, int(np.count_nonzero(w)))
    picks = np.sort(rng.choice(len(w), size=k, replace=False, p=w / w.sum()))
    return [(int(p % n), int(p // n)) for p in picks]


def _region_weights(regions: str, weights: dict[str, float]) -> np.ndarray:
    """float64 [n*n]: each grid point's draw weight, by a lookup on the region letters."""
    lut = np.zeros(256, np.float64)
    for r in set(regions):
        lut[ord(r)] = float(weights.get(r, 0.0))
    return lut[np.frombuffer(regions.encode("ascii"), np.uint8)]


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded from the given values only, so any runner draws the same samples."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def refinement_samples(labels: Labels, grid: Grid, box: list[float], selected: list[tuple[int, int]],
                       k: int, samples: int, weights: dict[str, float], rng: np.random.Generator,
                       exclude: np.ndarray | None = None) -> list[dict]:
    """Refinement turns for one target: the box corners, the selected anchors, K-point proposals
    (never at the ``exclude`` grid points)."""
    box_tokens = Box(grid.nearest(box[0], box[1]), grid.nearest(box[2], box[3]))
    out = [{"kind": "box", "origin": "nearest", "prompt": encode(box_tokens),
            "answer": refine_answer([box_tokens], grid, labels.step, box)}]
    if selected:
        raster = Mask(tuple(sorted(selected, key=lambda a: (a[1], a[0]))))
        out.append({"kind": "seg", "origin": "selected", "prompt": encode(raster),
                    "answer": refine_answer([raster], grid, labels.step, box)})
    for _ in range(samples):
        prop = sample_proposals(labels, k, weights, rng, exclude)
        if prop:
            out.append({"kind": "seg", "origin": "sampled", "prompt": encode(Mask(tuple(prop))),
                        "answer": refine_answer([Mask(tuple(prop))], grid, labels.step, box)})
    return out


__all__ = ["Depth", "Labels", "label_regions", "box_corner_steps", "deepest_anchor",
           "sample_proposals", "refinement_samples", "stable_rng", "neighbourhood"]
