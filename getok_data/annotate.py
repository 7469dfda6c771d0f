"""One image: its candidate table and targets -> the sample's JSON and candidate-table arrays.

Per target: greedy selection on the packed table (``token_iou`` at the table's [h, w]),
region/offset labels at the image's full resolution, the point / box / seg token strings, and
refinement samples. A target that fails is quarantined; the others are kept.
"""
from __future__ import annotations

import numpy as np

from .labelling import Depth, Labels, deepest_anchor, label_regions, refinement_samples, stable_rng
from .masks import resize_nearest, rle_to_mask
from .selection import PackedTable, select
from .tokens import Grid, Mask, Point, box_from_xyxy, encode, keypoints_to_points
from .types import ErrorRecord, ImageRecord, Target

FORMAT_VERSION = 2  # 2: .cand.npz masks delta-coded (getok_data/dataset/table.py); 1 still read


def table_arrays(table) -> dict[str, np.ndarray]:
    """The ``.cand.npz`` contract: index int32 [n, n] ([j, i], -1 = none), shape [h, w], packed
    masks, scores; with offset masks also offsets int32 [n, n, 9] ([j, i, step], -1 = none)."""
    arrays = {
        "index": np.ascontiguousarray(table.index, dtype=np.int32),
        "shape": np.asarray(table.shape, dtype=np.int32),
        "masks": np.ascontiguousarray(table.packed(), dtype=np.uint8),
        "scores": np.asarray(table.scores, dtype=np.float32),
    }
    if table.offsets is not None:
        arrays["offsets"] = np.ascontiguousarray(table.offsets, dtype=np.int32)
    return arrays


def representative_anchor(points: list[tuple[int, int]], gt: np.ndarray, grid: Grid) -> tuple[int, int]:
    """The grid point that names a mask: the first (raster order) lying on the GT, else the first."""
    h, w = gt.shape
    for i, j in points:
        x, y = grid.anchor(i, j)
        if gt[min(int(y), h - 1), min(int(x), w - 1)]:
            return i, j
    return points[0]


def annotate_target(target: Target, ptable: PackedTable, grid: Grid, cfg: dict, key: str) -> dict:
    """All supervision for one target (raises on a bad target; the caller quarantines it)."""
    gt = rle_to_mask(target.mask_rle)
    if gt.shape != (int(grid.height), int(grid.width)):
        raise ValueError(f"mask is {gt.shape[1]}x{gt.shape[0]}, image is {grid.width}x{grid.height}")
    if not gt.any():
        raise ValueError("empty mask")
    sel_cfg, lab_cfg = cfg["selection"], cfg["labelling"]
    gt_small = np.packbits(resize_nearest(gt, ptable.shape).reshape(-1))
    sel = select(ptable, gt_small, sel_cfg["method"], float(sel_cfg["tau"]))
    anchors = [representative_anchor(ptable.anchors_of()[u], gt, grid) for u in sel.mask_ids]
    raster = sorted(anchors, key=lambda a: (a[1], a[0]))
    depth = Depth(gt)
    labels: Labels = label_regions(gt, grid, float(lab_cfg["far_steps"]), depth)
    rng = stable_rng(key, target.target_id, lab_cfg["seed"])
    out = {
        "target_id": target.target_id, "ann_id": target.ann_id, "ref_id": target.ref_id,
        "category": target.category, "sentences": list(target.sentences),
        "sent_ids": list(target.sent_ids), "mask_rle": target.mask_rle,
        "box": [float(v) for v in target.box],
        "anchors": [list(a) for a in anchors],
        "token_iou": float(sel.token_iou),
        "token_count": len(anchors),
        "tokens": {
            "point": encode(Point(deepest_anchor(gt, grid, depth))),
            "box": encode(box_from_xyxy(target.box, grid)),
            "seg": encode(Mask(tuple(raster))) if raster else None,
        },
        "seg_reason": sel.reason,
        "regions": labels.regions,
        "offsets": labels.offsets_str,
        "refine": refinement_samples(labels, grid, target.box, anchors, int(lab_cfg["proposals_k"]),
                                     int(lab_cfg["refine_samples"]), lab_cfg["weights"], rng),
    }
    if target.keypoints:
        points, idx = keypoints_to_points(target.keypoints, grid)
        if points:
            names = target.keypoint_names or []
            out["keypoints"] = {
                "xyv": target.keypoints, "indices": idx,
                "names": [names[k] if k < len(names) else str(k) for k in idx],
                "tokens": "".join(encode(p) for p in points),
            }
    return out


def annotate_image(record: ImageRecord, table, cfg: dict, segmenter_identity: dict,
                   image_ext: str) -> tuple[dict, dict[str, np.ndarray], list[ErrorRecord]]:
    """The sample's JSON, its candidate-table arrays, and the targets quarantined on the way."""
    grid = Grid(int(cfg["grid"]["n"]), record.width, record.height, int(cfg["grid"]["m"]))
    arrays = table_arrays(table)
    ptable = PackedTable.grid_of(arrays)
    targets, errors = [], []
    for t in record.targets:
        try:
            targets.append(annotate_target(t, ptable, grid, cfg, record.key))
        except Exception as e:  # one bad target never costs the image
            errors.append(ErrorRecord(record.source, record.split, record.image_id,
                                      f"annotate failed: {type(e).__name__}: {e}", stage="annotate",
                                      ann_id=t.ann_id, ref_id=t.ref_id))
    region_counts = {r: sum(t["regions"].count(r) for t in targets) for r in "IRHF"}
    sample = {
        "format_version": FORMAT_VERSION,
        "key": record.key, "source": record.source, "split": record.split,
        "image_id": record.image_id, "width": record.width, "height": record.height,
        "image_ext": image_ext,
        "grid": {"n": grid.n, "m": grid.m},
        "selection": {"method": cfg["selection"]["method"], "tau": float(cfg["selection"]["tau"])},
        "segmenter": segmenter_identity,
        "labelling": {k: cfg["labelling"][k] for k in ("far_steps", "proposals_k", "refine_samples", "weights", "seed")},
        "targets": targets,
        "stats": {
            "targets": len(targets),
            "seg_null": sum(t["tokens"]["seg"] is None for t in targets),
            "candidates": int(len(ptable.packed)),
            "regions": region_counts,
        },
    }
    return sample, arrays, errors
