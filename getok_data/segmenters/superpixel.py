"""Weight-free segmenter (scikit-image): the demo and CI backend when no SAM checkpoint exists.

The image is resized (``cv2.INTER_AREA``) to the table resolution (:func:`table_shape`) and
over-segmented with Felzenszwalb's graph-based method, whose merge rule follows colour edges:
a flat-coloured region of any size becomes one segment, textured regions become several. Each grid
point's mask is the segment that contains the point's position mapped to the table. By default
there is one scale: a point gets one mask, and a large textured object is reached as the union of several
grid points' segments (which the selection stage does); on flat regions the single scale already
gives whole objects. Segments thinner than 3 table pixels (edge blends) are dissolved into the
neighbouring segment of the closest colour (:func:`dissolve_thin`), unless their colour is no blend
of the segments around them (:func:`keep_distinct`: a thin object, kept). Optionally several
scales, one segment per point chosen by colour (:class:`SuperpixelSegmenter`).

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


def dissolve_thin(labels: np.ndarray, image: np.ndarray, radius: int = 2, keep: np.ndarray | None = None) -> np.ndarray:
    """Give the pixels of segments with no 3 x 3 core to the best-matching kept neighbour.

    Resizing, smoothing and anti-aliasing blend colours along edges, and Felzenszwalb turns those
    blends into 1-2 pixel wide strips around shapes. A segment is kept only if some pixel's whole
    3 x 3 neighbourhood belongs to it; every other pixel joins the kept segment within ``radius``
    whose mean colour is closest to the pixel's own colour (the nearest kept pixel if none is
    that close). Label ids are made consecutive again. ``keep``: the segments to keep, when the
    caller decided (default: those with a 3 x 3 core).
    """
    nlab = int(labels.max()) + 1
    if keep is None:
        core = (ndi.maximum_filter(labels, 3, mode="nearest") == labels) & (
            ndi.minimum_filter(labels, 3, mode="nearest") == labels
        )
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


def keep_distinct(labels: np.ndarray, image: np.ndarray, keep: np.ndarray, tol: float, radius: int = 2) -> np.ndarray:
    """Also keep coreless segments whose colour is no blend of the kept segments around them.

    An edge blend's mean colour lies on (or near) the line between two neighbouring kept
    segments' colours; a thin object (a stick, a lane marking) has a colour of its own. A coreless
    segment is kept when its mean colour is farther than ``tol`` (RGB units) from every kept
    neighbour's colour and from every segment joining two of them.
    """
    nlab = len(keep)
    h, w = labels.shape
    img = image.reshape(h * w, -1).astype(np.float64)
    flat = labels.ravel()
    counts = np.maximum(np.bincount(flat, minlength=nlab), 1).astype(np.float64)
    means = np.stack([np.bincount(flat, img[:, c], minlength=nlab) for c in range(img.shape[1])], axis=1) / counts[:, None]
    thin = np.nonzero(~keep)[0]
    if not len(thin):
        return keep
    out = keep.copy()
    grow = ndi.generate_binary_structure(2, 2)
    objs = ndi.find_objects(labels + 1)
    for lab in thin:
        sl = objs[lab]
        if sl is None:
            continue
        y0, y1 = max(0, sl[0].start - radius), min(h, sl[0].stop + radius)
        x0, x1 = max(0, sl[1].start - radius), min(w, sl[1].stop + radius)
        win = labels[y0:y1, x0:x1]
        ring = ndi.binary_dilation(win == lab, grow, iterations=radius) & (win != lab)
        nb = np.unique(win[ring])
        nb = nb[keep[nb]]
        if not len(nb):
            continue
        c, m = means[lab], means[nb]
        d = np.sqrt(((m - c) ** 2).sum(axis=1)).min()
        for a in range(len(nb)):
            seg = m[a + 1 :] - m[a]
            if not len(seg):
                break
            t = np.clip(((c - m[a]) * seg).sum(axis=1) / np.maximum((seg ** 2).sum(axis=1), 1e-9), 0, 1)
            d = min(d, float(np.sqrt(((m[a] + t[:, None] * seg - c) ** 2).sum(axis=1)).min()))
        if d > tol:
            out[lab] = True
    return out


def dissolve_thin_distinct(labels: np.ndarray, image: np.ndarray, tol: float, radius: int = 2) -> np.ndarray:
    """:func:`dissolve_thin`, but a coreless segment of its own colour (:func:`keep_distinct`) stays."""
    core = (ndi.maximum_filter(labels, 3, mode="nearest") == labels) & (
        ndi.minimum_filter(labels, 3, mode="nearest") == labels
    )
    keep = np.zeros(int(labels.max()) + 1, dtype=bool)
    keep[labels[core]] = True
    keep = keep_distinct(labels, image, keep, tol, radius)
    return dissolve_thin(labels, image, radius, keep=keep)


class SuperpixelSegmenter(SegmenterBase):
    """Felzenszwalb over-segmentation at table resolution, at one or several scales.

    Default (format version 2): one scale, and thin segments of their own colour survive the
    edge-blend clean-up (``blend_tol``, :func:`keep_distinct`), so sticks, bars and lane markings
    a few table pixels wide stay representable. ``blend_tol=None`` with one scale is the
    segmenter of format version 1 (every coreless segment dissolved). With several ``scales``
    (multiples of ``scale``) each scale is a layer of segments and a point gets the coarsest
    layer's segment whose mean colour is within ``colour_tol`` of its finest-layer segment's:
    fewer tokens per mask on textured objects, at some token IoU (docs/BENCHMARKS.md).
    """

    def __init__(
        self,
        table_max_side: int = 256,
        scale: float = 300.0,
        sigma: float = 0.5,
        min_size: int = 40,
        scales: tuple[float, ...] | list[float] = (1.0,),
        colour_tol: float = 12.0,
        blend_tol: float | None = 60.0,
    ) -> None:
        self.table_max_side = int(table_max_side)
        self.scale_ref = float(scale)
        self.sigma = float(sigma)
        self.min_size_ref = int(min_size)
        self.scales = tuple(sorted(float(s) for s in scales))
        if not self.scales or self.scales[0] <= 0:
            raise ValueError(f"superpixel scales must be positive, got {scales!r}")
        self.colour_tol = float(colour_tol)
        self.blend_tol = None if blend_tol is None else float(blend_tol)
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
        if self.scales != (1.0,) or self.blend_tol is not None:
            self.identity.update({"scales": list(self.scales), "colour_tol": self.colour_tol,
                                  "blend_tol": self.blend_tol, "point_rule": "coarsest_same_colour"})

    def _small(self, image: np.ndarray) -> np.ndarray:
        H, W = image.shape[:2]
        h, w = table_shape(H, W, self.table_max_side)
        return image if (h, w) == (H, W) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    def _layer(self, small: np.ndarray, mult: float) -> np.ndarray:
        h, w = small.shape[:2]
        ratio = (h * w) / REF_AREA
        lab = felzenszwalb(
            small,
            scale=self.scale_ref * mult * ratio,
            sigma=self.sigma,
            min_size=max(4, int(round(self.min_size_ref * ratio))),
            channel_axis=-1,
        )
        if self.blend_tol is None:
            return dissolve_thin(lab, small)
        return dissolve_thin_distinct(lab, small, self.blend_tol)

    def layers(self, image: np.ndarray) -> list[np.ndarray]:
        """Segment labels ``int [h, w]`` per scale, finest first, at table resolution."""
        small = self._small(check_image(image))
        return [self._layer(small, m) for m in self.scales]

    def labels(self, image: np.ndarray) -> np.ndarray:
        """Segment labels of the finest layer (the only layer with one scale)."""
        return self.layers(image)[0]

    def _point_labels(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One global label map ``[h, w]`` per layer stacked ``[L, h, w]`` and each point's global
        label (layer-major ids), chosen by the coarsest-same-colour rule."""
        image = check_image(image)
        small = self._small(image)
        layers = [self._layer(small, m) for m in self.scales]
        rc = points_to_table(points, image.shape[0], image.shape[1], layers[0].shape)
        offsets = np.cumsum([0] + [int(l.max()) + 1 for l in layers])
        stack = np.stack([l + o for l, o in zip(layers, offsets[:-1])])
        if len(layers) == 1:
            return stack, stack[0][rc[:, 0], rc[:, 1]]
        flat = small.reshape(-1, small.shape[2]).astype(np.float64)
        total = int(offsets[-1])
        g = stack.reshape(len(layers), -1)
        counts = np.zeros(total)
        sums = np.zeros((total, flat.shape[1]))
        for k in range(len(layers)):
            counts += np.bincount(g[k], minlength=total)
            for c in range(flat.shape[1]):
                sums[:, c] += np.bincount(g[k], flat[:, c], minlength=total)
        means = sums / np.maximum(counts, 1)[:, None]
        at = stack[:, rc[:, 0], rc[:, 1]]  # [L, P]
        local = means[at[0]]
        choice = at[0].copy()
        for k in range(1, len(layers)):
            ok = np.sqrt(((means[at[k]] - local) ** 2).sum(axis=1)) <= self.colour_tol
            choice = np.where(ok, at[k], choice)
        return stack, choice

    @staticmethod
    def _masks(stack: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Bool masks ``[len(ids), h, w]`` of global labels."""
        layer_of = np.searchsorted(np.array([int(l.max()) for l in stack]), ids)
        return stack[layer_of] == ids[:, None, None]

    def segment_points(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks (bool ``[P, h, w]``) and scores (1.0) for arbitrary ``(x, y)`` pixel points."""
        stack, ids = self._point_labels(image, points)
        return self._masks(stack, ids), np.ones(len(ids), np.float32)

    def segment(self, image: np.ndarray, n: int, offset_m: int | None = None) -> CandidateTable:
        """Candidate table: unique segments in raster order of the grid points that hit them."""
        image = check_image(image)
        H, W = image.shape[:2]
        grid_pts = grid_points(H, W, n)
        if offset_m is None:
            stack, point_labels = self._point_labels(image, grid_pts)
        else:
            off_pts, where = offset_positions(H, W, n, offset_m)
            stack, both = self._point_labels(image, np.concatenate([grid_pts, off_pts]))
            point_labels, off_labels = both[: n * n], both[n * n :]
        uniq, first, inverse = np.unique(point_labels, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # unique labels by first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        index = rank[inverse.reshape(-1)].astype(np.int32).reshape(n, n)
        masks = self._masks(stack, uniq[order])
        table = CandidateTable(masks=masks, index=index, scores=np.ones(len(uniq), np.float32))
        if offset_m is None:
            return table
        labels, inverse = np.unique(off_labels, return_inverse=True)
        packed = np.packbits(self._masks(stack, labels).reshape(len(labels), -1), axis=1)
        by_label = np.where(where >= 0, inverse.reshape(-1)[np.maximum(where, 0)], -1)  # one row per segment
        return table.with_offsets(packed, np.ones(len(labels), np.float32), by_label)


@dataclass(frozen=True)
class SuperpixelOptions:
    OFFSET_MASKS_BY_DEFAULT: ClassVar[bool] = True  # nearly free here: store them unless told not to
    table_max_side: int = 256
    scale: float = 300.0  # Felzenszwalb scale at the reference area
    sigma: float = 0.5
    min_size: int = 40  # smallest segment, in pixels at the reference area
    # thin segments whose colour is no blend of their neighbours' stay (None: the format-1 segmenter)
    blend_tol: float | None = 60.0
    scales: tuple[float, ...] = (1.0,)  # several (e.g. [1, 3]): multi-scale layers, fewer tokens, lower IoU
    colour_tol: float = 12.0  # multi-scale: the coarsest layer whose colour is within this of the point's

    def __post_init__(self) -> None:
        if self.table_max_side < 1 or self.min_size < 1 or self.scale <= 0 or self.sigma < 0:
            raise ValueError("table_max_side, min_size: must be >= 1; scale > 0; sigma >= 0")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales: must be positive, got {list(self.scales)}")


SEGMENTERS.register("superpixel", SuperpixelOptions, lambda o: SuperpixelSegmenter(**asdict(o)))
