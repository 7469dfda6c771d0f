"""Masks of answers, two ways: the stored candidate table, or the build's segmenter run again.

``table``: :class:`getok_data.decode.TableDecoder` (grid answers exact; refined positions by its
documented rule, or exactly through the offset masks when the build stored them).
``segmenter``: the segmenter is prompted on the image at the predicted (refined) positions and
the masks are unioned, the paper's protocol, at the table's resolution; on grid answers it
equals ``table`` exactly when the segmenter is the build's own (the table holds its masks).
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from ..dataset import Sample
from ..decode import TableDecoder
from ..masks import resize_nearest
from ..tokens import Grid

DECODERS = ("table", "segmenter")
XY = tuple[float, float]
Step = tuple[int, int] | None


class SampleMasks:
    """Mask decoding for one sample; ``table`` is always there (re-quantising refined answers)."""

    def __init__(self, sample: Sample):
        n, m = sample.grid
        self.table = TableDecoder(sample.table, n, m)
        self.grid = Grid(n, sample.meta["width"], sample.meta["height"], m)
        self.shape = (self.table.h, self.table.w)

    def mask(self, anchors: Sequence[tuple[int, int]], steps: Sequence[Step] | None = None) -> np.ndarray:
        """Mask (table resolution) of ``<seg>`` anchors, each moved by its step when given."""
        return self.table.decode(list(anchors), None if steps is None else list(steps))


class SegmenterSampleMasks(SampleMasks):
    """Prompts the segmenter at the anchors' (refined) pixel positions and unions the masks.

    Positions deleted or off the image add nothing (as in the table rule). Each position's
    mask is computed once per sample; SAM's image embedding is computed once per sample.
    """

    def __init__(self, sample: Sample, segmenter: Any):
        super().__init__(sample)
        self.segmenter = segmenter
        self.sample = sample
        self._rgb: np.ndarray | None = None
        self._feats = None
        self._labels: np.ndarray | None = None
        self._cache: dict[XY, np.ndarray] = {}

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            with Image.open(io.BytesIO(self.sample.image)) as im:
                self._rgb = np.asarray(im.convert("RGB"))
        return self._rgb

    def _compute(self, points: np.ndarray) -> np.ndarray:
        seg, rgb = self.segmenter, self.rgb
        if hasattr(seg, "encode") and hasattr(seg, "decode"):  # SAM: encode the image once
            if self._feats is None:
                self._feats = seg.encode([rgb])
            feats, sizes = self._feats
            masks, _ = seg.decode(feats[:1], sizes[0], rgb.shape[:2], points)
        elif hasattr(seg, "labels"):  # superpixel: segment the image once
            from ..segmenters import points_to_table

            if self._labels is None:
                self._labels = seg.labels(rgb)
            rc = points_to_table(points, rgb.shape[0], rgb.shape[1], self._labels.shape)
            masks = self._labels[None] == self._labels[rc[:, 0], rc[:, 1]][:, None, None]
        else:
            masks, _ = seg.segment_points(rgb, points)
        return np.asarray(masks, dtype=bool)

    def masks_at(self, points: Sequence[XY]) -> list[np.ndarray]:
        todo = [p for p in dict.fromkeys(points) if p not in self._cache]
        if todo:
            for p, mk in zip(todo, self._compute(np.asarray(todo, dtype=np.float64))):
                self._cache[p] = mk if mk.shape == self.shape else resize_nearest(mk, self.shape)
        return [self._cache[p] for p in points]

    def mask(self, anchors: Sequence[tuple[int, int]], steps: Sequence[Step] | None = None) -> np.ndarray:
        steps = list(steps) if steps is not None else [(0, 0)] * len(anchors)
        g = self.grid
        pts = [g.position(i, j, s) for (i, j), s in zip(anchors, steps) if s is not None]
        pts = [p for p in pts if 0 <= p[0] < g.width and 0 <= p[1] < g.height]
        out = np.zeros(self.shape, bool)
        for mk in self.masks_at(pts):
            out |= mk
        return out


def segmenter_config(build_config: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict:
    """The build's segmenter section (from its manifest), with the non-None flag overrides on top."""
    import dataclasses

    from ..segmenters import SEGMENTERS

    base = dict((build_config or {}).get("segmenter") or {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    # flags that the chosen segmenter does not take (--device for superpixel) do not apply to it
    known = {f.name for f in dataclasses.fields(SEGMENTERS.get(str(base.get("name", "superpixel"))).options)}
    return {k: v for k, v in base.items() if k == "name" or k in known}


class MaskDecoder:
    """Makes the per-sample decoder for ``table`` or ``segmenter`` (the segmenter is built once)."""

    def __init__(self, name: str = "table", segmenter_cfg: Mapping[str, Any] | None = None):
        if name not in DECODERS:
            raise ValueError(f"unknown decoder {name!r}; valid: {', '.join(DECODERS)}")
        self.name = name
        self.segmenter = None
        self.identity: dict = {}
        if name == "segmenter":
            from ..segmenters import build_segmenter

            self.segmenter = build_segmenter(dict(segmenter_cfg or {}))
            self.identity = dict(self.segmenter.identity)

    def for_sample(self, sample: Sample) -> SampleMasks:
        if self.segmenter is None:
            return SampleMasks(sample)
        return SegmenterSampleMasks(sample, self.segmenter)
