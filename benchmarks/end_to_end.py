"""End-to-end build images/s: local runner vs Ray with 1 and 2 actors, and Ray's cost per shard.

Synthetic source, superpixel segmenter, grid 32, through the Python API
(``pipelines.build.run_build(load_config(None, {...}))``), all in one process. Ray is started
in-process once (``ray.init``, timed separately) and reused by every Ray build; each build still
starts its own actors (process start, imports, segmenter), which is part of a real build's cost.
The wall time is measured around ``run_build`` (plan, shards, sidecars, manifest). All runs must
write byte-identical shards; the script checks it. ``local_no_offset_masks``: the local build
without the one-step offset masks (on by default for superpixel), for what they cost.

Per-shard scheduling overhead: shards of 1 image at grid 2 (nearly no work), built with S1 and
S2 shards; the slope ``(T(S2) - T(S1)) / (S2 - S1)`` is the time per shard without the fixed
costs (actor start, manifest), and ``slope_ray - slope_local`` is what Ray adds per shard.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from common import record
from getok_data.config import load_config
from pipelines.build import run_build


def build(out: Path, size: int, grid: int, per_shard: int, runner: str = "local", actors: int | None = None,
          offset_masks: bool = True):
    cfg = load_config(None, {
        "source": {"name": "synthetic", "split": "train", "size": size},
        "grid": {"n": grid, "offset_masks": offset_masks},
        "segmenter": {"name": "superpixel"},
        "build": {"out": str(out), "images_per_shard": per_shard, "runner": runner, "num_actors": actors},
    })
    t = time.perf_counter()
    summary = run_build(cfg, progress=False)
    wall = time.perf_counter() - t
    digest = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest()
                                     for p in sorted(out.glob("shard-*.tar")))).hexdigest()
    return wall, summary, digest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--images-per-shard", type=int, default=10)
    ap.add_argument("--tiny-shards", default="20,60", help="S1,S2 one-image shards for the overhead slope")
    args = ap.parse_args()
    s1, s2 = (int(x) for x in args.tiny_shards.split(","))
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build(tmp / "warm", 4, args.grid, 2)  # imports, first-call costs of the local process
        rows, digests = {}, set()
        t = time.perf_counter()
        import ray
        ray.init(runtime_env={"env_vars": {"PYTHONHASHSEED": "0"}}, log_to_driver=False, include_dashboard=False)
        ray_init_s = time.perf_counter() - t
        try:
            import pipelines.ray_runner as ray_runner
            depth = ray_runner.QUEUE_DEPTH
            for name, runner, actors in (("local", "local", None), ("local_no_offset_masks", "local", None),
                                         ("ray_1_actor", "ray", 1), ("ray_2_actors", "ray", 2),
                                         ("ray_2_actors_one_in_flight", "ray", 2)):
                # before/after: one shard in flight per actor (the earlier scheduling) vs QUEUE_DEPTH
                ray_runner.QUEUE_DEPTH = 1 if name.endswith("one_in_flight") else depth
                plain = name == "local_no_offset_masks"
                wall, summary, digest = build(tmp / name, args.images, args.grid, args.images_per_shard,
                                              runner, actors, offset_masks=not plain)
                if not plain:
                    digests.add(digest)
                rows[name] = {"bytes": sum(p.stat().st_size for p in (tmp / name).glob("shard-*.tar")),
                              "wall_s": round(wall, 2), "images_per_s": round(summary["images"] / wall, 2),
                              "images": summary["images"], "targets": summary["targets"],
                              "shards": summary["shards"], "shard_seconds_sum": summary["seconds"],
                              "busy_parallelism": round(summary["seconds"] / wall, 2)}
                print(name, rows[name], flush=True)
            tiny = {}
            for name, runner, actors in (("local", "local", None), ("ray", "ray", 1)):
                t1 = build(tmp / f"tiny_{name}_{s1}", s1, 2, 1, runner, actors)[0]
                t2 = build(tmp / f"tiny_{name}_{s2}", s2, 2, 1, runner, actors)[0]
                tiny[name] = {f"wall_s_{s1}_shards": round(t1, 2), f"wall_s_{s2}_shards": round(t2, 2),
                              "ms_per_shard": round((t2 - t1) / (s2 - s1) * 1e3, 1)}
                print("tiny", name, tiny[name], flush=True)
        finally:
            ray.shutdown()
    base = rows["local"]["images_per_s"]
    for r in rows.values():
        r["vs_local"] = round(r["images_per_s"] / base, 2)
    record("end_to_end", {
        "source": "synthetic train (320x240 / 256x320 / 384x256 PNG)", "segmenter": "superpixel",
        "grid": args.grid, "images": args.images, "images_per_shard": args.images_per_shard,
        "ray_init_s": round(ray_init_s, 2), "runs": rows, "identical_shards": len(digests) == 1,
        "tiny_shards": {"images_per_shard": 1, "grid": 2, **tiny,
                        "ray_overhead_ms_per_shard": round(tiny["ray"]["ms_per_shard"] - tiny["local"]["ms_per_shard"], 1)},
        "loadavg_1min_start_end": [load0, os.getloadavg()[0]],
    }, notes=(
        "`getok-data build` through `run_build`, same process: local runner vs Ray (in-process `ray.init`, "
        "`build.num_actors` 1 and 2, 1 CPU each); wall time around `run_build`, so Ray rows include starting "
        "their actors. `busy_parallelism` = sum of the shards' own seconds (sidecars) / wall: how many shards "
        "were being built at once on average. `ray_2_actors_one_in_flight`: the same with one shard in flight "
        "per actor (the scheduling before `QUEUE_DEPTH` = 2). `local_no_offset_masks`: without `grid.offset_masks` "
        "(its shards differ by design). `identical_shards`: every other run wrote the same tar bytes. `tiny_shards`: one-image "
        "shards at grid 2; ms per shard is the slope between two shard counts (fixed costs cancel)."))


if __name__ == "__main__":
    main()
