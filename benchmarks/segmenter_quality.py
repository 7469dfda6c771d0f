"""Token IoU and tokens per mask of weight-free segmenter variants, on the synthetic val split and
on the 4 real COCO images of the mmpose fixture (test_coco.json), in one run so ratios compare.

Per target: sorted-greedy selection (tau 0.9) on the grid's candidate table, exactly as the
build does (``annotate.table_arrays`` -> ``PackedTable.grid_of`` -> ``select``).

    python benchmarks/segmenter_quality.py [--variants v1_single_scale,v2_default,...] [--size 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import record  # noqa: E402
from getok_data.annotate import table_arrays  # noqa: E402
from getok_data.images import decode, read_bytes  # noqa: E402
from getok_data.masks import resize_nearest, rle_to_mask  # noqa: E402
from getok_data.segmenters import build_segmenter  # noqa: E402
from getok_data.selection import PackedTable, select  # noqa: E402
from getok_data.sources import get_source  # noqa: E402

COCO = Path(__file__).resolve().parents[2] / "shared/fixtures/open-mmlab__mmpose/tests/data/coco"
VARIANTS = {
    "v1_single_scale": {"scales": [1.0], "blend_tol": None},  # format version 1
    "v2_default": {},  # thin segments of their own colour kept (blend_tol 60)
    "v2_multiscale_1_3": {"scales": [1.0, 3.0], "colour_tol": 30.0},
}


def measure(records: list, seg, n: int) -> dict:
    ious, counts, nulls, rows, secs = [], [], 0, [], 0.0
    for rec in records:
        rgb, _ = decode(read_bytes(rec), rec)
        t = time.perf_counter()
        table = seg.segment(rgb, n)
        secs += time.perf_counter() - t
        pt = PackedTable.grid_of(table_arrays(table))
        for tg in rec.targets:
            gt = np.packbits(resize_nearest(rle_to_mask(tg.mask_rle), pt.shape).reshape(-1))
            s = select(pt, gt, "sorted", 0.9)
            ious.append(s.token_iou)
            counts.append(len(s.mask_ids))
            nulls += not s.mask_ids
            rows.append((s.token_iou, rec.key, tg.target_id, tg.sentences[0], len(s.mask_ids)))
    ious_a, counts_a = np.array(ious), np.array(counts)
    kept = counts_a > 0
    return {"targets": len(ious), "token_iou_mean": round(float(ious_a.mean()), 4),
            "token_iou_p10": round(float(np.percentile(ious_a, 10)), 4),
            "below_0.5": int((ious_a < 0.5).sum()), "seg_null": nulls,
            "tokens_per_mask": round(float(counts_a[kept].mean()), 3),
            "segment_ms_per_image": round(1000 * secs / max(1, len(records)), 1),
            "worst3": [[round(r[0], 3), *r[1:]] for r in sorted(rows)[:3]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    sets = {
        "synthetic_val_grid16": (list(get_source("synthetic", split="val", size=args.size).records()), 16),
        "synthetic_val_grid32": (list(get_source("synthetic", split="val", size=args.size).records()), 32),
        "coco_mmpose_4_grid32": (list(get_source("coco", annotations=COCO / "test_coco.json", image_root=COCO).records()), 32),
    }
    result = {}
    for name in args.variants.split(","):
        seg = build_segmenter({"name": "superpixel", **VARIANTS[name]})
        result[name] = {k: measure(recs, seg, n) for k, (recs, n) in sets.items()}
        result[name]["identity"] = seg.identity
    names = args.variants.split(",")
    result["ratios_over_" + names[0]] = {
        v: {k: {m: round(result[v][k][m] / result[names[0]][k][m], 3) for m in ("token_iou_mean", "tokens_per_mask")}
            for k in sets} for v in names[1:]}
    if args.no_doc:
        import json
        print(json.dumps(result, indent=1, default=str))
        return
    record("Weight-free segmenter quality", result)


if __name__ == "__main__":
    main()
