"""Peak RSS of a local build vs the number of images: memory must be flat (streamed, not collected).

Each build (synthetic source, superpixel segmenter, grid 16, default 64 images per shard) runs in
a fresh ``python`` subprocess through ``pipelines.build.run_build``; its peak RSS is the child's
own ``ru_maxrss`` from ``os.wait4`` (``getrusage(RUSAGE_CHILDREN)`` would be the max over all
children so far). The slope ``(RSS(big) - RSS(small)) / (big - small)`` is the memory that grows
per image; a streamed build keeps it near zero (sidecars hold a few numbers per target).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import record

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys
from getok_data.config import load_config
from pipelines.build import run_build
size, grid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cfg = load_config(None, {"source": {"name": "synthetic", "split": "train", "size": size},
                         "grid": {"n": grid}, "segmenter": {"name": "superpixel"}, "build": {"out": out}})
s = run_build(cfg, progress=False)
print(json.dumps({k: s[k] for k in ("images", "targets", "shards", "errors", "images_per_second")}))
"""


def measure(size: int, grid: int, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(size), str(grid), str(out)],
                            stdout=subprocess.PIPE, env=env, cwd=ROOT)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"build of {size} images failed with exit code {proc.returncode}")
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    return {"images": size, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(time.perf_counter() - t, 1), **{k: summary[k] for k in ("targets", "shards", "errors")},
            "out_mb": round(sum(p.stat().st_size for p in out.iterdir()) / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200,2000")
    ap.add_argument("--grid", type=int, default=16)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in sizes:
            rows.append(measure(size, args.grid, Path(tmp) / f"b{size}"))
            print(rows[-1], flush=True)
    small, big = rows[0], rows[-1]
    growth = big["peak_rss_mb"] - small["peak_rss_mb"]
    record("build_memory", {
        "segmenter": "superpixel", "grid": args.grid, "images_per_shard": 64, "runs": rows,
        "rss_growth_mb": round(growth, 1),
        "rss_growth_kb_per_image": round(growth * 1024 / max(1, big["images"] - small["images"]), 2),
        "rss_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
    }, notes=(
        "Peak RSS of `run_build` (local runner, synthetic, superpixel) in a fresh subprocess per size, from "
        "`os.wait4`'s rusage of that child. Flat memory = streamed build (one shard in memory at a time)."))


if __name__ == "__main__":
    main()
