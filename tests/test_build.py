"""End-to-end builds: determinism, resume, config guard, quarantine, verify, stats, inspect."""
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner

from getok_data.cli import main as cli
from getok_data.config import load_config
from getok_data.dataset import load_npz
from pipelines.build import BuildError, run_build

from conftest import FIXTURES_DIR as FIXTURES
MMPOSE = FIXTURES / "open-mmlab__mmpose" / "tests" / "data" / "coco"


def syn_cfg(out, tau=None, **build):
    return load_config(None, {
        "source": {"name": "synthetic", "split": "train", "size": 10},
        "grid": {"n": 8}, "selection": {"tau": tau},
        "build": {"out": str(out), "images_per_shard": 4, **build},
    })


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    summary = run_build(syn_cfg(out), progress=False)
    return out, summary


def test_build_is_deterministic_and_meets_the_contract(reference, tmp_path):
    ref, summary = reference
    assert summary["images"] == 10 and summary["shards"] == 3 and summary["errors"] == 0
    run_build(syn_cfg(tmp_path / "again"), progress=False)
    assert digests(tmp_path / "again") == digests(ref) and len(digests(ref)) == 3

    # webdataset reads it; tarfile shows fixed headers and sorted members.
    samples = list(wds.WebDataset(str(ref / "shard-000000.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"synthetic_train_{i}" for i in range(4)]
    with tarfile.open(ref / "shard-000000.tar") as tf:
        infos = tf.getmembers()
    assert [i.name for i in infos[:3]] == ["synthetic_train_0.cand.npz", "synthetic_train_0.json", "synthetic_train_0.png"]
    assert all(i.mtime == 0 and i.uid == 0 and i.uname == "" for i in infos)

    meta = json.loads(samples[0]["json"])
    cand = load_npz(samples[0]["cand.npz"])  # .cand.npz v2 stores masks delta-coded; load_npz decodes
    assert cand["index"].dtype == np.int32 and cand["index"].shape == (8, 8)
    h, w = cand["shape"]
    assert cand["masks"].shape[1] == (h * w + 7) // 8
    assert meta["grid"] == {"n": 8, "m": 16} and meta["selection"] == {"method": "sorted", "tau": 0.9}
    assert meta["segmenter"]["name"] == "superpixel"
    for t in meta["targets"]:
        assert isinstance(t["mask_rle"]["counts"], str)
        assert len(t["regions"]) == 64 and set(t["regions"]) <= set("IRHF")
        assert set(t["tokens"]) == {"point", "box", "seg"} and t["refine"]
        assert all(set(r) >= {"prompt", "answer"} for r in t["refine"])
    manifest = json.loads((ref / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["shards"]) == 3
    assert (ref / "errors.jsonl").read_text() == ""


def test_offset_masks_build_adds_exact_refined_masks_and_changes_nothing_else(reference, tmp_path):
    """Offset masks (on by default for superpixel): the same tokens and grid table as a build
    without them, plus every anchor's one-step masks, so the table decodes a refined answer as the
    segmenter would."""
    from getok_data.decode import TableDecoder
    from getok_data.segmenters import build_segmenter
    from getok_data.tokens import OFFSET_STEPS, Grid
    from getok_data.verify import iter_samples
    from PIL import Image

    ref, _ = reference
    plain_dir = tmp_path / "plain"
    res = CliRunner().invoke(cli, ["build", "--src", "synthetic", "--split", "train", "--size", "10", "--grid", "8",
                                   "--images-per-shard", "4", "--no-offset-masks", "--out", str(plain_dir),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads((ref / "manifest.json").read_text())["config"]["grid"]["offset_masks"] is True
    plain_cfg = json.loads((plain_dir / "manifest.json").read_text())["config"]
    assert plain_cfg["grid"]["offset_masks"] is False
    seg = build_segmenter({"name": "superpixel"})
    plain = dict(iter_samples((plain_dir / "shard-000000.tar").read_bytes()))
    for key, m in iter_samples((ref / "shard-000000.tar").read_bytes()):
        assert m["json"] == plain[key]["json"] and m["png"] == plain[key]["png"]
        old = load_npz(plain[key]["cand.npz"])
        new = load_npz(m["cand.npz"])
        assert "offsets" not in old and new["offsets"].shape == (8, 8, 9)
        assert np.array_equal(new["index"], old["index"])
        assert np.array_equal(new["masks"][: len(old["masks"])], old["masks"])
        meta = json.loads(m["json"])
        grid, dec = Grid(8, meta["width"], meta["height"]), TableDecoder(new, 8)
        image = np.asarray(Image.open(io.BytesIO(m["png"])).convert("RGB"))
        for t in meta["targets"]:
            for i, j in t["anchors"]:
                for step in OFFSET_STEPS:
                    x, y = grid.position(i, j, step)
                    got = dec.decode([(i, j)], [step])
                    if 0 <= x < meta["width"] and 0 <= y < meta["height"]:
                        assert np.array_equal(got, seg.segment_points(image, np.array([[x, y]]))[0][0])
                    else:
                        assert not got.any()

    # a broken offsets map is caught by verify
    out = tmp_path / "om"
    shutil.copytree(ref, out)
    samples = list(iter_samples((out / "shard-000000.tar").read_bytes()))
    arrays = dict(np.load(io.BytesIO(samples[0][1]["cand.npz"]), allow_pickle=False))
    arrays["offsets"][..., 4] = -1
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    samples[0][1]["cand.npz"] = buf.getvalue()
    from getok_data.checksums import sha256
    from getok_data.dataset import tar_bytes

    data = tar_bytes(samples)
    (out / "shard-000000.tar").write_bytes(data)
    side = json.loads((out / "shard-000000.json").read_text())
    side["sha256"] = sha256(data)
    (out / "shard-000000.json").write_text(json.dumps(side))
    bad = CliRunner().invoke(cli, ["verify", str(out)])
    assert bad.exit_code != 0 and "offsets" in bad.output


def test_resume_repairs_missing_corrupt_and_temporary_shards(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "b"
    shutil.copytree(ref, out)
    (out / "shard-000001.tar").unlink()
    data = bytearray((out / "shard-000002.tar").read_bytes()); data[700] ^= 0xFF
    (out / "shard-000002.tar").write_bytes(bytes(data))
    (out / "shard-000003.tar.tmp").write_bytes(b"half a shard")
    before = (out / "shard-000000.json").read_bytes()
    run_build(syn_cfg(out), progress=False)
    assert digests(out) == digests(ref)
    assert (out / "shard-000000.json").read_bytes() == before  # the intact shard was skipped
    assert not list(out.glob("*.tmp"))


def test_kill_9_mid_build_then_resume_is_byte_identical(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "getok_data", "build", "--src", "synthetic", "--split", "train", "--size", "10",
            "--grid", "8", "--images-per-shard", "4", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "shard-000000.json").exists() and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    assert digests(out) == digests(ref)
    assert not list(out.glob("*.tmp"))


def test_another_config_is_refused_unless_forced(reference, tmp_path):
    out = tmp_path / "c"
    run_build(syn_cfg(out), progress=False)
    other = syn_cfg(out, tau=0.5)
    with pytest.raises(BuildError, match="another config"):
        run_build(other, progress=False)
    run_build(other, force=True, progress=False)
    assert json.loads((out / "manifest.json").read_text())["config"]["selection"]["tau"] == 0.5


def test_verify_catches_a_flipped_byte(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "v"
    shutil.copytree(ref, out)
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", str(out)])
    assert ok.exit_code == 0, ok.output
    data = bytearray((out / "shard-000001.tar").read_bytes()); data[len(data) // 3] ^= 0x01
    (out / "shard-000001.tar").write_bytes(bytes(data))
    bad = runner.invoke(cli, ["verify", str(out)])
    assert bad.exit_code != 0 and "shard-000001.tar" in bad.output


def test_verify_catches_a_wrong_token_iou_with_a_matching_checksum(reference, tmp_path):
    from getok_data.checksums import sha256
    from getok_data.dataset import json_bytes, tar_bytes
    from getok_data.verify import iter_samples

    ref, _ = reference
    out = tmp_path / "w"
    shutil.copytree(ref, out)
    samples = list(iter_samples((out / "shard-000000.tar").read_bytes()))
    meta = json.loads(samples[0][1]["json"])
    meta["targets"][0]["token_iou"] -= 0.01
    samples[0][1]["json"] = json_bytes(meta)
    data = tar_bytes(samples)
    (out / "shard-000000.tar").write_bytes(data)
    side = json.loads((out / "shard-000000.json").read_text()); side["sha256"] = sha256(data)
    (out / "shard-000000.json").write_text(json.dumps(side))
    bad = CliRunner().invoke(cli, ["verify", str(out)])
    assert bad.exit_code != 0 and "token_iou" in bad.output


def test_stats_and_inspect(reference, tmp_path):
    ref, _ = reference
    runner = CliRunner()
    res = runner.invoke(cli, ["stats", str(ref), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["images"] == 10 and st["targets"] > 10 and st["token_iou"]["mean"] > 0.3
    assert set(st["regions"]) == set("IRHF") and st["bytes_per_image"] > 0
    png = tmp_path / "s.png"
    res = runner.invoke(cli, ["inspect", str(ref), "--key", "synthetic_train_3", "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert "<seg>" in res.output and png.read_bytes()[:4] == b"\x89PNG"


def test_vocab_command():
    res = CliRunner().invoke(cli, ["vocab", "--grid", "4", "--format", "json"])
    tokens = json.loads(res.output)
    assert len(tokens) == 36 and tokens[0] == "<grid_0_0>" and tokens[1] == "<grid_1_0>" and tokens[16] == "<OFF_-1_1>"


# ---- quarantine on a REFER-layout tree with real COCO pixels and planted bad inputs ----

def make_refer_tree(root: Path) -> dict:
    """REFER layout from the mmpose fixture (4 real JPEGs), with planted bad inputs."""
    coco = json.loads((MMPOSE / "test_coco.json").read_text())
    img_dir = root / "images" / "mscoco" / "images" / "train2014"
    img_dir.mkdir(parents=True)
    images = []
    for im in coco["images"]:
        name = f"COCO_train2014_{im['id']:012d}.jpg"
        shutil.copy(MMPOSE / im["file_name"], img_dir / name)
        images.append(dict(im, file_name=name))
    ids = [im["id"] for im in images]
    # a truncated JPEG, a missing file, a path traversal
    trunc = dict(images[0], id=900001, file_name="COCO_train2014_000000900001.jpg")
    (img_dir / trunc["file_name"]).write_bytes((img_dir / images[0]["file_name"]).read_bytes()[:5000])
    missing = dict(images[0], id=900002, file_name="COCO_train2014_000000900002.jpg")
    escape = dict(images[0], id=900003, file_name="../../../../instances_escape.jpg")
    (root / "instances_escape.jpg").write_bytes((img_dir / images[0]["file_name"]).read_bytes())
    anns = list(coco["annotations"])
    base = anns[0]
    w, h = images[0]["width"], images[0]["height"]
    anns += [dict(base, id=800001, image_id=trunc["id"]), dict(base, id=800002, image_id=missing["id"]),
             dict(base, id=800003, image_id=escape["id"]),
             dict(base, id=800004, segmentation=[[10, 10, 20, 20, 30, 30]]),  # degenerate: zero area
             dict(base, id=800005, segmentation=[[w + 50, h + 50, w + 90, h + 50, w + 90, h + 90]])]  # outside
    (root / "refcoco").mkdir()
    (root / "refcoco" / "instances.json").write_text(json.dumps(
        {"images": images + [trunc, missing, escape], "annotations": anns, "categories": coco["categories"]}))
    refs, splits = [], ["train", "val", "testA", "testB"]
    good = [a for a in coco["annotations"] if a["image_id"] in ids]
    for k, a in enumerate(good):
        refs.append(_ref(k, a["id"], a["image_id"], splits[k % 4]))
    bad = {"truncated": 800001, "missing": 800002, "escape": 800003, "degenerate": 800004, "outside": 800005}
    for k, (why, ann) in enumerate(bad.items()):
        img = {800001: trunc["id"], 800002: missing["id"], 800003: escape["id"]}.get(ann, base["image_id"])
        refs.append(_ref(100 + k, ann, img, "train"))
    refs.append(_ref(200, 999999999, base["image_id"], "train"))  # dangling ann_id
    with open(root / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    return {"good_refs": len(good), "bad": bad}


def _ref(ref_id, ann_id, image_id, split):
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sent_ids": [ref_id * 10],
            "sentences": [{"raw": "the person on the left (synthetic sentence)", "sent": "the person on the left",
                           "sent_id": ref_id * 10, "tokens": ["the", "person"]}]}


def test_refer_build_quarantines_each_bad_input_and_keeps_the_rest(tmp_path):
    root = tmp_path / "D"
    info = make_refer_tree(root)
    out = tmp_path / "O"
    res = CliRunner().invoke(cli, [
        "build", "--src", "refcoco", "--data-root", str(root),
        "--image-root", str(root / "images/mscoco/images/train2014"), "--grid", "16",
        "--segmenter", "superpixel", "--out", str(out), "--max-error-rate", "1", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    errors = [json.loads(l) for l in (out / "errors.jsonl").read_text().splitlines()]
    reasons = " | ".join(e["reason"] for e in errors)
    by_ann = {e["ann_id"]: e for e in errors if e["ann_id"] is not None}
    by_image = {e["image_id"]: e for e in errors if e["ann_id"] is None}
    assert 900001 in by_image and 900002 in by_image and 900003 in by_image, reasons
    assert 800004 in by_ann and 800005 in by_ann and 999999999 in by_ann, reasons
    assert by_ann[999999999]["ref_id"] == 200
    built = [json.loads(s["json"]) for name in sorted(out.glob("shard-*.tar"))
             for s in wds.WebDataset(str(name), shardshuffle=False)]
    kept = [t for s in built for t in s["targets"]]
    assert len(kept) == info["good_refs"]
    assert {s["split"] for s in built} == {"train", "val", "testA", "testB"}
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0
    # errors above the limit: same build exits non-zero with a clear message
    res = CliRunner().invoke(cli, [
        "build", "--src", "refcoco", "--data-root", str(root),
        "--image-root", str(root / "images/mscoco/images/train2014"), "--grid", "16",
        "--out", str(out), "--no-progress"])
    assert res.exit_code == 3 and "max-error-rate" in res.output


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "refcoco").mkdir()
    (tmp_path / "refcoco" / "instances.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump([Evil()], f)
    res = CliRunner().invoke(cli, ["build", "--src", "refcoco", "--data-root", str(tmp_path),
                                   "--image-root", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"])
    assert res.exit_code != 0 and not marker.exists()
    assert "refs(unc).p" in res.output and "Traceback" not in res.output


def test_build_to_an_fsspec_url_matches_the_local_build(reference):
    import fsspec

    from getok_data.verify import verify_dir

    ref, _ = reference
    url = "memory://getok-test/build"
    run_build(syn_cfg(url), progress=False)
    fs = fsspec.filesystem("memory")
    remote = {p.rsplit("/", 1)[-1]: hashlib.sha256(fs.cat(p)).hexdigest() for p in fs.glob("/getok-test/build/shard-*.tar")}
    assert remote == digests(ref)
    assert all(not r.problems for r in verify_dir(url))
    run_build(syn_cfg(url), progress=False)  # resume over fsspec: nothing to redo, same bytes
    assert {p.rsplit("/", 1)[-1]: hashlib.sha256(fs.cat(p)).hexdigest() for p in fs.glob("/getok-test/build/shard-*.tar")} == remote


@pytest.mark.parametrize("offset_masks", [False, True])
def test_tiny_sam_build_end_to_end_on_cpu(tmp_path, offset_masks):
    """The real segment-anything path (random tiny weights): build, verify, identity recorded."""
    cfg = load_config(None, {
        "source": {"name": "synthetic", "split": "val", "size": 3},
        "grid": {"n": 8, "offset_masks": offset_masks},
        "segmenter": {"name": "sam", "sam_model": "tiny", "points_per_batch": 16, "device": "cpu"},
        "build": {"out": str(tmp_path / "sam"), "images_per_shard": 2},
    })
    summary = run_build(cfg, progress=False)
    assert summary["images_written"] == 3 and summary["errors"] == 0
    assert CliRunner().invoke(cli, ["verify", str(tmp_path / "sam")]).exit_code == 0
    sample = next(iter(wds.WebDataset(str(tmp_path / "sam" / "shard-000000.tar"), shardshuffle=False)))
    ident = json.loads(sample["json"])["segmenter"]
    assert ident["name"] == "sam" and ident["model_type"] == "tiny"
    assert ident["checkpoint_sha256"] == "random-seed-0" and ident["multimask"] == "best_iou"
    cand = load_npz(sample["cand.npz"])
    assert ("offsets" in cand) == offset_masks


def test_offset_masks_auto_follows_the_segmenter_and_rejects_nonsense():
    on = load_config(None, {"segmenter": {"name": "superpixel"}})
    off = load_config(None, {"segmenter": {"name": "sam", "sam_model": "tiny"}})
    forced = load_config(None, {"grid": {"offset_masks": True}, "segmenter": {"name": "sam", "sam_model": "tiny"}})
    assert on.grid.offset_masks is True and off.grid.offset_masks is False
    assert forced.grid.offset_masks is True
    with pytest.raises(ValueError, match="offset_masks"):
        load_config(None, {"grid": {"offset_masks": "yes"}})
