"""Inputs from object storage and HTTP, and planning that touches no image, against real servers:
an S3-compatible server (moto's ``moto_server``, as s3fs's own suite uses) and Python's
``http.server``. Each build is compared byte for byte with the same build from local files."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from getok_data.cli import main as cli
from getok_data.config import load_config
from pipelines.build import run_build

from test_build import make_refer_tree

MOTO = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free port, with the AWS_* environment pointing every client at it."""
    if not Path(MOTO).exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]'): the S3 server cannot start")
    port = _port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                pytest.skip(f"moto_server did not start: {log.read_text()[-500:]}")
            time.sleep(0.2)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield s3fs.S3FileSystem()
    proc.terminate()
    proc.wait(timeout=30)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def refer(tmp_path_factory) -> dict:
    """The REFER tree with planted bad inputs, and its local build (the reference bytes)."""
    root = tmp_path_factory.mktemp("objref")
    make_refer_tree(root / "D")
    local = root / "local"
    run_build(_cfg(str(root / "D"), str(root / "D/images/mscoco/images/train2014"), str(local)), progress=False)
    return {"root": root, "data": root / "D", "local": local}


def _cfg(data_root: str, image_root: str, out: str, **build):
    return load_config(None, {"source": {"name": "refcoco", "data_root": data_root, "image_root": image_root},
                              "grid": {"n": 8}, "build": {"out": out, "images_per_shard": 4, "max_error_rate": 1.0,
                                                          **build}})


def _local_digests(folder: Path) -> dict[str, str]:
    out = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.tar"))}
    out["errors.jsonl"] = hashlib.sha256((folder / "errors.jsonl").read_bytes()).hexdigest()
    return out


def _s3_digests(fs, prefix: str) -> dict[str, str]:
    out = {k.rsplit("/", 1)[1]: hashlib.sha256(fs.cat(k)).hexdigest() for k in sorted(fs.glob(f"{prefix}/shard-*.tar"))}
    out["errors.jsonl"] = hashlib.sha256(fs.cat(f"{prefix}/errors.jsonl")).hexdigest()
    return out


def test_s3_input_to_s3_output_is_byte_identical_to_local(s3, refer):
    s3.mkdir("inputs")
    s3.put(str(refer["data"]), "inputs/refer", recursive=True)
    img = "s3://inputs/refer/images/mscoco/images/train2014"
    summary = run_build(_cfg("s3://inputs/refer", img, "s3://outputs/refer"), progress=False)
    want = _local_digests(refer["local"])
    assert _s3_digests(s3, "outputs/refer") == want and len(want) > 2
    errors = s3.cat("outputs/refer/errors.jsonl").decode()
    assert "image path escapes --image-root: ../../../../instances_escape.jpg" in errors  # safety kept for URLs
    assert "missing image file: COCO_train2014_000000900002.jpg (under --image-root)" in errors
    # a re-run is a no-op decided by the plan fingerprint (ETags), without planning again
    again = run_build(_cfg("s3://inputs/refer", img, "s3://outputs/refer"), progress=False)
    assert again.get("already_complete") and again["images"] == summary["images"]
    manifest = json.loads(s3.cat("outputs/refer/manifest.json"))
    assert manifest["plan_fingerprint"] and "AWS" not in json.dumps(manifest)


def test_http_images_are_byte_identical_to_local(refer):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(refer["data"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out = refer["root"] / "http"
        run_build(_cfg(f"{base}", f"{base}/images/mscoco/images/train2014", str(out)), progress=False)
    finally:
        server.shutdown()
    assert _local_digests(out) == _local_digests(refer["local"])


def test_kill_9_mid_build_then_resume_against_s3_is_byte_identical(s3, refer, tmp_path):
    if not s3.exists("inputs/refer"):
        s3.mkdir("inputs")
        s3.put(str(refer["data"]), "inputs/refer", recursive=True)
    img = "s3://inputs/refer/images/mscoco/images/train2014"
    args = [sys.executable, "-m", "getok_data", "build", "--src", "refcoco", "--data-root", "s3://inputs/refer",
            "--image-root", img, "--grid", "8", "--images-per-shard", "4", "--max-error-rate", "1",
            "--out", "s3://outputs/killed", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not s3.glob("outputs/killed/shard-*.json"):
        time.sleep(0.05)
        s3.invalidate_cache()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    s3.invalidate_cache()
    assert _s3_digests(s3, "outputs/killed") == _local_digests(refer["local"])
    assert not s3.glob("outputs/killed/*.tmp")


def test_dry_run_writes_nothing_and_counts_the_plan(refer, tmp_path):
    out = tmp_path / "never"
    res = CliRunner().invoke(cli, ["build", "--src", "refcoco", "--data-root", str(refer["data"]), "--image-root",
                                   str(refer["data"] / "images/mscoco/images/train2014"), "--grid", "8",
                                   "--images-per-shard", "4", "--out", str(out), "--dry-run"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output.strip().splitlines()[-1])
    manifest = json.loads((refer["local"] / "manifest.json").read_text())
    assert plan["images"] == manifest["summary"]["images"] and plan["planned_shards"] == manifest["planned_shards"]
    assert plan["deferred"] is True and sum(plan["images_per_split"].values()) == plan["images"]
    assert not out.exists()


def test_a_finished_build_reruns_without_planning(refer, monkeypatch):
    from getok_data.sources.refer import ReferSource

    cfg = _cfg(str(refer["data"]), str(refer["data"] / "images/mscoco/images/train2014"), str(refer["local"]))

    def no_planning(self):
        raise AssertionError("planned again")

    monkeypatch.setattr(ReferSource, "plan", no_planning)
    again = run_build(cfg, progress=False)
    assert again["already_complete"]
    (refer["data"] / "refcoco" / "instances.json").touch()  # the inputs changed: plan (and fail here)
    with pytest.raises(AssertionError, match="planned again"):
        run_build(cfg, progress=False)


DRIVER = textwrap.dedent("""
    import json, sys
    root = sys.argv[1]
    opened = []
    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].startswith(root):
            opened.append(args[0])
    sys.addaudithook(hook)
    from getok_data.config import load_config
    from pipelines.build import run_build
    cfg = load_config(None, {"source": {"name": "refcoco", "data_root": sys.argv[2], "image_root": root},
                             "grid": {"n": 8}, "build": {"out": sys.argv[3], "images_per_shard": 4,
                             "max_error_rate": 1.0, "runner": sys.argv[4], "num_actors": 1}})
    run_build(cfg, progress=False)
    print(json.dumps(opened))
""")


def test_the_driver_of_a_ray_build_opens_no_image(refer, tmp_path):
    """Python's audit hook sees every file the driver opens (PIL's included): with ``--runner
    ray`` none is an image (the actors resolve and read them); the local runner, one process,
    opens them all, which shows the hook sees them."""
    images = str(refer["data"] / "images/mscoco/images/train2014")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    seen = {}
    for runner in ("ray", "local"):
        out = tmp_path / runner
        proc = subprocess.run([sys.executable, "-c", DRIVER, images, str(refer["data"]), str(out), runner],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen[runner] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert _local_digests(out) == _local_digests(refer["local"])
    assert seen["ray"] == [] and len(seen["local"]) >= 4


@pytest.mark.parametrize("name", ["coco", "vg", "humanref", "culane"])
def test_other_sources_read_s3_like_local(s3, name, tmp_path):
    fx = ROOT / "tests" / "fixtures"
    mm = fx / "open-mmlab__mmpose/tests/data/coco"
    folder, local, remote = {
        "coco": (mm, {"annotations": str(mm / "test_coco.json"), "image_root": str(mm)},
                 {"annotations": "s3://src-coco/test_coco.json", "image_root": "s3://src-coco"}),
        "vg": (fx / "getok-data__own/visual_genome", {"data_root": str(fx / "getok-data__own/visual_genome")},
               {"data_root": "s3://src-vg"}),
        "humanref": (fx / "getok-data__own/humanref", {"data_root": str(fx / "getok-data__own/humanref")},
                     {"data_root": "s3://src-humanref"}),
        # no frame list: the bucket is listed for *.lines.txt (real CULane frames, one image missing)
        "culane": (fx / "khaledmohammed__CULaneDetection/Data", {"data_root": str(fx / "khaledmohammed__CULaneDetection/Data")},
                   {"data_root": "s3://src-culane"}),
    }[name]
    bucket = f"src-{name}"
    if not s3.exists(bucket):
        s3.mkdir(bucket)
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                s3.put(str(p), f"{bucket}/{p.relative_to(folder).as_posix()}")
    for where, opts in (("local", local), ("s3", remote)):
        run_build(load_config(None, {"source": {"name": name, **opts}, "grid": {"n": 8},
                                     "build": {"out": str(tmp_path / where), "max_error_rate": 1.0}}), progress=False)
    assert _local_digests(tmp_path / "s3") == _local_digests(tmp_path / "local")
