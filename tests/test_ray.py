"""The Ray runner on a real local Ray cluster (no mocks): same bytes as the local runner,
also when an actor process is killed with SIGKILL mid-run."""
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from getok_data.config import load_config
from pipelines.build import run_build

RAY = str(Path(sys.executable).parent / "ray")
ARGS = ["--src", "synthetic", "--split", "train", "--size", "40", "--grid", "12", "--images-per-shard", "2"]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.tar"))}


def cfg(out: Path, **build):
    return load_config(None, {"source": {"name": "synthetic", "split": "train", "size": 40}, "grid": {"n": 12},
                              "build": {"out": str(out), "images_per_shard": 2, **build}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A separately started `ray start --head` cluster, as a user would run it.

    Ray >= 2.5x turns on token auth for a cluster when ``~/.ray/auth_token`` exists (any earlier
    local ``ray.init()`` writes one) but a driver given an explicit address does not send it;
    pin the mode for the cluster and every driver here so the test does not depend on $HOME.
    """
    tmp = tmp_path_factory.mktemp("ray")
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    # --block keeps the head in this child process: terminating it stops this cluster only
    # (`ray stop` would stop every Ray cluster on the machine).
    log = tmp / "head.log"
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--object-store-memory=200000000", f"--temp-dir={tmp}",
                             "--disable-usage-stats"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while "Ray runtime started" not in log.read_text():
        assert head.poll() is None and time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    head.terminate()
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_build(cfg(out), progress=False)
    return out


def test_ray_output_equals_local_output(cluster, local_reference, tmp_path):
    import ray

    out = tmp_path / "ray"
    try:
        summary = run_build(cfg(out, runner="ray", address=cluster, num_actors=2), progress=False)
    finally:
        ray.shutdown()
    assert summary["images"] == 40 and summary["shards"] == 20
    assert digests(out) == digests(local_reference) and len(digests(out)) == 20
    assert (out / "errors.jsonl").read_bytes() == (local_reference / "errors.jsonl").read_bytes()


def test_killed_actor_mid_run_still_gives_identical_output(cluster, local_reference, tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, RAY_ADDRESS=cluster)
    cmd = [sys.executable, "-m", "getok_data", "build", *ARGS, "--runner", "ray", "--address", cluster,
           "--num-actors", "2", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = None
    deadline = time.time() + 180
    while killed is None and time.time() < deadline and proc.poll() is None:
        # An actor process busy in a shard has the title "ray::ShardWorker.build".
        pids = subprocess.run(["pgrep", "-f", "ray::ShardWorker.build"], capture_output=True, text=True).stdout.split()
        if pids and any(out.glob("shard-*.json")):
            killed = int(pids[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    output, _ = proc.communicate(timeout=300)
    assert killed is not None, "the build finished before an actor could be killed"
    assert proc.returncode == 0, output.decode()[-2000:]
    assert digests(out) == digests(local_reference)


def test_a_shard_over_its_timeout_is_killed_retried_and_then_named(cluster, tmp_path):
    import ray

    from pipelines.build import BuildError

    out = tmp_path / "slow"
    # one shard of 40 images: far over half a second
    slow = cfg(out, runner="ray", address=cluster, num_actors=1, shard_timeout_s=0.5, max_retries=1, images_per_shard=40)
    try:
        with pytest.raises(BuildError, match=r"shard 0 failed 2 times; last: timed out after 0.5s"):
            run_build(slow, progress=False)
    finally:
        ray.shutdown()
    assert not list(out.glob("shard-*.tar"))
