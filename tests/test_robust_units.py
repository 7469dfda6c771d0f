"""Issue-15 guarantees below the CLI: keys, ErrorRecord/sidecar serialisation, the per-image
packing guard, 16-bit decoding, the bounded unpickler, REFER structural and symlink problems."""
from __future__ import annotations

import json
import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_robust_input import SQUARE, _png, _scene, short_png

from getok_data.config import load_config
from getok_data.images import ImageError, decode_full
from getok_data.sample import finish, prepare, segment_prepared
from getok_data.segmenters import build_segmenter
from getok_data.dataset import json_bytes
from getok_data.sources import UnsafePickleError, get_source, safe_load
from getok_data.sources.base import Source
from getok_data.types import ErrorRecord, ImageRecord, Target, sample_key


def test_keys_unique_by_construction_and_unchanged_for_plain_ids():
    ids = [50, "50", "a.b", "a/b", "a-b", "a_b", -5, "-5", "0", 0, "007", "", " ", "x\udcff"]
    keys = [sample_key("refcoco+", "testA", i) for i in ids]
    assert len(set(keys)) == len(keys)
    assert all(k.isascii() and "." not in k and "/" not in k for k in keys)
    # today's keys stay byte-identical: int ids, [A-Za-z0-9_] string ids (not an int's digits)
    assert sample_key("refcoco+", "testA", 50) == "refcocoplus_testA_50"
    assert sample_key("coco", "train", "COCO_val_x9") == "coco_train_COCO_val_x9"
    assert sample_key("coco", "train", "007") == "coco_train_007"
    # the split cannot borrow the id's underscores: ("a_b", "c") != ("a", "b_c")
    assert sample_key("coco", "a_b", "c") != sample_key("coco", "a", "b_c")


class _Twice(Source):
    name = "twice"

    def records(self):
        for image_id in (1, 1, 2):
            yield ImageRecord("twice", "train", image_id, 8, 8, [], image_bytes=b"x")

    def describe(self):
        return {}


def test_a_source_yielding_a_key_twice_gets_the_second_refused():
    recs = list(_Twice().records())
    assert [r.image_id for r in recs] == [1, 1, 2]
    assert recs[1].image_bytes is None and recs[1].image_path is None
    assert recs[1].errors[0].reason.startswith("duplicate sample key twice_train_1")
    assert not recs[0].errors and not recs[2].errors


def test_error_records_and_sidecars_serialise_whatever_they_hold():
    e = ErrorRecord("coco", "train", "id\udcff", "missing image file: x\udcff.png", detail=b"\xff", ann_id=object())
    line = json_bytes(e.to_dict())
    back = json.loads(line)
    assert back["image_id"] == "id\\udcff" and back["reason"].endswith("x\\udcff.png")
    assert json_bytes({"k": "fine \u00e9"}) == '{"k":"fine \u00e9"}'.encode()  # valid text: unchanged bytes
    with pytest.raises(UnicodeEncodeError):
        json_bytes({"k": "\udcff"}, strict=True)


def test_packing_failure_becomes_an_error_record_naming_the_image():
    cfg = load_config(None, {"grid": {"n": 8}, "segmenter": {"name": "superpixel"}})
    seg = build_segmenter(cfg.segmenter)
    from getok_data.masks import mask_box, mask_to_rle, segmentation_to_mask
    m = segmentation_to_mask(SQUARE, 48, 64)
    t = Target("t0", ["the \udcff block"], "block", mask_to_rle(m), mask_box(m), ann_id=7)
    rec = ImageRecord("coco", "train", 42, 64, 48, [t], image_bytes=_png(_scene()), image_ext="png")
    p = prepare(rec)
    (table,) = segment_prepared([p], seg, 8)
    res = finish(p, table, cfg, seg.identity)
    assert res.members is None
    (err,) = res.errors
    assert err.image_id == 42 and err.reason.startswith("packing the sample failed: UnicodeEncodeError")
    json_bytes(err.to_dict())


def test_16_bit_gray_is_rescaled_not_clipped():
    g = np.array([[0, 257, 32768, 65535]], np.uint16)
    rec = ImageRecord("coco", "train", 1, 4, 1, [], image_bytes=b"")
    rgb, ext, orientation = decode_full(_png(g), rec)
    assert ext == "png" and orientation is None
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255] and (rgb[..., 0] == rgb[..., 2]).all()
    with pytest.raises(ImageError, match=r"truncated PNG: the image data holds about 3 of 10 rows"):
        decode_full(short_png(5, 10, 3), ImageRecord("coco", "train", 1, 5, 10, [], image_bytes=b""))
    interlaced = Image.fromarray(_scene())
    import io
    b = io.BytesIO()
    interlaced.save(b, "PNG", interlace=1)  # Pillow may ignore the flag; a full image must decode either way
    assert decode_full(b.getvalue(), ImageRecord("coco", "train", 1, 64, 48, []))[0].shape == (48, 64, 3)


def _shared_reference_pickle(levels: int) -> bytes:
    x = ["a" * 10]
    for _ in range(levels):
        x = [x, x, x]
    return pickle.dumps(x, protocol=2)


def test_unpickler_is_bounded(tmp_path):
    bomb = tmp_path / "refs(unc).p"
    bomb.write_bytes(_shared_reference_pickle(18))  # 3**18 leaves as a tree, a few hundred bytes
    assert bomb.stat().st_size < 1000
    tracemalloc.start()
    with pytest.raises(UnsafePickleError, match="deeper than|more than"):
        safe_load(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6
    wide = tmp_path / "wide.p"  # shallow but wide sharing: the node cap, not the depth cap
    row = ["tok"] * 200
    wide.write_bytes(pickle.dumps([[{"s": [row] * 200}] * 200] * 5, protocol=2))
    with pytest.raises(UnsafePickleError, match="more than .* objects"):
        safe_load(wide)
    loop = []
    loop.append(loop)
    (tmp_path / "self.p").write_bytes(pickle.dumps(loop, protocol=2))
    with pytest.raises(UnsafePickleError, match="self-referential"):
        safe_load(tmp_path / "self.p")
    # LONG_BINPUT 2**31-1: a 4-byte memo index; the C unpickler sizes an array by it
    (tmp_path / "memo.p").write_bytes(b"\x80\x02]r\xff\xff\xff\x7f.")
    assert safe_load(tmp_path / "memo.p") == []


def _refer(root: Path, refs: list, images: list, anns: list) -> tuple[Path, Path]:
    (root / "refcoco").mkdir(parents=True)
    img = root / "img"
    img.mkdir()
    for im in images:
        (img / im["file_name"]).write_bytes(_png(_scene()))
    (root / "refcoco" / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "block"}]}))
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root, img


def _ref(ref_id, image_id, ann_id, *sents):
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": "train", "category_id": 1,
            "sentences": [{"raw": s, "sent_id": ref_id * 10 + k} for k, s in enumerate(sents)]}


def test_refer_quarantines_bad_refs_and_builds_the_rest(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in (1, 2)]
    anns = [{"id": 10 + i, "image_id": i, "category_id": 1, "segmentation": SQUARE} for i in (1, 2)]
    missing_key = {k: v for k, v in _ref(3, 2, 12, "x").items() if k != "sentences"}
    refs = [_ref(1, 1, 11, "the block"), _ref(2, 1, 11, "ok", "bad \udcff text"), missing_key,
            {"ref_id": 4, "split": "train"}, _ref(5, 2, 12, "the other block")]
    data_root, img = _refer(tmp_path, refs, images, anns)
    recs = {r.image_id: r for r in get_source("refcoco", data_root=data_root, image_root=img).records()}
    assert [t.ref_id for t in recs[1].targets] == [1] and [t.ref_id for t in recs[2].targets] == [5]
    (e,) = recs[1].errors
    assert e.ref_id == 2 and "sentence #1 (sent_id 21) is not valid Unicode" in e.reason
    (e,) = recs[2].errors
    assert e.ref_id == 3 and e.reason == "ref #2 lacks REFER key(s) ['sentences']"
    (e,) = recs[None].errors  # no image_id to file it under: kept, never dropped
    assert e.ref_id == 4 and e.reason.startswith("ref #3 lacks REFER key(s)")


def test_refer_files_symlinked_out_of_data_root_are_refused(tmp_path):
    images = [{"id": 1, "file_name": "1.png", "width": 64, "height": 48}]
    anns = [{"id": 11, "image_id": 1, "category_id": 1, "segmentation": SQUARE}]
    data_root, img = _refer(tmp_path / "outside", [_ref(1, 1, 11, "x")], images, anns)
    inner = tmp_path / "root"
    (inner / "refcoco").mkdir(parents=True)
    for name in ("instances.json", "refs(unc).p"):
        os.symlink(data_root / "refcoco" / name, inner / "refcoco" / name)
    with pytest.raises(ValueError, match=r"outside .*root; refusing to read it"):
        get_source("refcoco", data_root=inner, image_root=img)


def test_declared_size_is_checked_before_masks_are_decoded(tmp_path):
    from test_robust_input import make_coco
    ann = make_coco(tmp_path)
    src = get_source("coco", annotations=ann, image_root=tmp_path / "img")
    tracemalloc.start()
    recs = {r.image_id: r for r in src.records()}
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40e6  # no 30000x30000 (900 MB) or 9000x9000 (81 MB) mask was made
    assert recs[7].errors and not recs[7].targets and recs[8].errors and not recs[8].targets


def test_coco_entries_without_ids_are_quarantined_not_fatal(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_png(_scene()))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}, {"file_name": "b.png"}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "segmentation": SQUARE},
                        {"image_id": 1, "category_id": 1, "segmentation": SQUARE}, {"id": 6}],
        "categories": [{"id": 1, "name": "block"}]}))
    recs = list(get_source("coco", annotations=ann, image_root=tmp_path / "img").records())
    assert [r.image_id for r in recs] == [1, None]
    assert [t.ann_id for t in recs[0].targets] == [5]
    assert [e.reason for e in recs[0].errors] == ["annotations[1] lacks an int/str 'id' or 'image_id'"]
    assert sorted(e.reason for e in recs[1].errors) == [
        "annotations[2] lacks an int/str 'id' or 'image_id'", "images[1] has no int/str 'id'"]
