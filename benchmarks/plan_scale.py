"""Planning at RefCOCO scale: ``build --dry-run`` against the bare parse of the two annotation files.

    python benchmarks/plan_scale.py [--images 20000] [--out out/plan_scale] [--strace]

Generates a REFER layout of RefCOCO's size (20,000 images, 10 instances each as 8-point polygons,
50,000 refs with 3 sentences each, a protocol-2 refs pickle like the UNC/UMD files) with **no
image files at all**: planning must not need them. Then, each as a whole process (interpreter
start and imports included): the bare parse (``pickle.load`` + ``json.load``, nothing else) and
``getok-data build --dry-run``, best of three; the dry run's peak RSS; with ``--strace``, the
files the dry run opened (none may be an image). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import pickle
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "getok_data"]


def layout(root: Path, images: int, per_image: int = 10, refs_per_image: float = 2.5) -> dict:
    rng = random.Random(0)
    (root / "refcoco").mkdir(parents=True, exist_ok=True)
    imgs, anns, refs = [], [], []
    ann_id = ref_id = 0
    for i in range(1, images + 1):
        w, h = 640, 480
        imgs.append({"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": w, "height": h})
        for _ in range(per_image):
            ann_id += 1
            x, y = rng.uniform(0, w - 80), rng.uniform(0, h - 80)
            poly = [round(v, 2) for k in range(8) for v in (x + 40 + 35 * (k % 3 - 1), y + 40 + 35 * (k // 3 - 1))]
            anns.append({"id": ann_id, "image_id": i, "category_id": 1 + ann_id % 80, "iscrowd": 0,
                         "segmentation": [poly], "area": 4900.0, "bbox": [x, y, 70.0, 70.0]})
        for k in range(int(refs_per_image * i) - int(refs_per_image * (i - 1))):
            ref_id += 1
            a = ann_id - k
            sents = [{"raw": f"the thing {ref_id} {s}", "sent": f"the thing {ref_id} {s}", "sent_id": 3 * ref_id + s,
                      "tokens": ["the", "thing"]} for s in range(3)]
            refs.append({"ref_id": ref_id, "ann_id": a, "image_id": i, "split": ("train", "val", "testA", "testB")[i % 4],
                         "category_id": 1 + a % 80, "sent_ids": [s["sent_id"] for s in sents], "sentences": sents,
                         "file_name": f"COCO_train2014_{i:012d}_{a}.jpg"})
    cats = [{"id": c, "name": f"cat{c}", "supercategory": "x"} for c in range(1, 81)]
    (root / "refcoco" / "instances.json").write_text(json.dumps({"images": imgs, "annotations": anns,
                                                                 "categories": cats}))
    with open(root / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    (root / "images").mkdir(exist_ok=True)  # the image root exists; no image is in it
    return {"images": len(imgs), "instances": len(anns), "refs": len(refs), "sentences": 3 * len(refs)}


def timed(cmd: list[str], repeat: int = 3) -> tuple[float, int, str]:
    """Best wall seconds of ``cmd`` as a whole process, its peak RSS (KiB) and last stdout line."""
    best, rss, last = float("inf"), 0, ""
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        best = min(best, time.perf_counter() - t0)
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
        last = out.strip().splitlines()[-1] if out.strip() else ""
    return best, rss, last


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--out", default="out/plan_scale")
    ap.add_argument("--strace", action="store_true")
    a = ap.parse_args()
    root = Path(a.out)
    shutil.rmtree(root, ignore_errors=True)
    sizes = layout(root, a.images)
    refs, inst = root / "refcoco" / "refs(unc).p", root / "refcoco" / "instances.json"
    bare = [sys.executable, "-c", f"import json, pickle; pickle.load(open({str(refs)!r}, 'rb')); "
                                  f"json.load(open({str(inst)!r}, 'rb'))"]
    dry = CLI + ["build", "--src", "refcoco", "--data-root", str(root), "--image-root", str(root / "images"),
                 "--grid", "32", "--out", str(root / "never_written"), "--dry-run", "--json"]
    t_bare, _, _ = timed(bare)
    t_dry, rss, last = timed(dry)
    plan = json.loads(last)
    out = {"layout": sizes, "bare_parse_s": round(t_bare, 3), "dry_run_s": round(t_dry, 3),
           "ratio": round(t_dry / t_bare, 2), "dry_run_peak_rss_mib": round(rss / 1024, 1),
           "records_per_s": round(plan["images"] / t_dry), "planned_shards": plan["planned_shards"],
           "deferred": plan["deferred"], "out_written": (root / "never_written").exists()}
    if a.strace:
        trace = root / "strace.txt"
        subprocess.run(["strace", "-f", "-e", "trace=open,openat,stat,newfstatat,statx", "-o", str(trace)] + dry,
                       check=True, capture_output=True, cwd=ROOT)
        touched = [line for line in trace.read_text().splitlines() if str(root / "images") + "/" in line
                   or ".jpg" in line or ".png" in line]
        out["strace_image_calls"] = len(touched)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), sort_keys=True))
