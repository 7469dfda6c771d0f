"""The pipelined shard job: CPU workers overlap the segmenter and never change the bytes."""
import hashlib
from pathlib import Path

import pytest

from getok_data.config import load_config
from getok_data.segmenters import build_segmenter
from getok_data.sources import get_source
from pipelines.build import run_build
from pipelines.shard_job import CpuPool, build_shard


def cfg(out: Path, **build) -> dict:
    return load_config(None, {"source": {"name": "synthetic", "split": "train", "size": 12}, "grid": {"n": 8},
                              "build": {"out": str(out), "images_per_shard": 5, **build}})


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*"))}


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("k1")
    run_build(cfg(out, cpu_workers=1), progress=False)
    return out


def test_two_worker_processes_give_byte_identical_shards(one_worker, tmp_path):
    summary = run_build(cfg(tmp_path, cpu_workers=2), progress=False)
    assert summary["images"] == 12 and summary["shards"] == 3
    tars = {k: v for k, v in digests(tmp_path).items() if k.endswith(".tar")}
    assert tars == {k: v for k, v in digests(one_worker).items() if k.endswith(".tar")} and len(tars) == 3
    # Sidecars differ only in the measured seconds.
    import json
    for name in ("shard-000000.json", "shard-000002.json"):
        a, b = (json.loads((d / name).read_text()) for d in (one_worker, tmp_path))
        a.pop("seconds"), b.pop("seconds")
        assert a == b


def test_results_come_back_in_record_order_whatever_the_batching(tmp_path):
    """More images than fit in flight at once (batches of 8, depth 2 per worker): order kept."""
    c = cfg(tmp_path, cpu_workers=1)
    records = list(get_source("synthetic", split="train", size=12).records())
    seen = []
    with CpuPool(1) as pool:
        side = build_shard(0, records, build_segmenter(c.segmenter), c, "h", str(tmp_path),
                           on_image=lambda r: seen.append(r.key), pool=pool)
    assert seen == [r.key for r in records] == side["keys"]


def test_cpu_workers_is_checked_and_settable_by_flag(tmp_path):
    from click.testing import CliRunner

    from getok_data.cli import main as cli
    with pytest.raises(ValueError, match="build.cpu_workers: must be >= 1"):
        load_config(None, {"build": {"cpu_workers": 0}})
    res = CliRunner().invoke(cli, ["build", "--size", "3", "--grid", "6", "--cpu-workers", "0",
                                   "--out", str(tmp_path / "x"), "--no-progress"])
    assert res.exit_code != 0 and "build.cpu_workers" in res.output
    from pipelines.ray_runner import actor_cpus
    assert actor_cpus(load_config(None, {"build": {"cpus_per_actor": 1.0, "cpu_workers": 3}}).build) == 3.0
    assert actor_cpus(load_config(None, {"build": {"cpus_per_actor": 4.0, "cpu_workers": 2}}).build) == 4.0


def test_a_killed_worker_process_is_replaced_for_the_next_shard(tmp_path):
    """A worker process that dies (OOM killer, kill -9) breaks the pool: the shard it was on
    fails (the runner retries it), and the next submit replaces the pool."""
    import os
    import signal
    import time

    c = cfg(tmp_path, cpu_workers=2)
    records = list(get_source("synthetic", split="train", size=12).records())[:4]
    seg = build_segmenter(c.segmenter)
    with CpuPool(2) as pool:
        first = build_shard(0, records, seg, c, "h", str(tmp_path / "a"), pool=pool)
        broken = pool.executor
        os.kill(next(iter(broken._processes)), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not broken._broken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broken._broken
        again = build_shard(0, records, seg, c, "h", str(tmp_path / "c"), pool=pool)
        assert pool.executor is not broken
    assert again["sha256"] == first["sha256"]
