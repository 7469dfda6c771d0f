"""Segmenters: image -> :class:`CandidateTable` (one mask per grid point, deduplicated).

``build_segmenter(cfg)`` is the single entry point used by pipelines; backends:

* ``sam``: segment-anything (``sam_model`` vit_b / vit_l / vit_h with ``sam_checkpoint``, or
  ``tiny``: random weights for tests), see :mod:`.sam`;
* ``sam2``: the ``sam2`` package (``sam_model`` hiera_t / hiera_s / hiera_b+ / hiera_l with
  ``sam_checkpoint``, or ``tiny``: random weights for tests), see :mod:`.sam2`;
* ``superpixel``: weight-free Felzenszwalb over-segmentation (scikit-image), see :mod:`.superpixel`.

torch / segment-anything are imported only when a ``sam`` segmenter is built.
"""
from __future__ import annotations

from typing import Any, Mapping

from .base import CandidateTable, Segmenter, SegmenterBase, grid_points, points_to_table, table_shape

SEGMENTERS = ("sam", "sam2", "superpixel")

DEFAULTS: dict[str, Any] = {
    "name": "sam",
    "sam_model": "vit_b",
    "sam_checkpoint": None,
    "points_per_batch": "auto",
    "fast_decoder": True,
    "sdpa": "auto",
    "compile": False,
    "multimask": "best_iou",
    "dtype": "float32",
    "device": "auto",
    "table_max_side": 256,
    "seed": 0,
}


def build_segmenter(cfg: Mapping[str, Any]) -> Segmenter:
    """Build a segmenter from a config mapping (missing keys take :data:`DEFAULTS`).

    Keys: ``name`` (``sam`` | ``sam2`` | ``superpixel``), ``sam_model`` (sam2: ``hiera_t`` | ``hiera_s``
    | ``hiera_b+`` | ``hiera_l`` | ``tiny``; sam: ``vit_b`` | ``vit_l`` | ``vit_h`` |
    ``tiny``), ``sam_checkpoint``, ``points_per_batch`` (int or ``auto``), ``fast_decoder`` (sam:
    :func:`~.sam.shared_image_decode`), ``multimask`` (``best_iou`` | ``single`` | ``0`` | ``1`` | ``2``), ``dtype`` (``float32`` | ``bfloat16``), ``device`` (``auto`` | ``cpu`` |
    ``cuda`` | ``cuda:N``), ``table_max_side``, ``seed`` (tiny weights). Optional extras:
    ``encoder_batch_size`` (sam); ``superpixel_scale``, ``superpixel_sigma``,
    ``superpixel_min_size`` (superpixel).
    """
    c = {**DEFAULTS, **{k: v for k, v in dict(cfg).items() if v is not None or k == "sam_checkpoint"}}
    name = str(c["name"]).lower()
    if name == "sam":
        from .sam import SamSegmenter

        return SamSegmenter(
            model_type=str(c["sam_model"]),
            checkpoint=c["sam_checkpoint"],
            points_per_batch=c["points_per_batch"],
            fast_decoder=bool(c["fast_decoder"]),
            multimask=str(c["multimask"]),
            dtype=str(c["dtype"]),
            device=c["device"],
            table_max_side=int(c["table_max_side"]),
            seed=int(c["seed"]),
            encoder_batch_size=int(c.get("encoder_batch_size", 4)),
            sdpa=c["sdpa"],
            compile=c["compile"],
        )
    if name == "sam2":
        from .sam2 import Sam2Segmenter

        return Sam2Segmenter(
            model_type=str(c["sam_model"]),
            checkpoint=c["sam_checkpoint"],
            points_per_batch=c["points_per_batch"],
            multimask=str(c["multimask"]),
            dtype=str(c["dtype"]),
            device=c["device"],
            table_max_side=int(c["table_max_side"]),
            seed=int(c["seed"]),
            encoder_batch_size=int(c.get("encoder_batch_size", 4)),
        )
    if name == "superpixel":
        from .superpixel import SuperpixelSegmenter

        kw = {k: c[f"superpixel_{k}"] for k in ("scale", "sigma", "min_size") if f"superpixel_{k}" in c}
        return SuperpixelSegmenter(table_max_side=int(c["table_max_side"]), **kw)
    raise ValueError(f"unknown segmenter {c['name']!r}; valid names: {', '.join(SEGMENTERS)}")


__all__ = [
    "CandidateTable",
    "DEFAULTS",
    "SEGMENTERS",
    "Segmenter",
    "SegmenterBase",
    "build_segmenter",
    "grid_points",
    "points_to_table",
    "table_shape",
]
