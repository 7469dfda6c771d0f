"""REFER-layout sources: the real RefCOCOg subset, a real-pixel tree built from COCO, safe pickles."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import pytest
from PIL import Image

from getok_data.masks import rle_to_mask
from getok_data.sources import UnsafePickleError, get_source, safe_load

EMMA = "emma-heriot-watt__datasets/storage/fixtures"
MMPOSE = "open-mmlab__mmpose/tests/data/coco"
MMDET = "open-mmlab__mmdetection/tests/data/coco_dummy/annotations/instances_val2017.EXCERPT.json"


# ---------------------------------------------------------------- real RefCOCOg (umd) subset, no images
def test_real_refcocog_subset_without_images(fixture_path, tmp_path):
    root = fixture_path(EMMA)
    src = get_source("refcoco", data_root=root, image_root=tmp_path)  # folder holds only refs(umd).p
    d = src.describe()
    assert d["split_by"] == "umd" and "refs(unc).p not found" in d["split_by_note"]
    recs = list(src.records())
    assert len(recs) == 15
    assert [(r.split, r.image_id) for r in recs] == sorted((r.split, r.image_id) for r in recs)
    assert {r.split for r in recs} == {"train", "val", "test"}
    targets = [t for r in recs for t in r.targets]
    assert len(targets) == 15 and sum(len(t.sentences) for t in targets) == 28
    for r in recs:
        assert r.image_path is None and r.image_bytes is None
        assert len(r.errors) == 1
        e = r.errors[0]
        assert e.reason.startswith("missing image file:") and e.ann_id is None and e.stage == "source"
        assert (e.source, e.split, e.image_id) == ("refcoco", r.split, r.image_id)
        assert r.key.startswith(f"refcoco_{r.split}_")
        for t in r.targets:
            m = rle_to_mask(t.mask_rle)
            assert m.shape == (r.height, r.width) and m.any()
            assert t.target_id == f"ref{t.ref_id}" and len(t.sent_ids) == len(t.sentences)
            x0, y0, x1, y1 = t.box
            assert 0 <= x0 < x1 <= r.width and 0 <= y0 < y1 <= r.height
    by_ref = {t.ref_id: t for t in targets}
    assert by_ref[40373].sentences[1] == "a woman wearing black dress"
    assert by_ref[40373].sent_ids == [91981, 91982] and by_ref[40373].category == "person"
    assert any(s == "The chair which is above the dog" for t in targets for s in t.sentences)  # raw, not sent
    assert by_ref[29181].ann_id == 2134523  # the 2-part polygon decodes
    # same data through refcocog with dataset_dir, split filter and limit
    val = list(get_source("refcocog", data_root=root, image_root=tmp_path, dataset_dir="refcoco", split="val").records())
    assert len(val) == 5 and {r.split for r in val} == {"val"}
    assert len(list(get_source("refcoco", data_root=root, image_root=tmp_path, limit=3).records())) == 3
    with pytest.raises(FileNotFoundError, match=r"refs\(google\)\.p"):
        get_source("refcoco", data_root=root, image_root=tmp_path, split_by="google")
    with pytest.raises(ValueError, match="testA"):
        list(get_source("refcoco", data_root=root, image_root=tmp_path, split="testA").records())


# ---------------------------------------------------------------- a REFER tree with real pixels
def _ref(ref_id, ann_id, image_id, split, *sents):
    sentences = [{"raw": s, "sent": s.lower(), "sent_id": ref_id * 10 + i, "tokens": s.split()} for i, s in enumerate(sents)]
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
            "sentences": sentences, "sent_ids": [s["sent_id"] for s in sentences],
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg"}


@pytest.fixture
def refer_tree(fixture_path, tmp_path):
    coco = json.loads(fixture_path(f"{MMPOSE}/test_coco.json").read_text())
    crowd = next(a for a in json.loads(fixture_path(MMDET).read_text())["annotations"] if a["iscrowd"])
    data_root = tmp_path / "refer"
    image_root = data_root / "images/mscoco/images/train2014"
    image_root.mkdir(parents=True)
    (data_root / "refcoco").mkdir()
    for img in coco["images"]:
        shutil.copy(fixture_path(f"{MMPOSE}/{img['file_name']}"), image_root / f"COCO_train2014_{img['id']:012d}.jpg")
        img["file_name"] = f"COCO_train2014_{img['id']:012d}.jpg"
    jpg = image_root / "COCO_train2014_000000000785.jpg"
    outside = data_root / "images/mscoco/images/secret.jpg"  # a real file just outside image_root
    shutil.copy(jpg, outside)
    (image_root / "link.jpg").symlink_to(outside)
    with Image.open(jpg) as im:  # crowd's image: the sources check the header's size (427x640)
        im.resize((640, 427)).save(image_root / "COCO_train2014_000000255917.jpg", quality=90)
    coco["images"] += [
        {"id": 255917, "file_name": "COCO_train2014_000000255917.jpg", "height": 427, "width": 640},
        {"id": 901, "file_name": "../secret.jpg", "height": 425, "width": 640},
        {"id": 902, "file_name": str(outside), "height": 425, "width": 640},
        {"id": 903, "file_name": "link.jpg", "height": 425, "width": 640},
        {"id": 904, "file_name": "COCO_train2014_000000000785.jpg", "height": 0, "width": 640},
    ]
    square = [[10, 10, 60, 10, 60, 60, 10, 60]]
    extra = [
        dict(crowd, category_id=1),  # id 900300255917, uncompressed RLE on image 255917
        dict(crowd, id=7001, image_id=785, category_id=1),  # RLE size 427x640 on a 425x640 image
        {"id": 7002, "image_id": 40083, "category_id": 1, "iscrowd": 0, "segmentation": [[10, 10, 20, 20]]},
        {"id": 7003, "image_id": 40083, "category_id": 1, "iscrowd": 0, "segmentation": [[700, 10, 760, 10, 760, 60]]},
        {"id": 7004, "image_id": 40083, "category_id": 1, "iscrowd": 0, "segmentation": {"counts": "??", "size": [333, 500]}},
    ] + [{"id": 7101 + k, "image_id": i, "category_id": 1, "iscrowd": 0, "segmentation": square}
         for k, i in enumerate((901, 902, 903, 904))]
    coco["annotations"] += extra
    (data_root / "refcoco/instances.json").write_text(json.dumps(coco))
    refs = [
        _ref(1, 442619, 785, "train", "Person on the left", "  the man  "),
        _ref(2, 198196, 40083, "train", "person on the left"),
        _ref(3, 198196, 40083, "train", "left person again"),  # a second ref to the same ann
        _ref(4, 1202706, 40083, "train", "thin person"),
        _ref(5, 7002, 40083, "train", "degenerate"),
        _ref(6, 7003, 40083, "train", "outside"),
        _ref(7, 7004, 40083, "train", "malformed"),
        _ref(8, 123456789, 40083, "train", "dangling"),
        _ref(9, 460541, 196141, "val", "person in the middle"),
        _ref(10, 508900, 196141, "val", "tiny person"),
        _ref(11, 467657, 197388, "testA", "four-part person"),
        _ref(12, 543117, 197388, "testB", "person at the edge"),
        _ref(13, 900300255917, 255917, "testA", "the crowd"),
        _ref(14, 7001, 785, "train", "crowd of wrong size"),
        _ref(15, 7101, 901, "train", "traversal"),
        _ref(16, 7102, 902, "train", "absolute"),
        _ref(17, 7103, 903, "train", "symlink"),
        _ref(18, 7104, 904, "train", "zero height"),
        _ref(19, 442619, 424242, "val", "unknown image"),
    ]
    with open(data_root / "refcoco/refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    return data_root, image_root


def test_refer_tree_with_real_images_and_every_error_kind(refer_tree):
    data_root, image_root = refer_tree
    src = get_source("refcoco", data_root=data_root, image_root=image_root)
    assert src.describe()["split_by"] == "unc" and src.describe()["split_by_note"] == ""
    recs = {(r.split, r.image_id): r for r in src.records()}
    assert list(recs) == sorted(recs, key=lambda k: (k[0], k[1]))
    good = {k: sorted(t.ref_id for t in r.targets) for k, r in recs.items()}
    assert good == {
        ("testA", 197388): [11], ("testA", 255917): [13], ("testB", 197388): [12],
        ("train", 785): [1], ("train", 901): [15], ("train", 902): [16], ("train", 903): [17],
        ("train", 904): [], ("train", 40083): [2, 3, 4], ("val", 196141): [9, 10], ("val", 424242): [],
    }
    errors = {(e.image_id, e.ann_id, e.ref_id): e.reason for r in recs.values() for e in r.errors}
    assert errors[(40083, 7002, 5)].startswith("bad segmentation: degenerate polygon")
    assert errors[(40083, 7003, 6)] == "mask entirely outside the image"
    assert errors[(40083, 7004, 7)].startswith("bad segmentation:")
    assert "not found in instances.json" in errors[(40083, 123456789, 8)]
    assert "differs from the image size" in errors[(785, 7001, 14)]
    for image_id in (901, 902, 903):
        assert errors[(image_id, None, None)].startswith("image path escapes --image-root")
    assert errors[(904, None, None)].startswith("invalid image size")
    assert errors[(424242, None, None)].startswith("unknown image_id")
    assert len(errors) == 10 and all(r.errors[0].split == r.split for r in recs.values() if r.errors)
    for key in [("train", 785), ("train", 40083), ("val", 196141), ("testA", 255917)]:
        r = recs[key]
        assert r.image_path and Path(r.image_path).is_file()
        assert Path(r.image_path).parent == image_root.resolve()
    for key in [("train", 901), ("train", 902), ("train", 903), ("train", 904), ("val", 424242)]:
        assert recs[key].image_path is None and recs[key].image_bytes is None
    t1 = recs[("train", 785)].targets[0]
    assert t1.sentences == ["Person on the left", "the man"] and t1.sent_ids == [10, 11]
    two = recs[("train", 40083)].targets
    assert two[0].ann_id == two[1].ann_id == 198196 and two[0].mask_rle == two[1].mask_rle
    assert {t.target_id for t in two} == {"ref2", "ref3", "ref4"}
    crowd = recs[("testA", 255917)].targets[0]
    assert rle_to_mask(crowd.mask_rle).sum() == 3386 and crowd.category == "person"
    assert list(r.split for r in get_source("refcoco", data_root=data_root, image_root=image_root,
                                            split="testA").records()) == ["testA", "testA"]


# ---------------------------------------------------------------- pickles
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickle_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, _Evil(marker)], protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system|nt\.system") as exc:
        safe_load(path)
    assert str(path) in str(exc.value)
    assert not marker.exists()
    # and through the source
    (tmp_path / "refcoco").mkdir()
    shutil.move(path, tmp_path / "refcoco/refs(unc).p")
    (tmp_path / "refcoco/instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(UnsafePickleError):
        list(get_source("refcoco", data_root=tmp_path, image_root=tmp_path).records())
    assert not marker.exists()


def _py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2 cPickle writes it: str values are 8-bit BINSTRINGs."""
    out = bytearray(b"\x80\x02")

    def put(o):
        if isinstance(o, bool) or o is None:
            raise TypeError(o)
        if isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, str):
            raw = o.encode("utf-8")
            out.extend((b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<I", len(raw))) + raw)
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                put(v)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                put(k)
                put(v)
            out.extend(b"u")

    put(obj)
    return bytes(out + b".")


def test_python2_pickle_with_utf8_bytes(tmp_path):
    refs = [_ref(5, 11, 22, "train", "the café chair", "plain ascii")]
    path = tmp_path / "refs(unc).p"
    path.write_bytes(_py2_pickle(refs))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # the default ASCII decoding fails on it
    loaded = safe_load(path)
    assert loaded == refs and isinstance(loaded[0]["sentences"][0]["raw"], str)


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"ref_id": 1}, "expected a list"),
        ([{"ref_id": 1, "ann_id": 2, "image_id": 3, "split": "train", "sentences": []}, 5], "ref #1 is a int"),
        ([{"ref_id": 1, "ann_id": 2, "image_id": 3, "split": "train"}], r"ref #0 lacks REFER key\(s\) \['sentences'\]"),
        ([{"ref_id": 1, "ann_id": [2, 3], "image_id": 3, "split": "train", "sentences": []}], "gRefCOCO"),
        ([{"ref_id": 1, "ann_id": 2, "image_id": 3, "split": "train", "sentences": ["x"]}], "list of dicts"),
    ],
)
def test_safe_load_validates_refer_shape(tmp_path, payload, match):
    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match=match) as exc:
        safe_load(path)
    assert str(path) in str(exc.value)


def test_corrupt_pickle_and_bad_options(tmp_path):
    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(ValueError, match="not a readable pickle"):
        safe_load(path)
    (tmp_path / "refcoco").mkdir()
    with pytest.raises(TypeError, match=r"'annotations'.*'size'"):
        get_source("refcoco", data_root=tmp_path, image_root=tmp_path, annotations="x", size=3)
    with pytest.raises(ValueError, match="dataset_dir"):
        get_source("refcoco", data_root=tmp_path / "refcoco", image_root=tmp_path, dataset_dir="..")
    with pytest.raises(ValueError, match="unknown source"):
        get_source("refclef")
