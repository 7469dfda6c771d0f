"""The output folder under misuse and crashes: nothing stuck, nothing stale, nothing silently wrong
(issue 15: half-written manifests, failed commands, unfinished builds, stale shards, concurrent
builds, full disks, one-line errors with distinct exit codes)."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from getok_data.cli import main as cli
from getok_data.storage import Storage
from pipelines.output import OutputLock

ROOT = Path(__file__).resolve().parents[1]
BASE = ["build", "--src", "synthetic", "--split", "val", "--size", "6", "--grid", "8", "--images-per-shard", "2",
        "--no-progress"]


def build(out: Path, *extra: str):
    return CliRunner().invoke(cli, [*BASE, "--out", str(out), *extra])


def verify(out: Path):
    return CliRunner().invoke(cli, ["verify", str(out)])


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "b"
    res = build(out)
    assert res.exit_code == 0, res.output
    return out


def copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def one_line_error(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_half_written_or_empty_manifest_does_not_stick(done, tmp_path):
    for content in (b"", b'{"status": "comp'):
        out = copy(done, tmp_path / f"m{len(content)}")
        (out / "manifest.json").write_bytes(content)
        assert verify(out).exit_code == 1
        res = build(out)  # a rerun resumes from the sidecars and rewrites the manifest
        assert res.exit_code == 0, res.output
        assert shard_bytes(out) == shard_bytes(done) and verify(out).exit_code == 0
        (out / "manifest.json").write_bytes(content)
        assert build(out, "--force").exit_code == 0 and shard_bytes(out) == shard_bytes(done)


def test_a_failed_command_does_not_poison_the_folder(tmp_path):
    out = tmp_path / "b"
    for bad in (["--src", "refcocoX"], ["--src", "refcoco"], ["--limit", "-1"], ["--segmenter", "nope"],
                ["--grid", "0"], ["--src", "coco", "--annotations", str(tmp_path / "missing.json"),
                                  "--image-root", str(tmp_path)]):
        res = build(out, *bad)
        assert res.exit_code == 2, (bad, res.output)
        one_line_error(res)
        assert not out.exists()  # refused before the output folder was touched
    # a command that fails after starting (a segmenter that cannot load) leaves no shard: the
    # corrected command is not refused as "another config"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"status": "running", "config": {"grid": {"n": 4}},
                                                    "config_hash": "0" * 64}))
    res = build(out)
    assert res.exit_code == 0, res.output


def test_verify_refuses_unfinished_and_inconsistent_builds(done, tmp_path):
    out = copy(done, tmp_path / "run")
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(m, status="running")))
    res = verify(out)
    assert res.exit_code == 1 and "build not complete" in res.output
    out = copy(done, tmp_path / "missing")
    (out / "shard-000002.tar").unlink()
    (out / "shard-000002.json").unlink()
    res = verify(out)
    assert res.exit_code == 1 and "shard-000002.tar: missing shard file" in res.output
    m = json.loads((out / "manifest.json").read_text())  # also when the manifest's list lost it
    (out / "manifest.json").write_text(json.dumps(dict(m, shards=m["shards"][:2])))
    res = verify(out)
    assert res.exit_code == 1 and "planned shard shard-000002.tar is missing" in res.output
    out = copy(done, tmp_path / "corrupt")
    (out / "shard-000001.json").write_text("{not json")
    res = verify(out)
    assert res.exit_code == 1 and "unreadable sidecar" in res.output and "Traceback" not in res.output
    (out / "manifest.json").write_text("[]")
    res = verify(out)
    assert res.exit_code == 1 and "unreadable manifest" in res.output
    assert verify(done).exit_code == 0
    res = verify(tmp_path / "nowhere")
    assert res.exit_code == 2 and not (tmp_path / "nowhere").exists()


def test_stale_shards_of_another_config_are_never_reused(done, tmp_path):
    out = copy(done, tmp_path / "stale")
    (out / "manifest.json").unlink()
    res = build(out, "--tau", "0.5")
    assert res.exit_code == 4 and "holds shards of another config" in one_line_error(res)
    res = build(out, "--tau", "0.5", "--force")
    assert res.exit_code == 0, res.output
    assert shard_bytes(out) != shard_bytes(done) and verify(out).exit_code == 0
    sidecars = [json.loads(p.read_text()) for p in out.glob("shard-*.json")]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["config_hash"] for s in sidecars} == {manifest["config_hash"]}


def test_one_build_per_folder(done, tmp_path):
    out = copy(done, tmp_path / "locked")
    lock = OutputLock(Storage(out))
    lock.acquire()
    try:
        res = build(out, "--force")
        line = one_line_error(res)
        assert res.exit_code == 4 and f"pid {os.getpid()}" in line and "build.lock" in line
    finally:
        lock.release()
    (out / "build.lock").write_text(json.dumps({"pid": 2 ** 22 + 7, "host": os.uname().nodename, "since": "x"}))
    (out / "shard-000001.json").unlink()
    res = build(out)  # a lock left by a process that is gone is taken over
    assert res.exit_code == 0, res.output
    assert not (out / "build.lock").exists() and shard_bytes(out) == shard_bytes(done)


def test_a_finished_build_reruns_without_writing(done, tmp_path):
    out = copy(done, tmp_path / "noop")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    res = build(out, "--json")
    assert res.exit_code == 0 and json.loads(res.output.splitlines()[-1])["already_complete"] is True
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))


def test_a_full_disk_is_a_one_line_error_and_the_folder_resumes(done, tmp_path):
    out = tmp_path / "full"
    cmd = [sys.executable, "-m", "getok_data", *BASE, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=300)
    assert proc.returncode == 5, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "File too large" in errors[0] and "Traceback" not in proc.stderr
    assert not list(out.glob("*.tmp")) and not (out / "build.lock").exists()
    res = build(out)  # nothing stuck: the same command finishes the build
    assert res.exit_code == 0, res.output
    assert shard_bytes(out) == shard_bytes(done) and verify(out).exit_code == 0


def test_cli_misuse_gives_one_line_errors(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = build(f)
    assert res.exit_code == 5 and "is a file, not a folder" in one_line_error(res)
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [n: 16\n")
    res = CliRunner().invoke(cli, ["build", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "YAML syntax error" in one_line_error(res)
    bad.write_text("grid:\n  n: 16.7\n")
    res = CliRunner().invoke(cli, ["build", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "grid.n: expected an integer, got 16.7" in one_line_error(res)
    res = build(tmp_path / "o", "--set", "segmenter.scale=oops")
    assert res.exit_code == 2 and "segmenter.scale: expected a number" in one_line_error(res)
    assert not (tmp_path / "o").exists()


def test_training_checks_its_inputs_before_it_starts(done, tmp_path):
    res = CliRunner().invoke(cli, ["train", "sft", "--data", str(done), "--val", str(tmp_path / "none"),
                                   "--steps", "1", "--out", str(tmp_path / "m.pt"), "--no-progress"])
    assert res.exit_code == 2 and "--val: no shards found" in one_line_error(res)
    assert not (tmp_path / "m.pt").exists()


def test_a_second_build_into_the_same_folder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "shared"
    # big enough that the first is still building when the second has started up (a few seconds)
    cmd = [sys.executable, "-m", "getok_data", "build", "--src", "synthetic", "--split", "train", "--size", "100",
           "--grid", "16", "--images-per-shard", "4", "--no-progress", "--out", str(out)]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "build.lock").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first build ended before the second started"
        assert second.returncode == 4 and f"pid {first.pid}" in second.stderr, second.stderr
    finally:
        assert first.wait(timeout=300) == 0, first.stderr.read()
    assert verify(out).exit_code == 0 and not (out / "build.lock").exists()
