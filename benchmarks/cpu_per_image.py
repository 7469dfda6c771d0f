"""Per-image CPU cost after the segmenter's forward pass, at n = 32 (issue 19).

A SAM-like table: a 640 x 480 image, 1024 grid points each with its own distinct mask at the
256-px table resolution (256 x 192; ellipses of part-to-whole sizes), 3 targets (unions of a few
candidates plus boundary noise). Stages, on one core, best of ``--repeat``:

* ``table``: the segmenter's host-side output -> :class:`CandidateTable` (threshold is already
  done; bit-pack + deduplicate). ``table_packed`` is the device path: the segmenter hands over
  packed, deduplicated rows (only available on trees that have ``CandidateTable.from_packed_rows``);
* ``annotate``: selection + labelling + token strings for the 3 targets (``annotate_image``);
* ``encode``: the sample's JSON and the ``.cand.npz`` bytes.

``--baseline REV`` also measures git revision REV (exported to a temporary folder) in a
subprocess of the same run, so "before" and "after" are ratios under the same machine load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
H, W, N, U = 480, 640, 32, 1024


def make_inputs(seed: int = 0):
    import cv2

    from getok_data.masks import mask_box, mask_to_rle
    from getok_data.segmenters.base import table_shape
    from getok_data.types import ImageRecord, Target

    rng = np.random.default_rng(seed)
    h, w = table_shape(H, W, 256)
    masks = np.zeros((U, h, w), np.uint8)
    for k in range(U):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(3, w // 3)), int(rng.integers(3, h // 3)))
        cv2.ellipse(masks[k], c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    masks = masks.astype(bool)
    assert len({m.tobytes() for m in masks}) == U, "masks must be distinct"
    scores = rng.uniform(0.5, 1.0, U).astype(np.float32)
    targets = []
    for t in range(3):
        parts = masks[rng.choice(U, 3, replace=False)].any(axis=0)
        gt = cv2.resize(parts.view(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR).astype(bool)
        gt = cv2.dilate(gt.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        targets.append(Target(f"t{t}", [f"the thing {t}"], "thing", mask_to_rle(gt), mask_box(gt),
                              ann_id=t, sent_ids=[t]))
    rec = ImageRecord("synthetic", "train", 1, W, H, image_bytes=b"\xff\xd8 not decoded here", targets=targets)
    return masks, scores, rec


def measure(repeat: int) -> dict:
    """Time the stages with the getok_data on ``sys.path`` (this tree or a baseline's)."""
    import time

    from getok_data.annotate import annotate_image
    from getok_data.config import load_config
    from getok_data.segmenters.base import CandidateTable
    try:  # the typed-config trees: writer and table encoding live in getok_data.dataset
        from getok_data.dataset.table import table_bytes as npz_bytes
        from getok_data.dataset.writer import json_bytes
        typed = True
    except ImportError:  # older trees (dict config, getok_data.shards)
        from getok_data.shards import json_bytes, npz_bytes
        try:  # the table encoding this tree writes (format version 2 has its own)
            from getok_data.dataset.table import table_bytes as npz_bytes  # noqa: F811
        except ImportError:
            pass
        typed = False

    masks, scores, rec = make_inputs()
    cfg = load_config(None, {"grid": {"n": N}, "segmenter": {"name": "sam", "sam_model": "tiny"}} if typed
                      else {"grid": {"n": N}, "segmenter": {"name": "sam"}})
    ident = {"name": "sam", "model_type": "vit_h", "checkpoint_sha256": "0" * 64, "multimask": "best_iou"}

    def best(fn):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times) * 1e3, out

    res: dict = {}
    res["table_ms"], table = best(lambda: CandidateTable.from_point_masks(masks, N, scores, shape=masks.shape[1:]))
    if hasattr(CandidateTable, "from_point_rows"):
        # The device path (segmenters that pack and deduplicate on the GPU): the host only wraps
        # the unique packed rows; the table is the same.
        packed = np.packbits(masks.reshape(U, -1), axis=1)
        idx = np.arange(N * N, dtype=np.int32).reshape(N, N)
        res["table_packed_ms"], t2 = best(lambda: CandidateTable(packed=packed, shape=masks.shape[1:], index=idx,
                                                                 scores=scores))
        assert t2.equals(table)
    # annotate a fresh copy of the table each round (a table caches its packed rows), in the form
    # this tree's from_point_masks returns it (packed rows here, bool masks in version 1 trees)
    packed_first = hasattr(CandidateTable, "from_point_rows")

    def fresh():
        if packed_first:
            return CandidateTable(packed=table.packed(), shape=table.shape, index=table.index, scores=table.scores)
        return CandidateTable(masks=table.masks, index=table.index, scores=table.scores)

    if typed:
        def annotate():
            return annotate_image(rec, fresh(), cfg.grid, cfg.selection, cfg.labelling, ident, "jpg")
    else:
        def annotate():
            return annotate_image(rec, fresh(), cfg, ident, "jpg")
    res["annotate_ms"], (sample, arrays, errors) = best(annotate)
    assert not errors and len(sample["targets"]) == 3, errors
    res["json_ms"], js = best(lambda: json_bytes(sample))
    res["npz_ms"], npz = best(lambda: npz_bytes(arrays))
    res["encode_ms"] = res["json_ms"] + res["npz_ms"]
    res["total_ms"] = res["table_ms"] + res["annotate_ms"] + res["encode_ms"]
    if "table_packed_ms" in res:
        res["total_device_tables_ms"] = res["table_packed_ms"] + res["annotate_ms"] + res["encode_ms"]
    res["npz_bytes"], res["json_bytes"] = len(npz), len(js)
    res["token_counts"] = [t["token_count"] for t in sample["targets"]]
    res["token_ious"] = [round(t["token_iou"], 4) for t in sample["targets"]]
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in res.items()}


def run_tree(tree: Path, repeat: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--measure", "--repeat", str(repeat)], env=env, cwd=tree,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--baseline", help="git revision to compare against, measured in the same run")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    if args.measure:
        print(json.dumps(measure(args.repeat)))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import record

    result: dict = {"grid": N, "candidates": U, "image": [W, H], "targets": 3, "load_avg": os.getloadavg()}
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(f"git -C {ROOT} archive {args.baseline} getok_data | tar -x -C {tmp}", shell=True, check=True)
            result["before"] = run_tree(Path(tmp), args.repeat)
            result["before"]["rev"] = args.baseline
    result["after"] = run_tree(ROOT, args.repeat)
    if "before" in result:
        result["ratio_total"] = round(result["after"]["total_ms"] / result["before"]["total_ms"], 3)
        if "total_device_tables_ms" in result["after"]:
            result["ratio_total_device_tables"] = round(
                result["after"]["total_device_tables_ms"] / result["before"]["total_ms"], 3)
    result["load_avg_end"] = os.getloadavg()
    record("cpu_per_image", result, notes="Per-image CPU cost after the segmenter at n = 32 (1024 distinct "
           "masks at 256 px, 3 targets), one core, ms, best of --repeat; before/after in one run (issue 19).")


if __name__ == "__main__":
    main()
