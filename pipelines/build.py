"""The build job: source -> fixed blocks of sorted images -> shards, resumable, on any runner.

A function module: run it as ``getok-data build ...`` or, as a Ray job entrypoint,
``ray job submit -- python -m getok_data build --config configs/X.yaml --runner ray``
(the command line sits above the pipelines, so this module never imports it).

Everything the build needs is checked before the output folder is touched: the config (when
it is loaded), the source (built here, which checks its paths) and the segmenter's checkpoint
(hashed into the config hash).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter

from getok_data.config import BuildConfig
from getok_data.dataset import shard_is_complete
from getok_data.location import RemotePath, location
from getok_data.sources import Source
from getok_data.storage import Storage
from getok_data.types import PlannedImage

from .output import BuildError, OutputLock, finalize, prepare, read_manifest
from .plan import make_source, plan

RUNNERS = ("local", "ray")


def plan_fingerprint(source: Source, chash: str) -> str | None:
    """What a finished build's re-run compares before planning: the config hash and each
    annotation file's path, size and modification time or ETag (a stat, never a read). None when
    the source does not name its inputs or one cannot be stat'ed."""
    files = source.inputs()
    if not files:
        return None
    stats = []
    try:
        for f in files:
            loc = location(f)
            if isinstance(loc, RemotePath):
                info = loc.fs.info(loc.key if loc.protocol not in ("http", "https") else loc.url)
                stats.append([str(f), info.get("size"), str(info.get("ETag") or info.get("LastModified")
                                                              or info.get("mtime") or "")])
            else:
                st = os.stat(loc)
                stats.append([str(f), st.st_size, st.st_mtime_ns])
    except (OSError, ValueError):
        return None
    return hashlib.sha256(json.dumps({"config_hash": chash, "inputs": stats}, sort_keys=True,
                                     default=str).encode()).hexdigest()


def dry_run(cfg: BuildConfig) -> dict:
    """The plan of ``cfg`` without building or writing anything: images and planned shards,
    images per split, the annotation problems planning found, and whether planning opened any
    image (``deferred``: it did not; the source defers its per-image work to the shard job)."""
    t0 = time.perf_counter()
    chash = cfg.hash
    source = make_source(cfg)
    per_split: Counter = Counter()
    problems = 0
    images = 0
    for item in source.plan():
        images += 1
        per_split[str(item.split)] += 1
        problems += item.problems if isinstance(item, PlannedImage) else len(item.errors)
    return {"dry_run": True, "source": cfg.source.name, "images": images,
            "planned_shards": math.ceil(images / cfg.build.images_per_shard), "images_per_shard": cfg.build.images_per_shard,
            "images_per_split": dict(sorted(per_split.items())), "annotation_problems": problems,
            "deferred": source.defers, "config_hash": chash, "plan_fingerprint": plan_fingerprint(source, chash),
            "out": cfg.build.out, "seconds": round(time.perf_counter() - t0, 3)}


def _already_complete(storage: Storage, chash: str, num_planned: int) -> dict | None:
    """The summary of a finished build of this very config, checked without writing anything
    (so a finished build on a read-only disk re-runs as a no-op)."""
    m = read_manifest(storage)
    if m is None or not m.complete or m.config_hash != chash or m.planned_shards != num_planned or not m.summary:
        return None
    if any(shard_is_complete(storage, k, chash) is None for k in range(num_planned)):
        return None
    return dict(m.summary)


def run_build(cfg: BuildConfig, force: bool = False, progress: bool = True) -> dict:
    """Build (or resume) the dataset described by ``cfg``; returns the summary.

    Raises BuildError when the output holds another config or is locked by another build;
    ``check_error_rate`` decides whether the finished build failed.
    """
    if cfg.build.runner == "local":
        from .local_runner import run_local as run
    else:
        from .ray_runner import run_ray as run
    chash = cfg.hash  # hashes the checkpoint too: a missing one fails here, before --out is touched
    source = make_source(cfg)  # checks the source's paths, also before --out is touched
    t0 = time.perf_counter()
    fingerprint = plan_fingerprint(source, chash)
    storage = _existing(cfg.build.out)
    manifest = read_manifest(storage) if storage is not None else None
    if manifest is not None and not force:
        if fingerprint is not None and manifest.plan_fingerprint == fingerprint and manifest.planned_shards:
            num_planned = manifest.planned_shards  # same config, same annotation files: no planning
        else:
            num_planned = sum(1 for _ in plan(source, cfg.build.images_per_shard))
        done = _already_complete(storage, chash, num_planned)
        if done is not None:
            return _timed(done, t0, storage, resumed=True)
    storage = Storage(cfg.build.out)
    with OutputLock(storage):
        prepare(storage, cfg, chash, force)
        sidecars, num_shards = run(cfg, chash, storage, progress)
        summary = finalize(storage, cfg, chash, sidecars, num_shards, fingerprint)
    return _timed(summary, t0, storage)


def _existing(url: str) -> Storage | None:
    """The output folder if it exists (opened read-only), else None."""
    try:
        return Storage(url, create=False)
    except FileNotFoundError:
        return None


def _timed(summary: dict, t0: float, storage: Storage, resumed: bool = False) -> dict:
    summary = dict(summary)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    summary["images_per_second"] = round(summary["images"] / max(summary["wall_seconds"], 1e-9), 3)
    summary["out"] = storage.url
    if resumed:
        summary["already_complete"] = True
    return summary


def check_error_rate(summary: dict, max_rate: float) -> None:
    if summary["error_rate"] > max_rate:
        raise BuildError(
            f"error rate {summary['error_rate']:.4f} ({summary['targets_seen'] - summary['targets']} of "
            f"{summary['targets_seen']} targets not built; {summary['errors']} quarantine records) is above "
            f"--max-error-rate {max_rate}; see errors.jsonl")


__all__ = ["run_build", "dry_run", "plan_fingerprint", "check_error_rate", "BuildError", "RUNNERS"]

if __name__ == "__main__":  # the old entrypoint: say where it went rather than exit 0 having built nothing
    raise SystemExit("python -m pipelines.build is gone: run `python -m getok_data build ...` (the same options)")
