"""Two-stage GRPO of the bundled trainer on the synthetic builds, plus the table-decoder error.

1. stage 1: ``getok-data train grpo --stage grid --init SFT`` (default config); synthetic-val
   mask gIoU of the SFT start vs stage 1 (no refinement);
2. stage 2: ``getok-data train grpo --stage offset --init STAGE1``; gIoU with one refinement round
   vs none, on the stage-2 checkpoint (``getok-data eval --refine-rounds 1`` vs ``0``);
3. refined positions decoded from the candidate table (``getok_data/decode.py``) against the
   exact superpixel mask at the refined position: on the val build's stored seg refinement samples
   (prompt anchors + labelled offsets), the IoU between the two refined masks, and the IoU gain
   over the unrefined anchors under each. ``stored``: the table as built (exact when the build
   stored offset masks, the default for superpixel); ``containing_rule``: the same table without
   its offset masks (a stored grid mask that contains the refined position); ``nearest_rule``: the
   earliest rule (the nearest grid point's mask, whether or not it contains the position).

Needs the SFT checkpoint of benchmarks/train_sft_curve.py (``OUT/sft.pt``; trained here if
missing). Prints one JSON line.

    python benchmarks/train_grpo.py [--out out/bench]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from train_sft_curve import ROOT, ensure_builds, eval_json, sh

from common import machine


def table_decoder_error(val: str, shards: int | None = None) -> dict:
    """Refined masks: candidate-table rule vs the superpixel segmenter run at the refined positions."""
    import cv2

    from getok_data.decode import TableDecoder
    from getok_data.tokens.rules import mask_iou
    from getok_data.segmenters.base import points_to_table
    from getok_data.segmenters.superpixel import SuperpixelSegmenter
    from getok_data.dataset import load_npz
    from getok_data.tokens import Grid, parse
    from getok_data.train.data import resolve_shards
    from getok_data.verify import iter_samples

    seg = SuperpixelSegmenter()
    out: dict[str, list] = {"anchors_exact": [], "gain_exact": []}
    rules = ("stored", "containing_rule", "nearest_rule")
    for url in resolve_shards(str(ROOT / val))[:shards]:
        for _, m in iter_samples(open(url, "rb").read()):
            meta = json.loads(m["json"])
            img = cv2.imdecode(np.frombuffer(m[meta["image_ext"]], np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)[:, :, ::-1]
            if meta["segmenter"]["name"] != "superpixel":
                raise SystemExit("the table-decoder check needs a superpixel build")
            lab = seg.labels(img)
            n, mm = meta["grid"]["n"], meta["grid"]["m"]
            arrays = load_npz(m["cand.npz"])
            dec = TableDecoder(arrays, n, mm)
            grid_only = TableDecoder({k: v for k, v in arrays.items() if k != "offsets"}, n, mm)
            grid = Grid(n, meta["width"], meta["height"], mm)

            def exact(points):
                pts = [p for p in points if p is not None and 0 <= p[0] < grid.width and 0 <= p[1] < grid.height]
                rc = points_to_table(np.array(pts).reshape(-1, 2), int(grid.height), int(grid.width), lab.shape)
                return np.isin(lab, lab[rc[:, 0], rc[:, 1]]) if len(pts) else np.zeros(lab.shape, bool)

            for t in meta["targets"]:
                gt = dec.gt(t["mask_rle"])
                for r in (r for r in t["refine"] if r["kind"] == "seg"):
                    anchors = list(parse(r["prompt"], n)[0].anchors)
                    steps = list(parse(r["answer"], n)[0].groups[0].steps)
                    before = dec.decode(anchors)
                    out["anchors_exact"].append(mask_iou(exact([grid.anchor(i, j) for i, j in anchors]), before) if before.any() else 1.0)
                    ex = exact([None if s is None else grid.position(i, j, s) for (i, j), s in zip(anchors, steps)])
                    out["gain_exact"].append(mask_iou(ex, gt) - mask_iou(before, gt))
                    refined = {"stored": dec.decode(anchors, steps), "containing_rule": grid_only.decode(anchors, steps),
                               "nearest_rule": dec.union([dec.moved(i, j, s) for (i, j), s in zip(anchors, steps)])}
                    for rule in rules:
                        got = refined[rule]
                        out.setdefault(f"agreement_{rule}", []).append(mask_iou(got, ex) if (got | ex).any() else 1.0)
                        out.setdefault(f"gain_{rule}", []).append(mask_iou(got, gt) - mask_iou(before, gt))
    return {"samples": len(out["gain_exact"]), **{k: round(float(np.mean(v)), 4) for k, v in out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--train", default="out/syn_train")
    ap.add_argument("--val", default="out/syn_val")
    args = ap.parse_args()
    ensure_builds(args.train, args.val, 16)
    os.makedirs(ROOT / args.out, exist_ok=True)
    sft = f"{args.out}/sft.pt"
    if not (ROOT / sft).exists():
        sh(["train", "sft", "--data", args.train, "--val", args.val, "--out", sft, "--no-progress"])
    g1, g2 = f"{args.out}/grpo_grid.pt", f"{args.out}/grpo_offset.pt"
    for p in (g1, g2):
        for f in (ROOT / p, ROOT / f"{p}.log.jsonl"):
            f.unlink(missing_ok=True)
    r_sft = eval_json(sft, args.val)
    _, t1 = sh(["train", "grpo", "--stage", "grid", "--init", sft, "--data", args.train, "--val", args.val,
                "--eval-every", "50", "--out", g1, "--no-progress"])
    r_g1 = eval_json(g1, args.val)
    _, t2 = sh(["train", "grpo", "--stage", "offset", "--init", g1, "--data", args.train, "--val", args.val,
                "--eval-every", "50", "--out", g2, "--no-progress"])
    r_g2_0, r_g2_1 = eval_json(g2, args.val, 0), eval_json(g2, args.val, 1)
    r_g1_1 = eval_json(g1, args.val, 1)

    def curve(p):
        return [{"step": r["step"], "refine_rounds": r["refine_rounds"], "mask_giou": round(r["val"]["mask_giou"], 4),
                 "n": r["val"]["n"], "train_seconds": round(r["train_seconds"], 1)}
                for r in map(json.loads, open(ROOT / f"{p}.log.jsonl")) if r["event"] == "eval"]

    t = time.time()
    approx = table_decoder_error(args.val)
    keys = ("mask_giou", "mask_ciou", "box_acc50", "box_acc80", "point_hit")
    pick = lambda r: {k: round(r[k], 4) for k in keys}
    result = {
        "benchmark": "train_grpo",
        "sft": pick(r_sft), "stage1": pick(r_g1), "stage1_gain": round(r_g1["mask_giou"] - r_sft["mask_giou"], 4),
        "stage1_refine1_before_stage2": pick(r_g1_1),
        "stage2_refine0": pick(r_g2_0), "stage2_refine1": pick(r_g2_1),
        "refine_gain": round(r_g2_1["mask_giou"] - r_g2_0["mask_giou"], 4),
        "stage1_wall_seconds": round(t1, 1), "stage2_wall_seconds": round(t2, 1),
        "curves": {"grid": curve(g1), "offset": curve(g2)},
        "table_decoder_vs_exact_superpixel": {**approx, "seconds": round(time.time() - t, 1)},
        "load_average": os.getloadavg(), "machine": machine(),
    }
    result["passes"] = result["stage1_gain"] >= 0.02 and result["refine_gain"] >= 0.01
    print(json.dumps(result))


if __name__ == "__main__":
    main()
