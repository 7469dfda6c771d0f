"""One image: its candidate table and targets -> the sample's JSON and candidate-table arrays.

Per target: greedy selection on the packed table (``token_iou`` at the table's [h, w]),
region/offset labels at the image's full resolution, the point / box / seg token strings, and
refinement samples. A target that fails is quarantined; the others are kept.
"""
from __future__ import annotations

import numpy as np

from .config import GridConfig, LabellingConfig, SelectionConfig
from .dataset import SAMPLE_FORMAT_VERSION
from .labelling import (
    DELETE_ID,
    Depth,
    Labels,
    deepest_anchor,
    keep_masks_on_target,
    label_regions,
    neighbourhood,
    refinement_samples,
    sample_proposals,
    stable_rng,
)
from .masks import resize_nearest, rle_to_mask
from .selection import PackedTable, mostly_on, overlap, select
from .tokens import Grid, Mask, Point, box_from_xyxy, encode, keypoints_to_points
from .tokens.rules import offset_answer
from .types import ErrorRecord, ImageRecord, Target


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


def _extras(target: Target) -> dict:
    """The optional target fields a source set (absent when unset, so older shards keep their bytes)."""
    out: dict = {}
    if target.instances is not None:
        out["instances"] = target.instances
    if target.ignore_rle is not None:
        out["ignore_rle"] = target.ignore_rle
    out.update(target.extra or {})
    return out


def anchors_in(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """bool [n*n], raster order: whether each grid point's anchor pixel lies in ``mask``."""
    cols, rows = neighbourhood(grid)
    c, r = cols[:, 0], rows[:, 0]  # STEPS[0] = (0, 0): the anchor itself
    h, w = mask.shape
    ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
    out = np.zeros(len(c), bool)
    out[ok] = mask[r[ok], c[ok]]
    return out


def annotate_no_target(target: Target, grid: Grid, labelling: LabellingConfig, key: str) -> dict:
    """A no-target query (gRefCOCO ``ann_id`` [-1]): the answer is the empty ``<seg></seg>``, every
    grid point is Far / ``<DELETE>``, and the refinement samples teach deleting sampled anchors."""
    n = grid.n
    labels = Labels("F" * (n * n), np.full(n * n, DELETE_ID, np.int8))
    rng = stable_rng(key, target.target_id, labelling.seed)
    refine = []
    for _ in range(labelling.refine_samples):
        prop = sample_proposals(labels, labelling.proposals_k, labelling.weights, rng)
        if prop:
            refine.append({"kind": "seg", "origin": "sampled", "prompt": encode(Mask(tuple(prop))),
                           "answer": offset_answer([Mask(tuple(prop))], grid, labels.step, ())})
    return {
        "target_id": target.target_id, "ann_id": target.ann_id, "ref_id": target.ref_id,
        "category": target.category, "sentences": list(target.sentences),
        "sent_ids": list(target.sent_ids), "mask_rle": target.mask_rle,
        "box": [0.0, 0.0, 0.0, 0.0], "anchors": [], "token_iou": 1.0, "token_count": 0,
        "tokens": {"point": None, "box": None, "seg": encode(Mask(()))},
        "seg_reason": None, "regions": labels.regions, "offsets": labels.offsets_str, "refine": refine,
        "no_target": True, **_extras(target),
    }


def annotate_target(target: Target, ptable: PackedTable, grid: Grid, selection: SelectionConfig,
                    labelling: LabellingConfig, key: str) -> dict:
    """All supervision for one target (raises on a bad target; the caller quarantines it)."""
    if target.no_target:
        return annotate_no_target(target, grid, labelling, key)
    gt = rle_to_mask(target.mask_rle)
    if gt.shape != (int(grid.height), int(grid.width)):
        raise ValueError(f"mask is {gt.shape[1]}x{gt.shape[0]}, image is {grid.width}x{grid.height}")
    ignore = None
    if target.ignore_rle is not None:
        ignore = rle_to_mask(target.ignore_rle)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask is {ignore.shape[1]}x{ignore.shape[0]}, image is {grid.width}x{grid.height}")
        gt = gt & ~ignore
    if not gt.any():
        raise ValueError("empty mask")
    gt_small = np.packbits(resize_nearest(gt, ptable.shape).reshape(-1))
    ign_small = None if ignore is None else np.packbits(resize_nearest(ignore, ptable.shape).reshape(-1))
    inter = overlap(ptable, gt_small)
    sel = select(ptable, gt_small, selection.method, selection.tau, ign_small, inter=inter)
    anchors = [representative_anchor(ptable.anchors_for(u), gt, grid) for u in sel.mask_ids]
    raster = sorted(anchors, key=lambda a: (a[1], a[0]))
    depth = Depth(gt)
    labels: Labels = keep_masks_on_target(label_regions(gt, grid, labelling.far_steps, depth),
                                          mostly_on(ptable, gt_small, inter))
    rng = stable_rng(key, target.target_id, labelling.seed)
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
        "refine": refinement_samples(labels, grid, target.box, anchors, labelling.proposals_k,
                                     labelling.refine_samples, labelling.weights, rng,
                                     exclude=None if ignore is None else anchors_in(ignore, grid)),
    }
    if selection.min_token_iou is not None and sel.token_iou < selection.min_token_iou:
        out["low_quality"] = True
    out.update(_extras(target))
    if target.keypoints:
        points, idx = keypoints_to_points(target.keypoints, grid)
        if points:
            names = target.keypoint_names or []
            out["keypoints"] = {
                "xyv": target.keypoints, "indices": idx,
                "names": [names[k] if k < len(names) else str(k) for k in idx],
                "tokens": "".join(encode(p) for p in points),
            }
    if target.polyline is not None:
        from .lanes import lane_polyline

        out["polyline"] = lane_polyline([tuple(p) for p in target.polyline], grid)
        out["tokens"]["pl"] = out["polyline"]["tokens"]
    return out


def annotate_image(record: ImageRecord, table, grid_cfg: GridConfig, selection: SelectionConfig,
                   labelling: LabellingConfig, segmenter_identity: dict,
                   image_ext: str) -> tuple[dict, dict[str, np.ndarray], list[ErrorRecord]]:
    """The sample's JSON, its candidate-table arrays, and the targets quarantined on the way."""
    grid = Grid(grid_cfg.n, record.width, record.height, grid_cfg.m)
    arrays = table_arrays(table)
    ptable = PackedTable.grid_of(arrays)
    targets, errors = [], []
    for t in record.targets:
        try:
            targets.append(annotate_target(t, ptable, grid, selection, labelling, record.key))
        except Exception as e:  # one bad target never costs the image
            errors.append(ErrorRecord(record.source, record.split, record.image_id,
                                      f"annotate failed: {type(e).__name__}: {e}", stage="annotate",
                                      ann_id=t.ann_id, ref_id=t.ref_id))
    region_counts = {r: sum(t["regions"].count(r) for t in targets) for r in "IRHF"}
    sample = {
        "format_version": SAMPLE_FORMAT_VERSION,
        "key": record.key, "source": record.source, "split": record.split,
        "image_id": record.image_id, "width": record.width, "height": record.height,
        "image_ext": image_ext,
        "grid": {"n": grid.n, "m": grid.m},
        "selection": _selection_meta(selection),
        "segmenter": segmenter_identity,
        "labelling": {"far_steps": labelling.far_steps, "proposals_k": labelling.proposals_k,
                      "refine_samples": labelling.refine_samples, "weights": labelling.weights,
                      "seed": labelling.seed},
        "targets": targets,
        "stats": {
            "targets": len(targets),
            "seg_null": sum(t["tokens"]["seg"] is None for t in targets),
            "candidates": int(len(ptable.packed)),
            "regions": region_counts,
        },
    }
    if selection.min_token_iou is not None:
        sample["stats"]["low_quality"] = sum(bool(t.get("low_quality")) for t in targets)
    if any(t.get("no_target") for t in targets):
        sample["stats"]["no_target"] = sum(bool(t.get("no_target")) for t in targets)
    return sample, arrays, errors


def _selection_meta(selection: SelectionConfig) -> dict:
    """The sample's ``selection`` record; ``min_token_iou`` only when set (off: today's bytes)."""
    out = {"method": selection.method, "tau": selection.tau}
    if selection.min_token_iou is not None:
        out["min_token_iou"] = selection.min_token_iou
    return out
