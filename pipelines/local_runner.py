"""In-process runner: one segmenter, shards one after another, a progress bar."""
from __future__ import annotations

from getok_data.segmenters import build_segmenter
from getok_data.shards import shard_is_complete
from getok_data.storage import Storage

from .build import make_source, plan
from .progress import Progress
from .shard_job import CpuPool, build_shard


def run_local(cfg: dict, chash: str, storage: Storage, progress: bool = True) -> tuple[list[dict], int]:
    segmenter = None  # built on first need, so a fully resumed build loads no model
    sidecars: list[dict] = []
    num_shards = 0
    with Progress(enabled=progress) as bar, CpuPool(int(cfg["build"].get("cpu_workers") or 1)) as pool:
        for index, records in plan(make_source(cfg), int(cfg["build"]["images_per_shard"])):
            num_shards = index + 1
            done = shard_is_complete(storage, index)
            if done is not None:
                bar.skip(done)
            else:
                if segmenter is None:
                    segmenter = build_segmenter(cfg["segmenter"])
                done = build_shard(index, records, segmenter, cfg, chash, storage.url, on_image=bar.image, pool=pool)
                bar.shard(done)
            sidecars.append(done)
    return sidecars, num_shards
