"""A build whose inputs sit in an S3-compatible store (moto's server, local) against the same build
from local files, run in the same process, local runner and Ray (the driver plans, the actors
resolve and read every image from the store).

    python benchmarks/s3_build.py [--images 48] [--runner local|ray|both]

The layout is ``plan_scale.layout`` at a small size with drawn 640x480 JPEGs (one polygon per
instance filled in a colour). Prints one JSON line: wall seconds per variant, their ratio, and
whether the shards are byte-identical.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.plan_scale import layout  # noqa: E402


def draw_images(root: Path) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    inst = json.loads((root / "refcoco" / "instances.json").read_text())
    by_image: dict[int, list] = {}
    for a in inst["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    folder = root / "images"
    rng = np.random.default_rng(0)
    for im in inst["images"]:
        canvas = Image.new("RGB", (im["width"], im["height"]), (200, 200, 190))
        draw = ImageDraw.Draw(canvas)
        for a in by_image.get(im["id"], []):
            pts = a["segmentation"][0]
            draw.polygon(list(zip(pts[0::2], pts[1::2])), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        canvas.save(folder / im["file_name"], quality=90)


def digests(paths: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in sorted(paths.items())}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--runner", choices=["local", "ray", "both"], default="both")
    ap.add_argument("--out", default="out/s3_build")
    a = ap.parse_args()
    root = Path(a.out)
    shutil.rmtree(root, ignore_errors=True)
    data = root / "data"
    sizes = layout(data, a.images, per_image=4, refs_per_image=1.0)
    draw_images(data)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "x",
                       "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
                       "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"})
    try:
        time.sleep(2)
        import s3fs

        from getok_data.config import load_config
        from pipelines.build import run_build

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        fs.put(str(data), "bench/data", recursive=True)
        result = {"layout": sizes}
        runners = ["local", "ray"] if a.runner == "both" else [a.runner]
        for runner in runners:
            times, shards = {}, {}
            # a first local build starts Ray (and warms caches); the two measured builds follow it
            for where, droot, img in (("warm", str(data), str(data / "images")),
                                      ("local", str(data), str(data / "images")),
                                      ("s3", "s3://bench/data", "s3://bench/data/images")):
                out = root / f"{runner}_{where}"
                cfg = load_config(None, {"source": {"name": "refcoco", "data_root": droot, "image_root": img},
                                         "grid": {"n": 16}, "build": {"out": str(out), "images_per_shard": 8,
                                                                      "runner": runner, "num_actors": 2}})
                t0 = time.perf_counter()
                run_build(cfg, progress=False)
                times[where] = round(time.perf_counter() - t0, 2)
                shards[where] = digests({p.name: p.read_bytes() for p in out.glob("shard-*.tar")})
            result[runner] = {"local_s": times["local"], "s3_s": times["s3"],
                              "s3_over_local": round(times["s3"] / times["local"], 2),
                              "identical": shards["local"] == shards["s3"], "shards": len(shards["local"])}
        return result
    finally:
        moto.terminate()


if __name__ == "__main__":
    print(json.dumps(main(), sort_keys=True))
