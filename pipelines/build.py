"""The build job: source -> fixed blocks of sorted images -> shards, resumable, on any runner.

Run as ``getok-data build ...`` or as a Ray job entrypoint:
``ray job submit -- python -m pipelines.build --config configs/X.yaml --runner ray``.
"""
from __future__ import annotations

import itertools
import json
import time
from typing import Iterator

from getok_data.config import config_hash, output_config
from getok_data.shards import json_bytes, sidecar_name
from getok_data.sources import get_source
from getok_data.stats import summarize
from getok_data.storage import Storage
from getok_data.types import ImageRecord

SOURCE_OPTIONS = {
    "synthetic": ("split", "size", "seed", "limit"),
    "coco": ("annotations", "image_root", "split", "limit"),
}
REFER_OPTIONS = ("data_root", "image_root", "split_by", "split", "limit")
MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"


class BuildError(RuntimeError):
    """A build that must not go on (config mismatch, too many errors); the message says why."""


def source_options(src: dict) -> dict:
    keys = SOURCE_OPTIONS.get(src["name"], REFER_OPTIONS)
    return {k: src[k] for k in keys if src.get(k) is not None}


def make_source(cfg: dict):
    return get_source(cfg["source"]["name"], **source_options(cfg["source"]))


def plan(source, images_per_shard: int) -> Iterator[tuple[int, list[ImageRecord]]]:
    """Consecutive fixed-size blocks of the source's sorted records, numbered from 0."""
    it = iter(source.records())
    for index in itertools.count():
        block = list(itertools.islice(it, images_per_shard))
        if not block:
            return
        yield index, block


def prepare_output(storage: Storage, cfg: dict, force: bool) -> str:
    """Check the output folder against this config; returns the config hash.

    A folder built with another config is refused unless ``force``, which clears it first.
    """
    chash = config_hash(cfg)
    if storage.exists(MANIFEST):
        old = json.loads(storage.read_bytes(MANIFEST))
        if old.get("config_hash") != chash:
            if not force:
                raise BuildError(
                    f"{storage.url} holds a build with another config (hash {old.get('config_hash', '?')[:12]} "
                    f"!= {chash[:12]}); use --force to rebuild it, or choose another --out")
            for name in storage.list("shard-*") + [ERRORS, MANIFEST]:
                storage.remove(name)
    for name in storage.list("*.tmp"):
        storage.remove(name)  # half-written shards of an interrupted run
    write_manifest(storage, cfg, chash, "running", [])
    return chash


def write_manifest(storage: Storage, cfg: dict, chash: str, status: str, sidecars: list[dict],
                   summary: dict | None = None) -> None:
    manifest = {
        "format_version": 2,  # 2: .cand.npz masks delta-coded (docs/FORMAT.md); 1 is still read
        "status": status,
        "config": cfg,
        "output_config": output_config(cfg),
        "config_hash": chash,
        "shards": [{k: s[k] for k in ("shard", "sha256", "bytes", "images", "images_written", "targets")}
                   | {"sidecar": sidecar_name(s["index"])} for s in sidecars],
        "summary": summary,
    }
    storage.write_bytes(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())


def finalize(storage: Storage, cfg: dict, chash: str, sidecars: list[dict], num_shards: int) -> dict:
    """errors.jsonl, the manifest and the summary, all from the sidecars on disk."""
    for name in storage.list("shard-*.tar") + storage.list("shard-*.json"):
        if int(name[6:12]) >= num_shards:
            storage.remove(name)  # left by an earlier, larger run of the same config
    sidecars = sorted(sidecars, key=lambda s: s["index"])
    errors = b"".join(json_bytes(e) + b"\n" for s in sidecars for e in s["errors"])
    storage.write_bytes(ERRORS, errors)
    summary = summarize(sidecars)
    write_manifest(storage, cfg, chash, "complete", sidecars, summary)
    return summary


def check_error_rate(summary: dict, max_rate: float) -> None:
    if summary["error_rate"] > max_rate:
        raise BuildError(
            f"error rate {summary['error_rate']:.4f} ({summary['targets_seen'] - summary['targets']} of "
            f"{summary['targets_seen']} targets not built; {summary['errors']} quarantine records) is above "
            f"--max-error-rate {max_rate}; see {ERRORS}")


def run_build(cfg: dict, force: bool = False, progress: bool = True) -> dict:
    """Build (or resume) the dataset described by ``cfg``; returns the summary.

    Raises BuildError when the output holds another config, or when the error rate is too high
    (the shards are still written, so the errors can be inspected).
    """
    runner = cfg["build"]["runner"]
    if runner == "local":
        from .local_runner import run_local as run
    elif runner == "ray":
        from .ray_runner import run_ray as run
    else:
        raise BuildError(f"--runner must be local or ray, got {runner!r}")
    storage = Storage(cfg["build"]["out"])
    chash = prepare_output(storage, cfg, force)
    t0 = time.perf_counter()
    sidecars, num_shards = run(cfg, chash, storage, progress)
    summary = finalize(storage, cfg, chash, sidecars, num_shards)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    summary["images_per_second"] = round(summary["images"] / max(summary["wall_seconds"], 1e-9), 3)
    summary["out"] = storage.url
    return summary


def main(argv: list[str] | None = None) -> None:
    """``python -m pipelines.build``: the same options as ``getok-data build``."""
    from getok_data.cli import main as cli_main
    cli_main(["build", *(argv or __import__("sys").argv[1:])])


if __name__ == "__main__":
    main()

__all__ = ["run_build", "plan", "make_source", "BuildError"]
