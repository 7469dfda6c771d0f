"""Training input: examples/s of the streaming dataset vs a bare webdataset loop, same shards.

Both loops read every sample of the same shards and decode + resize its image (the work any
consumer does); the baseline then yields one (target, sentence) pair per example with no
shuffling or prompt building, ours runs the full ShardStream (shard/sample shuffles, example
expansion with prompts and answers). One process, no DataLoader workers, interleaved rounds.
Target: ours >= 0.8x the bare loop.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

from common import record
from getok_data.config import load_config
from getok_data.train.config import DATA
from getok_data.train.data import ShardStream, resolve_shards
from pipelines.build import run_build


def bare(urls: list[str], size: int) -> int:
    n = 0
    for s in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(s["json"])
        img = cv2.imdecode(np.frombuffer(s[meta["image_ext"]], np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        cv2.resize(img[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA)
        n += sum(len(t["sentences"]) for t in meta["targets"])
    return n


def ours(urls: list[str], cfg: dict, stage: str) -> int:
    return sum(1 for _ in ShardStream(urls, cfg, stage=stage, shuffle=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="built shards (default: build 200 synthetic images at grid 16)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = args.data
    if not data:
        data = str(Path(tempfile.mkdtemp()) / "syn")
        run_build(load_config(None, {"source": {"name": "synthetic", "size": 200}, "grid": {"n": 16},
                                     "build": {"out": data, "images_per_shard": 25}}), progress=False)
    urls = resolve_shards(data)
    cfg = dict(DATA)
    size = int(cfg.get("image_size", 128))
    times = {"bare": [], "grid": [], "offset": []}
    counts = {}
    for _ in range(args.rounds):  # interleaved so load drifts hit all three alike
        for name, fn in (("bare", lambda: bare(urls, size)), ("grid", lambda: ours(urls, cfg, "grid")),
                         ("offset", lambda: ours(urls, cfg, "offset"))):
            t = time.perf_counter()
            counts[name] = fn()
            times[name].append(time.perf_counter() - t)
    rate = {k: counts[k] / min(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    record("streaming", {
        "shards": len(urls), "examples": counts,
        "examples_per_s": {k: round(v, 1) for k, v in rate.items()},
        # Both read every sample once, so the time ratio is the throughput ratio per image; the
        # offset stage yields one example per target (not per sentence), hence fewer examples.
        "ratio_grid_vs_bare": round(best["bare"] / best["grid"], 3),
        "ratio_offset_vs_bare": round(best["bare"] / best["offset"], 3),
    }, notes="Streaming dataset (getok_data.train.data.ShardStream) vs a bare webdataset loop doing the "
             "same image decode + resize, same shards, same process; ratio = bare time / our time for "
             "the same samples. Target: >= 0.8x.")


if __name__ == "__main__":
    main()
