"""Weight-free segmenter (scikit-image): the demo and CI backend when no SAM checkpoint exists.

The image is resized (``cv2.INTER_AREA``) to the table resolution (:func:`table_shape`) and
over-segmented once with Felzenszwalb's graph-based method, whose merge rule follows colour edges:
a flat-coloured region of any size becomes one segment, textured regions become several. Each grid
point's mask is the segment that contains the point's position mapped to the table. There is one
scale only: a point gets one mask, and a large textured object is reached as the union of several
grid points' segments (which the selection stage does); on flat regions the single scale already
gives whole objects. Segments thinner than 3 table pixels (edge blends) are dissolved into the
neighbouring segment of the closest colour (:func:`dissolve_thin`).

Parameters scale with the table area (reference 256 x 256 = 65536 pixels):
``scale = scale_ref * area / 65536`` and ``min_size = max(4, round(min_size_ref * area / 65536))``.
Fully deterministic; ~10-20 ms per 320 x 240 image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import felzenszwalb

from .base import (
    SEGMENTERS,
    CandidateTable, SegmenterBase, check_image, grid_points, offset_positions, points_to_table, table_shape,
)

REF_AREA = 256 * 256


def dissolve_thin(labels: np.ndarray, image: np.ndarray, radius: int = 2) -> np.ndarray:
    """Give the pixels of segments with no 3 x 3 core to the best-matching kept neighbour.

    Resizing, smoothing and anti-aliasing blend colours along edges, and Felzenszwalb turns those
    blends into 1-2 pixel wide strips around shapes. A segment is kept only if some pixel's whole
    3 x 3 neighbourhood belongs to it; every other pixel joins the kept segment within ``radius``
    whose mean colour is closest to the pixel's own colour (the nearest kept pixel if none is
    that close). Label ids are made consecutive again.
    """
    core = (ndi.maximum_filter(labels, 3, mode="nearest") == labels) & (
        ndi.minimum_filter(labels, 3, mode="nearest") == labels
    )
    nlab = int(labels.max()) + 1
    keep = np.zeros(nlab, dtype=bool)
    keep[labels[core]] = True
    kept_px = keep[labels]
    if kept_px.all() or not kept_px.any():
        return labels
    h, w = labels.shape
    img = image.reshape(h * w, -1).astype(np.float64)
    flat = labels.ravel()
    counts = np.bincount(flat[kept_px.ravel()], minlength=nlab).astype(np.float64)
    means = np.stack(
        [np.bincount(flat[kept_px.ravel()], img[kept_px.ravel(), c], minlength=nlab) for c in range(img.shape[1])],
        axis=1,
    ) / np.maximum(counts, 1)[:, None]
    rr, cc = np.nonzero(~kept_px)
    colour = img[rr * w + cc]
    best_d = np.full(len(rr), np.inf)
    best_l = np.full(len(rr), -1, dtype=labels.dtype)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            y, x = np.clip(rr + dy, 0, h - 1), np.clip(cc + dx, 0, w - 1)
            ok = kept_px[y, x]
            cand = labels[y, x]
            d = np.where(ok, ((colour - means[cand]) ** 2).sum(axis=1), np.inf)
            better = d < best_d  # strict: ties keep the first (deterministic) candidate
            best_d[better], best_l[better] = d[better], cand[better]
    out = labels.copy()
    out[rr, cc] = best_l
    if (best_l < 0).any():  # far from every kept pixel: nearest kept pixel
        _, (ir, ic) = ndi.distance_transform_edt(out < 0, return_indices=True)
        out = out[ir, ic]
    return np.unique(out, return_inverse=True)[1].reshape(labels.shape)


class SuperpixelSegmenter(SegmenterBase):
    """Felzenszwalb over-segmentation at table resolution; one segment per grid point."""

    def __init__(
        self,
        table_max_side: int = 256,
        scale: float = 300.0,
        sigma: float = 0.5,
        min_size: int = 40,
    ) -> None:
        self.table_max_side = int(table_max_side)
        self.scale_ref = float(scale)
        self.sigma = float(sigma)
        self.min_size_ref = int(min_size)
        self.identity: dict[str, Any] = {
            "name": "superpixel",
            "method": "felzenszwalb",
            "scale": self.scale_ref,
            "sigma": self.sigma,
            "min_size": self.min_size_ref,
            "param_ref_area": REF_AREA,
            "resize": "area",
            "dissolve_thin": 3,
            "table_max_side": self.table_max_side,
        }

    def labels(self, image: np.ndarray) -> np.ndarray:
        """Segment labels ``int [h, w]`` of the image at table resolution."""
        image = check_image(image)
        H, W = image.shape[:2]
        h, w = table_shape(H, W, self.table_max_side)
        small = image if (h, w) == (H, W) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        ratio = (h * w) / REF_AREA
        lab = felzenszwalb(
            small,
            scale=self.scale_ref * ratio,
            sigma=self.sigma,
            min_size=max(4, int(round(self.min_size_ref * ratio))),
            channel_axis=-1,
        )
        return dissolve_thin(lab, small)

    def segment_points(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks (bool ``[P, h, w]``) and scores (1.0) for arbitrary ``(x, y)`` pixel points."""
        image = check_image(image)
        lab = self.labels(image)
        rc = points_to_table(points, image.shape[0], image.shape[1], lab.shape)
        point_labels = lab[rc[:, 0], rc[:, 1]]
        return lab[None] == point_labels[:, None, None], np.ones(len(point_labels), np.float32)

    def segment(self, image: np.ndarray, n: int, offset_m: int | None = None) -> CandidateTable:
        """Candidate table: unique segments in raster order of the grid points that hit them."""
        image = check_image(image)
        H, W = image.shape[:2]
        lab = self.labels(image)
        rc = points_to_table(grid_points(H, W, n), H, W, lab.shape)
        point_labels = lab[rc[:, 0], rc[:, 1]]
        uniq, first, inverse = np.unique(point_labels, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # unique labels by first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        index = rank[inverse.reshape(-1)].astype(np.int32).reshape(n, n)
        masks = lab[None] == uniq[order][:, None, None]
        table = CandidateTable(masks=masks, index=index, scores=np.ones(len(uniq), np.float32))
        if offset_m is None:
            return table
        points, where = offset_positions(H, W, n, offset_m)
        rc = points_to_table(points, H, W, lab.shape)
        labels, inverse = np.unique(lab[rc[:, 0], rc[:, 1]], return_inverse=True)
        packed = np.packbits((lab[None] == labels[:, None, None]).reshape(len(labels), -1), axis=1)
        by_label = np.where(where >= 0, inverse.reshape(-1)[np.maximum(where, 0)], -1)  # one row per segment
        return table.with_offsets(packed, np.ones(len(labels), np.float32), by_label)


@dataclass(frozen=True)
class SuperpixelOptions:
    OFFSET_MASKS_BY_DEFAULT: ClassVar[bool] = True  # nearly free here: store them unless told not to
    table_max_side: int = 256
    scale: float = 300.0  # Felzenszwalb scale at the reference area
    sigma: float = 0.5
    min_size: int = 40  # smallest segment, in pixels at the reference area

    def __post_init__(self) -> None:
        if self.table_max_side < 1 or self.min_size < 1 or self.scale <= 0 or self.sigma < 0:
            raise ValueError("table_max_side, min_size: must be >= 1; scale > 0; sigma >= 0")


SEGMENTERS.register("superpixel", SuperpixelOptions, lambda o: SuperpixelSegmenter(**asdict(o)))
