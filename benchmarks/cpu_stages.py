"""CPU stages per target: selection + labelling + token packing, and shard write MB/s.

A 640x480 image, 1024 unique candidate masks (random ellipses, like SAM's part/whole masks),
targets made of unions of candidates plus boundary noise. Runs on one core. The baseline is the
straightforward boolean-array greedy (tests/test_selection.py's reference) in the same process.
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from common import best_of, record
from getok_data.annotate import annotate_target, table_arrays
from getok_data.config import load_config
from getok_data.labelling import label_regions
from getok_data.masks import mask_box, mask_to_rle, resize_nearest
from getok_data.segmenters.base import CandidateTable, table_shape
from getok_data.selection import PackedTable, select
from getok_data.dataset import npz_bytes, tar_bytes
from getok_data.tokens import Grid
from getok_data.types import Target


def candidates(rng, h: int, w: int, count: int) -> np.ndarray:
    masks = np.zeros((count, h, w), np.uint8)
    for k in range(count):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(2, w // 3)), int(rng.integers(2, h // 3)))
        cv2.ellipse(masks[k], c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return masks.astype(bool)


def naive_sorted(masks: np.ndarray, gt: np.ndarray, tau: float) -> float:
    """The definition, on boolean arrays (the baseline)."""
    ious = [(m & gt).sum() / max(1, (m | gt).sum()) for m in masks]
    union, best = np.zeros_like(gt), 0.0
    for k in np.argsort(ious)[::-1]:
        if not (masks[k] & gt).any():
            continue
        new = union | masks[k]
        v = (new & gt).sum() / (new | gt).sum()
        if v > best:
            union, best = new, v
            if best >= tau:
                break
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=30)
    ap.add_argument("--candidates", type=int, default=1024)
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--table-max-side", type=int, default=256)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    H, W = 480, 640
    rng = np.random.default_rng(0)
    h, w = table_shape(H, W, args.table_max_side)
    masks = candidates(rng, h, w, args.candidates)
    index = np.arange(args.grid * args.grid, dtype=np.int32).reshape(args.grid, args.grid) % args.candidates
    table = CandidateTable(masks=masks, index=index, scores=np.ones(len(masks), np.float32))
    arrays = table_arrays(table)
    ptable = PackedTable(arrays["masks"], arrays["index"], (h, w))
    cfg = load_config(None, {"grid": {"n": args.grid}})
    grid = Grid(args.grid, W, H)

    gts, targets = [], []
    for t in range(args.targets):
        parts = masks[rng.choice(len(masks), 3, replace=False)].any(axis=0)
        gt = cv2.resize(parts.view(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR).astype(bool)
        gt = cv2.dilate(gt.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        gts.append(gt)
        targets.append(Target(f"t{t}", ["x"], "thing", mask_to_rle(gt), mask_box(gt)))

    per_target = best_of(lambda: [annotate_target(t, ptable, grid, cfg.selection, cfg.labelling, "k") for t in targets],
                         3) / len(targets)
    smalls = [np.packbits(resize_nearest(g, (h, w)).reshape(-1)) for g in gts]
    select_only = best_of(lambda: [select(ptable, g, "sorted", 0.9) for g in smalls], 3) / len(targets)
    label_only = best_of(lambda: [label_regions(g, grid) for g in gts], 3) / len(targets)
    small_bool = [resize_nearest(g, (h, w)) for g in gts]
    naive = best_of(lambda: [naive_sorted(masks, g, 0.9) for g in small_bool[:5]], 1) / 5

    # Shard writing: 64 samples of this size.
    npz = npz_bytes(arrays)
    members = {"jpg": os.urandom(120_000), "json": b"{}" * 20_000, "cand.npz": npz}
    samples = [(f"s_train_{k}", members) for k in range(64)]
    t_tar = best_of(lambda: tar_bytes(samples), 3)
    t_npz = best_of(lambda: npz_bytes(arrays), 3)
    mb = sum(len(v) for v in members.values()) * 64 / 1e6
    record("cpu_stages", {
        "image": [W, H], "table": [w, h], "candidates": args.candidates, "grid": args.grid,
        "ms_per_target_total": round(per_target * 1e3, 3),
        "ms_per_target_selection": round(select_only * 1e3, 3),
        "ms_per_target_labelling": round(label_only * 1e3, 3),
        "ms_per_target_naive_selection_baseline": round(naive * 1e3, 3),
        "selection_speedup_vs_naive": round(naive / select_only, 1),
        "npz_ms_per_image": round(t_npz * 1e3, 3), "npz_kb": round(len(npz) / 1e3, 1),
        "tar_write_mb_per_s": round(mb / t_tar, 1),
    }, notes="Selection + labelling + token packing per target (annotate_target), one core. "
             "Target: under 5 ms per target.")


if __name__ == "__main__":
    main()
