"""The build job: source -> fixed blocks of sorted images -> shards, resumable, on any runner.

A function module: run it as ``getok-data build ...`` or, as a Ray job entrypoint,
``ray job submit -- python -m getok_data build --config configs/X.yaml --runner ray``
(the command line sits above the pipelines, so this module never imports it).

Everything the build needs is checked before the output folder is touched: the config (when
it is loaded), the source (built here, which checks its paths) and the segmenter's checkpoint
(hashed into the config hash).
"""
from __future__ import annotations

import time

from getok_data.config import BuildConfig
from getok_data.dataset import shard_is_complete
from getok_data.storage import Storage

from .output import BuildError, OutputLock, finalize, prepare, read_manifest
from .plan import make_source, plan

RUNNERS = ("local", "ray")


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
    storage = _existing(cfg.build.out)
    if storage is not None and read_manifest(storage) is not None and not force:
        num_planned = sum(1 for _ in plan(source, cfg.build.images_per_shard))
        done = _already_complete(storage, chash, num_planned)
        if done is not None:
            return _timed(done, t0, storage, resumed=True)
    storage = Storage(cfg.build.out)
    with OutputLock(storage):
        prepare(storage, cfg, chash, force)
        sidecars, num_shards = run(cfg, chash, storage, progress)
        summary = finalize(storage, cfg, chash, sidecars, num_shards)
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


__all__ = ["run_build", "check_error_rate", "BuildError", "RUNNERS"]

if __name__ == "__main__":  # the old entrypoint: say where it went rather than exit 0 having built nothing
    raise SystemExit("python -m pipelines.build is gone: run `python -m getok_data build ...` (the same options)")
