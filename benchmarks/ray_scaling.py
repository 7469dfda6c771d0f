"""Ray runner scaling: images/s vs number of actors and shard size, against the local runner.

Synthetic source, superpixel segmenter, grid 32, ``run_build`` in one process; Ray started
in-process once. For each ``images_per_shard`` in ``--shard-sizes``: the local runner, then Ray
with 1..``--max-actors`` actors (1 CPU each). Shows (a) how close k actors get to k x one actor
(``efficiency`` = rate(k) / (k * rate(1))) and (b) what too-small shards (per-shard cost) and
too-few shards (idle actors at the tail) do. Every build of one shard size must give the same
shard bytes; the script checks it. On a machine with C cores, more than C - 1 actors share
cores with the driver.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import record
from end_to_end import build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--shard-sizes", default="2,10,50")
    ap.add_argument("--max-actors", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    import ray
    ray.init(runtime_env={"env_vars": {"PYTHONHASHSEED": "0"}}, log_to_driver=False, include_dashboard=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp) / "warm", 4, args.grid, 2)  # imports of the driver process
            for per_shard in (int(s) for s in args.shard_sizes.split(",")):
                wall, _, ref = build(Path(tmp) / f"local_{per_shard}", args.images, args.grid, per_shard)
                row = {"images_per_shard": per_shard, "shards": -(-args.images // per_shard),
                       "local_images_per_s": round(args.images / wall, 2), "ray": {}, "busy_parallelism": {},
                       "identical_shards": True}
                for k in range(1, args.max_actors + 1):
                    wall, summary, digest = build(Path(tmp) / f"ray{k}_{per_shard}", args.images, args.grid, per_shard,
                                            "ray", k)
                    row["ray"][f"{k}_actors"] = round(args.images / wall, 2)
                    row["busy_parallelism"][f"{k}_actors"] = round(summary["seconds"] / wall, 2)
                    row["identical_shards"] &= digest == ref
                one = row["ray"]["1_actors"]
                row["efficiency"] = {a: round(r / (int(a.split("_")[0]) * one), 2) for a, r in row["ray"].items()}
                row["best_ray_vs_local"] = round(max(row["ray"].values()) / row["local_images_per_s"], 2)
                rows.append(row)
                print(row, flush=True)
    finally:
        ray.shutdown()
    record("ray_scaling", {
        "segmenter": "superpixel", "grid": args.grid, "images": args.images, "rows": rows,
        "loadavg_1min_start_end": [load0, os.getloadavg()[0]],
    }, notes=(
        "images/s of `run_build` (wall time, including actor start-up) for the local runner and Ray with "
        "1..N actors, per shard size; `efficiency` = rate(k actors) / (k x rate(1 actor)); `busy_parallelism` = "
        "sum of the shards' own seconds / wall (shards in flight on average)."))


if __name__ == "__main__":
    main()
