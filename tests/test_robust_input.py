"""Bad input, as a user meets it: one COCO folder with a planted problem per issue-15 item,
built once through the CLI; what reached the shards, what errors.jsonl says, the exit code."""
from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner
from PIL import Image

from getok_data.cli import main as cli

W, H = 64, 48
SQUARE = [[8, 8, 40, 8, 40, 36, 8, 36]]


def _scene(w: int = W, h: int = H) -> np.ndarray:
    a = np.full((h, w, 3), 60, np.uint8)
    a[8:36, 8:40] = (220, 40, 40)
    a[4:20, 44:60] = (40, 200, 60)
    return a


def _png(a: np.ndarray, mode: str | None = None) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a, mode).save(b, "PNG") if mode else Image.fromarray(a).save(b, "PNG")
    return b.getvalue()


def short_png(w: int, h: int, rows: int) -> bytes:
    """A PNG whose header says h rows and whose complete zlib stream holds only ``rows``."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + bytes([200]) * (3 * w) for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gray16() -> bytes:
    g = np.zeros((H, W), np.uint16)
    g[8:36, 8:40] = 40000  # a mid-grey square on black: PIL's convert("RGB") would make it white
    g[4:20, 44:60] = 65535
    return _png(g)


def exif_jpeg(orientation: int) -> bytes:
    im = Image.fromarray(_scene())
    exif = im.getexif()
    exif[0x0112] = orientation
    b = io.BytesIO()
    im.save(b, "JPEG", exif=exif, quality=95)
    return b.getvalue()


def make_coco(root: Path) -> Path:
    """The planted problems (ids): see the tests below for what each must give."""
    img = root / "img"
    img.mkdir(parents=True)
    files = {"good.png": _png(_scene()), "gray16.png": gray16(), "short.png": short_png(W, H, 20),
             "tiny.png": _png(_scene(6, 6)), "rot.jpg": exif_jpeg(6), "junk.png": b"not an image at all",
             "k.png": _png(_scene())}
    for name, data in files.items():
        (img / name).write_bytes(data)
    images = [
        {"id": 1, "file_name": "good.png"}, {"id": 3, "file_name": "good.png"}, {"id": 3, "file_name": "k.png"},
        {"id": 4, "file_name": "gone\udcff.png"}, {"id": 5, "file_name": "gray16.png"},
        {"id": 6, "file_name": "short.png"}, {"id": 7, "file_name": "good.png", "width": 30000, "height": 30000},
        {"id": 8, "file_name": "good.png", "width": 9000, "height": 9000}, {"id": 9, "file_name": "tiny.png", "width": 6, "height": 6},
        {"id": 10, "file_name": "rot.jpg"}, {"id": 11, "file_name": "junk.png"},
        # ids that collided as sample keys: 50 / "50", "a.b" / "a/b" / "a-b"
        {"id": 50, "file_name": "k.png"}, {"id": "50", "file_name": "k.png"}, {"id": "a.b", "file_name": "k.png"},
        {"id": "a/b", "file_name": "k.png"}, {"id": "a-b", "file_name": "k.png"},
    ]
    images = [dict({"width": W, "height": H}, **im) for im in images]
    anns, next_id = [], 100
    for im in images:
        anns.append({"id": next_id, "image_id": im["id"], "category_id": 1, "iscrowd": 0,
                     "segmentation": SQUARE if im["id"] != 9 else [[1, 1, 5, 1, 5, 5, 1, 5]]})
        next_id += 1
    anns += [
        {"id": 201, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": SQUARE + [[44, 4, 60, 4, 60, 20]]},
        {"id": 202, "image_id": 1, "category_id": 1, "iscrowd": 0,  # a part with an odd coordinate count
         "segmentation": SQUARE + [[44, 4, 60, 4, 60, 20, 44]]},
        {"id": 203, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": SQUARE},  # surrogate category
        {"id": 204, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": SQUARE},  # duplicate ann id
        {"id": 204, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": SQUARE},
    ]
    cats = [{"id": 1, "name": "block"}, {"id": 2, "name": "bl\udcffck"}]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))  # \udcff escapes
    return path


def build(root: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, [
        "build", "--src", "coco", "--annotations", str(root / "ann.json"), "--image-root", str(root / "img"),
        "--grid", "8", "--segmenter", "superpixel", "--out", str(out), "--max-error-rate", "1",
        "--no-progress", "--json", *extra])


def samples(out: Path) -> dict[str, dict]:
    got = {}
    for shard in sorted(out.glob("shard-*.tar")):
        for s in wds.WebDataset(str(shard), shardshuffle=False):
            assert s["__key__"] not in got, f"duplicate key {s['__key__']}"
            got[s["__key__"]] = s
    return got


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    make_coco(root)
    out = root / "out"
    res = build(root, out)
    assert res.exit_code == 0, res.output
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    return root, out, errors, samples(out)


def _errs(errors, image_id, ann_id=None):
    return [e for e in errors if e["image_id"] == image_id and e["ann_id"] == ann_id]


def test_lone_surrogates_never_kill_the_shard(built):
    root, out, errors, got = built
    # the category holding \udcff: its target quarantined with a reason naming it, the image built
    (e,) = _errs(errors, 1, 203)
    assert "coco_train_1" in got
    assert "not valid Unicode" in e["reason"] and "category" in e["reason"] and "\\udcff" in e["reason"]
    # a file name holding \udcff only ever appears in a reason: written escaped, never raising
    (e,) = _errs(errors, 4)
    assert e["reason"].startswith("missing image file: gone\\udcff.png")
    assert json.loads((out / "shard-000000.json").read_text())["sha256"]  # the sidecar is there
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0
    again = build(root, out)  # the rerun is a no-op, not the same crash
    assert again.exit_code == 0, again.output


def test_16_bit_png_is_rescaled_and_a_short_png_is_quarantined(built):
    _, _, errors, got = built
    assert "coco_train_5" in got and "coco_train_6" not in got
    (e,) = _errs(errors, 6)
    assert e["reason"].startswith("truncated PNG") and "20 of 48 rows" in e["reason"] and "short.png" in e["reason"]


def test_colliding_ids_get_distinct_keys_and_all_reach_the_shards(built):
    _, _, _, got = built
    keys = [k for k in got if k.split("_", 2)[2] in ("50", "-35-0", "a-2e-b", "a-2f-b", "a-2d-b")]
    assert sorted(keys) == sorted(["coco_train_50", "coco_train_-35-0", "coco_train_a-2e-b",
                                   "coco_train_a-2f-b", "coco_train_a-2d-b"])
    assert {json.loads(got[k]["json"])["image_id"] for k in keys} == {50, "50", "a.b", "a/b", "a-b"}


def test_structural_problems_quarantine_only_their_records(built):
    _, _, errors, got = built
    (e,) = _errs(errors, 3)
    assert e["reason"].startswith("duplicate image id 3: 2 entries") and "coco_train_3" not in got
    dup = _errs(errors, 1, 204)
    assert len(dup) == 2 and all(d["reason"].startswith("duplicate annotation id 204") for d in dup)
    built1 = {t["ann_id"] for t in json.loads(got["coco_train_1"]["json"])["targets"]}
    assert built1 == {100, 201}  # the rest of image 1 is built


def test_odd_polygon_part_quarantines_the_target_naming_the_part(built):
    _, _, errors, _ = built
    (e,) = _errs(errors, 1, 202)
    assert "part 1 of 2 has an odd number of coordinates (7)" in e["reason"]


def test_huge_or_wrong_declared_sizes_are_refused_before_any_mask(built):
    _, _, errors, got = built
    (e,) = _errs(errors, 7)
    assert "30000x30000" in e["reason"] and "MAX_IMAGE_PIXELS" in e["reason"] and "coco_train_7" not in got
    (e,) = _errs(errors, 8)
    assert e["reason"] == "image good.png is 64x48 but the annotations say 9000x9000"


def test_grid_finer_than_the_image_is_quarantined(built):
    _, _, errors, got = built
    (e,) = _errs(errors, 9)
    assert "smaller than the grid (n=8)" in e["reason"] and "tiny.png" in e["reason"] and "coco_train_9" not in got


def test_exif_orientation_is_recorded_not_applied(built):
    _, _, _, got = built
    meta = json.loads(got["coco_train_10"]["json"])
    assert meta["exif_orientation"] == 6 and (meta["width"], meta["height"]) == (W, H)
    assert "exif_orientation" not in json.loads(got["coco_train_1"]["json"])


def test_errors_jsonl_is_byte_identical_wherever_the_data_lives(built, tmp_path):
    root, out, errors, _ = built
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(root / "img", moved / "img")
    shutil.copy(root / "ann.json", moved / "ann.json")
    res = build(moved, tmp_path / "out2")
    assert res.exit_code == 0, res.output
    text = (out / "errors.jsonl").read_bytes()
    assert (tmp_path / "out2" / "errors.jsonl").read_bytes() == text
    assert b" at 0x" not in text and str(root).encode() not in text
    (e,) = _errs(errors, 11)
    assert e["reason"] == "cannot decode image junk.png: UnidentifiedImageError: cannot identify image file"


def test_refer_build_quarantines_bad_refs_and_refuses_symlinked_files(tmp_path):
    import os
    import pickle
    data = tmp_path / "D"
    (data / "refcoco").mkdir(parents=True)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_png(_scene()))
    anns = [{"id": 11, "image_id": 1, "category_id": 1, "segmentation": SQUARE},
            {"id": 12, "image_id": 1, "category_id": 1, "segmentation": SQUARE},
            {"id": 12, "image_id": 1, "category_id": 1, "segmentation": SQUARE}]
    (data / "refcoco" / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}], "annotations": anns,
        "categories": [{"id": 1, "name": "block"}]}))

    def ref(ref_id, ann_id, text):
        return {"ref_id": ref_id, "ann_id": ann_id, "image_id": 1, "split": "train",
                "sentences": [{"raw": text, "sent_id": ref_id}]}
    refs = [ref(1, 11, "the red block"), ref(2, 11, "bad \udcff text"), ref(3, 12, "dup ann"),
            {k: v for k, v in ref(4, 11, "x").items() if k != "ann_id"}]
    (data / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    args = ["build", "--src", "refcoco", "--image-root", str(tmp_path / "img"), "--grid", "8",
            "--segmenter", "superpixel", "--max-error-rate", "1", "--no-progress"]
    res = CliRunner().invoke(cli, [*args, "--data-root", str(data), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    errors = {e["ref_id"]: e["reason"] for e in map(json.loads, (tmp_path / "o" / "errors.jsonl").read_text().splitlines())}
    assert "not valid Unicode" in errors[2] and errors[3].startswith("duplicate annotation id 12")
    assert errors[4] == "ref #3 lacks REFER key(s) ['ann_id']" and set(errors) == {2, 3, 4}
    (s,) = samples(tmp_path / "o").values()
    assert [t["ref_id"] for t in json.loads(s["json"])["targets"]] == [1]
    # the same files reached through symlinks from another --data-root: refused, one line
    (tmp_path / "L" / "refcoco").mkdir(parents=True)
    for name in ("instances.json", "refs(unc).p"):
        os.symlink(data / "refcoco" / name, tmp_path / "L" / "refcoco" / name)
    res = CliRunner().invoke(cli, [*args, "--data-root", str(tmp_path / "L"), "--out", str(tmp_path / "o2")])
    assert res.exit_code != 0 and "outside" in res.output and "Traceback" not in res.output
