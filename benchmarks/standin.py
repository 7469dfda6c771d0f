"""The shard job against a simulated accelerator (issue 19).

A stand-in segmenter returns a realistic candidate table (1024 distinct SAM-like masks at the
256-px table resolution, already bit-packed and deduplicated, as the device path hands them
over) after a fixed latency ``T`` per image, sleeping, so the GIL is free as it is while a GPU
works. The shard job's throughput is compared with the ideal ``min(1/T, k/C)`` images/s, where
``C`` is the CPU workers' cost per image (``finish``: annotate + pack, measured serially in the
same run on the same inputs) and ``k`` the number of CPU workers (``build.cpu_workers``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from getok_data.config import load_config  # noqa: E402
from getok_data.sample import finish, prepare  # noqa: E402
from getok_data.segmenters.base import CandidateTable, SegmenterBase, table_shape  # noqa: E402
from getok_data.sources import get_source  # noqa: E402

N, U = 32, 1024


def sam_like_rows(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``U`` distinct ellipse masks (part-to-whole sizes), packed: uint8 ``[U, ceil(h*w/8)]``."""
    import cv2

    h, w = shape
    rng = np.random.default_rng(seed)
    masks = np.zeros((U, h, w), np.uint8)
    for k in range(U):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(masks[k], c, (int(rng.integers(3, w // 3)), int(rng.integers(3, h // 3))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    rows = np.packbits(masks.reshape(U, -1).astype(bool), axis=1)
    assert len({r.tobytes() for r in rows}) == U
    return rows


class StandInSegmenter(SegmenterBase):
    """Sleeps ``latency_s`` per image (GIL released), then returns the table for its shape."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = float(latency_s)
        self.identity = {"name": "standin", "latency_s": self.latency_s}
        self._rows: dict[tuple[int, int], np.ndarray] = {}
        self._index = np.arange(N * N, dtype=np.int32).reshape(N, N) % U
        self._scores = np.linspace(0.5, 1.0, U, dtype=np.float32)

    def table(self, shape: tuple[int, int]) -> CandidateTable:
        if shape not in self._rows:
            self._rows[shape] = sam_like_rows(shape)
        return CandidateTable(packed=self._rows[shape], shape=shape, index=self._index, scores=self._scores)

    def segment(self, image: np.ndarray, n: int, offset_m: int | None = None) -> CandidateTable:
        time.sleep(self.latency_s)
        return self.table(table_shape(*image.shape[:2]))


def main() -> None:
    from common import record

    from pipelines.shard_job import CpuPool, build_shard

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--latencies-ms", default="20,50,100")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    cfg = load_config(None, {"grid": {"n": N}, "segmenter": {"name": "sam"},
                             "build": {"images_per_shard": args.images}})
    records = list(get_source("synthetic", split="train", size=args.images).records())
    seg = StandInSegmenter(0.0)
    prepared = [prepare(r) for r in records]
    tables = [seg.table(table_shape(*p.rgb.shape[:2])) for p in prepared]

    def cpu_cost() -> float:
        """C: the CPU workers' cost per image, one serial pass (fresh tables), measured right
        before each run so both see the same machine load."""
        fresh = [CandidateTable(packed=t.packed(), shape=t.shape, index=t.index, scores=t.scores) for t in tables]
        t0 = time.perf_counter()
        for p, t in zip(prepared, fresh):
            finish(p, t, cfg, seg.identity)
        return (time.perf_counter() - t0) / len(prepared)

    t0 = time.perf_counter()
    for r in records:
        prepare(r)
    read_s = (time.perf_counter() - t0) / len(records)
    runs = []
    for k in (int(v) for v in args.workers.split(",")):
        with CpuPool(k) as pool, tempfile.TemporaryDirectory() as out:
            if pool.processes:  # start the processes before timing (they live as long as the actor)
                pool.submit([], cfg, {}).result()
                list(pool.executor.map(abs, range(4 * k)))
            for t_ms in (float(v) for v in args.latencies_ms.split(",")):
                seg.latency_s = t_ms / 1e3
                c_s = cpu_cost()
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                build_shard(0, records, seg, cfg, "standin", out, pool=pool)
                rate = len(records) / (time.perf_counter() - t0)
                ideal = min(1e3 / t_ms, k / c_s)
                runs.append({"T_ms": t_ms, "k": k, "images_per_s": round(rate, 2), "ideal": round(ideal, 2),
                             "ratio": round(rate / ideal, 3), "C_ms": round(c_s * 1e3, 2),
                             "load_avg_1m": round(load, 2)})
                print(runs[-1], flush=True)
    record("standin", {"images": len(records), "grid": N, "candidates": U,
                       "read_decode_ms": round(read_s * 1e3, 2), "runs": runs, "cpus": os.cpu_count()},
           notes="Shard-job throughput against a stand-in segmenter that sleeps T per image; ideal = "
                 "min(1/T, k/C) with C the CPU workers' serial cost per image in the same run (issue 19).")


if __name__ == "__main__":
    main()
