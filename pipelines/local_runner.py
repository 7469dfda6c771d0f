"""In-process runner: one segmenter, shards one after another, a progress bar."""
from __future__ import annotations

from getok_data.config import BuildConfig
from getok_data.dataset import shard_is_complete
from getok_data.segmenters import build_segmenter
from getok_data.storage import Storage

from .plan import make_source, plan
from .progress import Progress
from .shard_job import CpuPool, build_shard


def run_local(cfg: BuildConfig, chash: str, storage: Storage, progress: bool = True) -> tuple[list[dict], int]:
    segmenter = None  # built on first need, so a fully resumed build loads no model
    sidecars: list[dict] = []
    num_shards = 0
    with Progress(enabled=progress) as bar, CpuPool(cfg.build.cpu_workers) as pool:
        source = make_source(cfg)
        for index, records in plan(source, cfg.build.images_per_shard):
            num_shards = index + 1
            done = shard_is_complete(storage, index, chash)
            if done is not None:
                bar.skip(done)
            else:
                if segmenter is None:
                    segmenter = build_segmenter(cfg.segmenter)
                done = build_shard(index, records, segmenter, cfg, chash, storage.url, on_image=bar.image, pool=pool,
                                   resolve=source.resolve)
                bar.shard(done)
            sidecars.append(done)
    return sidecars, num_shards
