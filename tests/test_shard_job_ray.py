"""The Ray runner with two CPU worker processes per actor writes the local runner's bytes."""
import hashlib
import os
from pathlib import Path

import pytest

from getok_data.config import load_config
from pipelines.build import run_build

ray = pytest.importorskip("ray")


def cfg(out: Path, **build) -> dict:
    return load_config(None, {"source": {"name": "synthetic", "split": "train", "size": 8}, "grid": {"n": 8},
                              "build": {"out": str(out), "images_per_shard": 4, **build}})


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.tar"))}


def test_ray_actor_with_two_cpu_workers_matches_the_local_one_worker_build(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # see tests/test_ray.py: no dependence on $HOME
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    run_build(cfg(tmp_path / "local", cpu_workers=1), progress=False)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONHASHSEED": "0", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}},
                 object_store_memory=100_000_000)
        summary = run_build(cfg(tmp_path / "ray", runner="ray", cpu_workers=2), progress=False)
        # the actor reserved both CPUs: one actor, whose two worker processes did the annotation
        assert summary["images"] == 8
    finally:
        ray.shutdown()
    assert digests(tmp_path / "ray") == digests(tmp_path / "local") and len(digests(tmp_path / "local")) == 2
