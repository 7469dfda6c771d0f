"""The per-image stage: read -> decode -> segment -> annotate -> WebDataset members.

Plain functions over an already-built segmenter; any runner (in-process, Ray actor) calls them.
Every failure becomes an :class:`ErrorRecord`; nothing here raises for bad input.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .annotate import annotate_image
from .config import BuildConfig
from .dataset import json_bytes, table_bytes
from .images import ImageError, decode_full, image_label, read_bytes
from .types import ErrorRecord, ImageRecord


@dataclass
class Prepared:
    record: ImageRecord
    data: bytes | None = None
    rgb: np.ndarray | None = None
    ext: str = "jpg"
    errors: list[ErrorRecord] = field(default_factory=list)
    orientation: int | None = None  # EXIF orientation tag (not applied), None when absent


@dataclass
class SampleResult:
    key: str
    members: dict[str, bytes] | None  # None: the image was quarantined
    errors: list[ErrorRecord]
    targets: list[dict] = field(default_factory=list)  # per target: token_count, token_iou, seg
    regions: dict[str, int] = field(default_factory=dict)
    targets_seen: int = 0


def _image_error(record: ImageRecord, reason: str, stage: str) -> ErrorRecord:
    lost = len(record.targets)
    return ErrorRecord(record.source, record.split, record.image_id, reason, stage=stage,
                       detail=f"{lost} target(s) of this image not built" if lost else "")


def prepare(record: ImageRecord) -> Prepared:
    """Read and decode (CPU work that can overlap the segmenter)."""
    lost = f"{len(record.targets)} target(s) of this image not built" if record.targets else ""
    p = Prepared(record, errors=[e if e.detail or e.ann_id is not None or e.ref_id is not None or not lost
                                 else replace(e, detail=lost) for e in record.errors])
    if record.image_path is None and record.image_bytes is None:
        # explained already by an image-level error, or (no targets) by its target-level ones
        if not any(e.ann_id is None and e.ref_id is None for e in record.errors) \
                and (record.targets or not record.errors):
            p.errors.append(_image_error(record, "no image for this record", "read"))
        return p
    if not record.targets:
        return p  # nothing to build; the target errors (if any) are already recorded
    try:
        p.data = read_bytes(record)
        p.rgb, p.ext, p.orientation = decode_full(p.data, record)
    except ImageError as e:
        p.errors.append(_image_error(record, str(e), "read"))
        p.data = p.rgb = None
    return p


def finish(p: Prepared, table, cfg: BuildConfig, identity: dict) -> SampleResult:
    """Annotate a prepared image with its candidate table and pack the members."""
    rec = p.record
    seen = len(rec.targets) + sum(e.ann_id is not None or e.ref_id is not None for e in rec.errors)
    if p.rgb is None:
        return SampleResult(rec.key, None, p.errors, targets_seen=seen)
    try:
        sample, arrays, errors = annotate_image(rec, table, cfg.grid, cfg.selection, cfg.labelling, identity, p.ext)
        errors = p.errors + errors
        if not sample["targets"]:
            return SampleResult(rec.key, None, errors, targets_seen=seen)
        if p.orientation not in (None, 1):
            sample["exif_orientation"] = p.orientation  # recorded, not applied (docs/FORMAT.md)
        members = {p.ext: p.data, "json": json_bytes(sample, strict=True), "cand.npz": table_bytes(arrays)}
    except Exception as e:  # packing one image must never cost the shard
        if "OutOfMemory" in type(e).__name__:
            raise
        reason = f"packing the sample failed: {type(e).__name__}: {e}"
        return SampleResult(rec.key, None, p.errors + [_image_error(rec, reason, "annotate")], targets_seen=seen)
    summary = [{"token_count": t["token_count"], "token_iou": t["token_iou"],
                "seg": t["tokens"]["seg"] is not None, "no_target": bool(t.get("no_target")),
                "low_quality": bool(t.get("low_quality"))} for t in sample["targets"]]
    return SampleResult(rec.key, members, errors, summary, sample["stats"]["regions"], seen)


def check_grid(prepared: list[Prepared], n: int) -> None:
    """Quarantine decodable images smaller than ``n`` pixels on a side: their grid cells would
    be smaller than a pixel (many prompts on one pixel, a table of mostly duplicate anchors)."""
    for p in prepared:
        if p.rgb is not None and min(p.rgb.shape[:2]) < n:
            h, w = p.rgb.shape[:2]
            p.errors.append(_image_error(
                p.record, f"image {image_label(p.record)} is {w}x{h}: smaller than the grid "
                          f"(n={n}) on a side, so grid cells would be smaller than a pixel", "read"))
            p.rgb = p.data = None


def segment_prepared(prepared: list[Prepared], segmenter, n: int, offset_m: int | None = None) -> list:
    """Candidate tables for the decodable images (one batched segmenter call), None elsewhere;
    with ``offset_m``, the tables also hold the masks one offset step from each anchor."""
    check_grid(prepared, n)
    idx = [k for k, p in enumerate(prepared) if p.rgb is not None]
    tables: list = [None] * len(prepared)
    if not idx:
        return tables
    try:
        for k, t in zip(idx, segmenter.segment_batch([prepared[k].rgb for k in idx], n, offset_m)):
            tables[k] = t
    except Exception:  # isolate the bad image: fall back to one call per image
        for k in idx:
            try:
                tables[k] = segmenter.segment(prepared[k].rgb, n, offset_m)
            except Exception as e:
                if "OutOfMemory" in type(e).__name__:
                    raise  # the machine's problem, not the image's: let the runner retry the shard
                p = prepared[k]
                p.errors.append(_image_error(p.record, f"segmenter failed: {type(e).__name__}: {e}", "segment"))
                p.rgb = p.data = None
    return tables
