"""SAM stage images/s: our SamSegmenter vs segment_anything's SamAutomaticMaskGenerator (AMG).

Same model object, same images, same device, in one run; the ratio is
ours / AMG at the same grid n. Ours = encoder + n*n point prompts decoded from the low-res logits,
one mask per point, deduplicated into a CandidateTable (``SamSegmenter.segment_batch``). AMG =
``SamAutomaticMaskGenerator(model, points_per_side=n).generate(image)``: encoder + the same n*n
prompts, every multimask output upsampled to full resolution, stability score, box NMS, RLE.

With random weights AMG's default filters (pred_iou_thresh 0.88, stability_score_thresh 0.95)
drop nearly every mask, which would skip its RLE work; both are set to 0.0 (filters off) so AMG
does the work it does with real weights (box_nms_thresh stays 0.7, crop_n_layers 0,
output_mode binary_mask). Raw random weights also give salt-and-pepper masks (the 2x2
transposed-conv upscaling of random kernels: ~48k RLE runs per 640x425 mask), which would make
AMG's RLE encoding absurdly slow and flatter us; :func:`smooth_random` replaces those kernels by
their mean (as tiny_sam does), so masks follow the image (~1.5k runs per mask, the order of real
SAM masks). The encoder-only rate (``SamSegmenter.encode``) is the upper bound for both.
Ours is timed twice, before/after: ``ours_before`` (the old defaults: ``model.mask_decoder``,
64 prompts per batch) and ``ours`` (the defaults: ``fast_decoder``'s ``shared_image_decode``,
``points_per_batch: auto``); ``pixel_agreement_with_before`` is the share of equal mask pixels
(a different ``points_per_batch`` moves logits by ~1e-7, so a few pixels at the threshold can flip;
at equal ``points_per_batch`` the two decoders give identical tables, tests/test_segmenters.py). AMG runs at its own default
``points_per_batch=64`` and, when ours differs, also at ours (``amg_same_ppb``): both ratios are
reported.

vit_b random weights (``sam_model_registry[...](checkpoint=None)``) are saved to a temp .pth and
loaded through ``SamSegmenter``'s real checkpoint path; ``--checkpoint`` uses a real one.
GPU: ``--device cuda --dtype bfloat16 --grids 32 [--compile]`` (autocast applies to both sides;
``--compile`` compiles the shared model's image encoder and mask decoder in place).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

from common import record
from getok_data.segmenters.sam import SamSegmenter

COCO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "open-mmlab__mmpose" / "tests" / "data" / "coco"


def load_images(count: int) -> tuple[list[np.ndarray], str]:
    """The shared COCO fixture JPEGs (RGB), else synthetic-source images."""
    paths = sorted(COCO.glob("*.jpg"))[:count]
    if len(paths) == count:
        return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths], "coco fixtures"
    from getok_data.images import decode
    from getok_data.sources import get_source
    recs = list(get_source("synthetic", split="val", limit=count).records())
    return [decode(r.image_bytes, r)[0] for r in recs], "synthetic"


def timed(fn, device: torch.device):
    """(wall seconds, CPU seconds of this process, result) of one call, GPU synchronised."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, time.process_time() - c, out


@torch.no_grad()
def smooth_random(model) -> None:
    """Nearest-neighbour mask upscaling: each 2x2 transposed-conv kernel becomes its mean."""
    for i in (0, 3):
        w = model.mask_decoder.output_upscaling[i].weight
        w.copy_(w.mean(dim=(2, 3), keepdim=True).expand_as(w))


def pixel_agreement(a, b) -> float:
    """Share of equal table pixels over all grid points' masks of two tables of one image."""
    def per_point(t):
        empty = np.zeros((1, *t.masks.shape[1:]), bool)
        return np.concatenate([t.masks, empty])[np.where(t.index >= 0, t.index, len(t.masks))]
    return float((per_point(a) == per_point(b)).mean())


def build(args) -> SamSegmenter:
    if args.model == "tiny":  # smoke tests only: the tests' random-weight miniature
        return SamSegmenter("tiny", points_per_batch=args.points_per_batch, dtype=args.dtype, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint
        if ckpt is None:
            torch.manual_seed(0)
            ckpt = os.path.join(tmp, f"random_{args.model}.pth")
            model = sam_model_registry[args.model](checkpoint=None)
            smooth_random(model)
            torch.save(model.state_dict(), ckpt)
        return SamSegmenter(args.model, ckpt, points_per_batch=args.points_per_batch, dtype=args.dtype,
                            device=args.device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vit_b")
    ap.add_argument("--checkpoint", default=None, help="a real checkpoint (default: random weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--compile", action="store_true", help="torch.compile encoder + decoder (both sides)")
    ap.add_argument("--points-per-batch", default="auto", help="ours (default: auto, as the build)")
    ap.add_argument("--amg-points-per-batch", type=int, default=64, help="AMG (default: its own default, 64)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--grids", default="8,16")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--offset-masks", action="store_true", help="also time grid.offset_masks (ours + one-step masks)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    grids = [int(g) for g in args.grids.split(",")]
    images, image_src = load_images(args.images)
    k, load0 = len(images), os.getloadavg()[0]

    t = time.perf_counter()
    seg = build(args)
    load_s = time.perf_counter() - t
    model, dev = seg.model, seg.device
    if args.compile:
        model.image_encoder.compile()
        model.mask_decoder.compile(dynamic=True)

    ppb = seg.points_per_batch  # ours, resolved ("auto" -> by device)

    def make_amg(n: int, batch: int) -> SamAutomaticMaskGenerator:
        amg = SamAutomaticMaskGenerator(model, points_per_side=n, points_per_batch=batch,
                                        pred_iou_thresh=0.0, stability_score_thresh=0.0)
        if args.dtype == "bfloat16":  # autocast the model calls; AMG's numpy post-processing needs fp32
            pred, set_image, predict = amg.predictor, amg.predictor.set_image, amg.predictor.predict_torch

            def set_image_bf16(*a, **kw):
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    return set_image(*a, **kw)

            def predict_bf16(*a, **kw):
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    return tuple(t.float() for t in predict(*a, **kw))
            pred.set_image, pred.predict_torch = set_image_bf16, predict_bf16
        return amg

    def ours(im, n: int, fast: bool, batch: int, offset_m: int | None = None):
        seg.fast_decoder, seg.points_per_batch = fast, batch
        return seg.segment_batch([im], n, offset_m)[0]

    for im in images if dev.type != "cpu" or args.compile else images[:1]:
        seg.encode([im])  # warm-up (and compile)
    rows, enc_all = [], []
    for n in grids:
        amgs = {"amg": make_amg(n, args.amg_points_per_batch)}
        if ppb != args.amg_points_per_batch:
            amgs["amg_same_ppb"] = make_amg(n, ppb)
        if dev.type != "cpu" or args.compile:  # warm-up / compile for this shape
            ours(images[0], n, True, ppb)
            for amg in amgs.values():
                amg.generate(images[0])
        sides = ("enc", "ours_before", "ours", *amgs, *(["ours_offset_masks"] if args.offset_masks else []))
        best = {side: [[float("inf")] * 2 for _ in images] for side in sides}  # per image: [wall, cpu]
        counts, agree = {"ours": [0] * k, "amg": [0] * k}, []
        for _ in range(args.repeat):
            for i, im in enumerate(images):  # interleaved per image: load changes hit all sides alike
                runs = {"enc": lambda: seg.encode([im]), "ours_before": lambda: ours(im, n, False, 64),
                        "ours": lambda: ours(im, n, True, ppb),
                        **{side: (lambda a=a: a.generate(im)) for side, a in amgs.items()}}
                if args.offset_masks:
                    runs["ours_offset_masks"] = lambda: ours(im, n, True, ppb, 2 * n)
                outs = {}
                for side, fn in runs.items():
                    wall, cpu, outs[side] = timed(fn, dev)
                    best[side][i] = [min(best[side][i][0], wall), min(best[side][i][1], cpu)]
                counts["ours"][i], counts["amg"][i] = len(outs["ours"]), len(outs["amg"])
                if args.offset_masks:
                    counts.setdefault("offset", [0] * k)[i] = len(outs["ours_offset_masks"])
                agree.append(pixel_agreement(outs["ours"], outs["ours_before"]))
        tot = {side: [sum(b[j] for b in v) for j in (0, 1)] for side, v in best.items()}  # [wall, cpu]
        enc_all.append(tot["enc"][0])
        per = {side: round(tot[side][0] / k, 3) for side in sides}
        row = {
            "n": n, "points": n * n,
            "images_per_s": {side: round(k / tot[side][0], 4) for side in sides},
            "s_per_image": per,
            "after_encoder_s_per_image": {side: round(per[side] - per["enc"], 3) for side in sides[1:]},
        }
        for side in amgs:
            row[f"ours_vs_{side}"] = round(tot[side][0] / tot["ours"][0], 2)
            row[f"ours_before_vs_{side}"] = round(tot[side][0] / tot["ours_before"][0], 2)
            row[f"ours_vs_{side}_cpu_time"] = round(tot[side][1] / tot["ours"][1], 2)
        row.update({
            "speedup_after_encoder_vs_before": round((per["ours_before"] - per["enc"]) / max(1e-9, per["ours"] - per["enc"]), 2),
            "pixel_agreement_with_before": round(min(agree), 6),
            "ours_unique_masks_per_image": round(sum(counts["ours"]) / k, 1),
            "amg_masks_per_image": round(sum(counts["amg"]) / k, 1),
        })
        if args.offset_masks:  # what grid.offset_masks costs: decoding after the encoder, and table size
            after = {side: per[side] - per["enc"] for side in ("ours", "ours_offset_masks")}
            row["offset_masks_after_encoder_x"] = round(after["ours_offset_masks"] / max(1e-9, after["ours"]), 2)
            row["offset_masks_unique_masks_per_image"] = round(sum(counts["offset"]) / k, 1)
        rows.append(row)
        print(row, flush=True)
    t_enc = min(enc_all)
    target = 1.5 if dev.type == "cpu" else 3.0
    record("sam_stage", {
        "model": args.model, "weights": "checkpoint" if args.checkpoint else "tiny (tests)" if args.model == "tiny"
        else "random, smoothed upscaling (saved, loaded)",
        "device": str(dev), "dtype": args.dtype, "compile": args.compile,
        "points_per_batch": {"ours": ppb, "ours_before": 64, "amg": args.amg_points_per_batch},
        "images": k, "image_source": image_src,
        "image_sizes": sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images}),
        "torch_threads": torch.get_num_threads(), "model_load_s": round(load_s, 2),
        "loadavg_1min_start_end": [load0, os.getloadavg()[0]],
        "encoder_only_images_per_s": round(k / t_enc, 4), "encoder_s_per_image": round(t_enc / k, 3),
        "grids": rows, "target_ratio": target,
        "meets_target": {side: {r["n"]: r[f"ours_vs_{side}"] >= target for r in rows} for side in amgs},
    }, notes=(
        "Ours (`SamSegmenter.segment_batch` with the defaults: `fast_decoder`, `points_per_batch: auto`) and "
        "`ours_before` (the previous defaults: `model.mask_decoder`, 64 prompts per batch; "
        "`pixel_agreement_with_before`: share of equal mask pixels, lowest image) vs `SamAutomaticMaskGenerator(points_per_side=n, pred_iou_thresh=0, stability_score_thresh=0)` "
        "at its default 64 prompts per batch (`amg`) and at ours (`amg_same_ppb`), on the same model object, images "
        "and device; `ours_vs_X` = X's wall time / ours (per image: all sides interleaved, best of the repeats, "
        "summed over images); `_cpu_time`: the same with this process's CPU time. `*_after_encoder` = time per "
        f"image minus the encoder-only time (decoding + post-processing). Target: >= {target}x."))


if __name__ == "__main__":
    main()
