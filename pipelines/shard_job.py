"""One shard, start to finish: the unit of work for every runner."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from getok_data.sample import Prepared, SampleResult, finish, prepare, segment_prepared
from getok_data.config import BuildConfig
from getok_data.dataset import tar_bytes, write_shard
from getok_data.storage import Storage
from getok_data.types import ImageRecord

SEGMENT_BATCH = 8  # images per segmenter call (the SAM encoder batches them)


def _prepare_all(records: list[ImageRecord]) -> list[Prepared]:
    return [prepare(r) for r in records]


def build_shard(index: int, records: list[ImageRecord], segmenter, cfg: BuildConfig, config_hash: str,
                out: str, on_image=None) -> dict:
    """Process ``records`` (one fixed block of the sorted image ids) and write shard ``index``.

    Returns the sidecar. ``on_image(result)`` is called after each image (progress bars).
    """
    t0 = time.perf_counter()
    n, offset_m = cfg.grid.n, cfg.offset_m
    results: list[SampleResult] = []
    batches = [records[b : b + SEGMENT_BATCH] for b in range(0, len(records), SEGMENT_BATCH)]
    # Read and decode the next batch in a thread while the segmenter works on this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(_prepare_all, batches[0]) if batches else None
        for k in range(len(batches)):
            prepared = ahead.result()
            if k + 1 < len(batches):
                ahead = pool.submit(_prepare_all, batches[k + 1])
            tables = segment_prepared(prepared, segmenter, n, offset_m)
            for p, table in zip(prepared, tables):
                res = finish(p, table, cfg, segmenter.identity)
                results.append(res)
                if on_image:
                    on_image(res)
    data = tar_bytes((r.key, r.members) for r in results if r.members is not None)
    ok = [r for r in results if r.members is not None]
    sidecar = {
        "index": index,
        "config_hash": config_hash,
        "keys": [r.key for r in results],
        "images": len(results),
        "images_written": len(ok),
        "targets_seen": sum(r.targets_seen for r in results),
        "targets": sum(len(r.targets) for r in results),
        "targets_seg_null": sum(not t["seg"] for r in results for t in r.targets),
        # no-target queries (empty <seg></seg>, IoU 1 by definition) are counted apart, not averaged in
        "token_counts": [t["token_count"] for r in results for t in r.targets if t["seg"] and not t.get("no_target")],
        "token_ious": [t["token_iou"] for r in results for t in r.targets if not t.get("no_target")],
        "targets_no_target": sum(bool(t.get("no_target")) for r in results for t in r.targets),
        "targets_low_quality": sum(bool(t.get("low_quality")) for r in results for t in r.targets),
        "regions": {c: sum(r.regions.get(c, 0) for r in results) for c in "IRHF"},
        "image_bytes": sum(len(next(iter(v for k, v in r.members.items() if k not in ("json", "cand.npz"))))
                           for r in ok),
        "errors": [e.to_dict() for r in results for e in r.errors],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return write_shard(Storage(out), index, data, sidecar)
