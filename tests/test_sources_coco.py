"""The COCO instances / person-keypoints source."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from getok_data.masks import rle_to_mask
from getok_data.sources import get_source

MMPOSE = "open-mmlab__mmpose/tests/data/coco"
MMDET = "open-mmlab__mmdetection/tests/data/coco_dummy/annotations/instances_val2017.EXCERPT.json"


def test_mmpose_coco_with_images_and_keypoints(fixture_path):
    root = fixture_path(MMPOSE)
    src = get_source("coco", annotations=root / "test_coco.json", image_root=root)
    assert src.describe()["split"] == "train" and src.describe()["include_crowd"] is True
    recs = list(src.records())
    assert [r.image_id for r in recs] == [785, 40083, 196141, 197388]
    assert sum(len(r.targets) for r in recs) == 14
    coco = json.loads((root / "test_coco.json").read_text())
    anns = {a["id"]: a for a in coco["annotations"]}
    names = coco["categories"][0]["keypoints"]
    for r in recs:
        assert not r.errors and Path(r.image_path).is_file() and r.image_bytes is None
        assert r.image_ext == "jpg" and r.key == f"coco_train_{r.image_id}"
        for t in r.targets:
            a = anns[t.ann_id]
            assert t.target_id == f"ann{t.ann_id}" and t.sentences == ["person"] and t.category == "person"
            m = rle_to_mask(t.mask_rle)
            assert m.shape == (r.height, r.width)
            x, y, w, h = a["bbox"]
            assert all(abs(p - q) <= 1.5 for p, q in zip(t.box, [x, y, x + w, y + h])), (t.box, a["bbox"])
            if a["num_keypoints"] > 0:
                assert t.keypoint_names == names and len(t.keypoints) == 17
                assert t.keypoints[0] == [float(v) for v in a["keypoints"][:3]]
            else:
                assert t.keypoints is None and t.keypoint_names is None
    assert {t.ann_id for r in recs for t in r.targets if t.keypoints is None} == {1202706, 508900}
    limited = list(get_source("coco", annotations=root / "test_coco.json", image_root=root, split="val2017", limit=2).records())
    assert [r.key for r in limited] == ["coco_val2017_785", "coco_val2017_40083"]


def test_mmdet_excerpt_missing_images_and_crowd_policy(fixture_path, tmp_path):
    ann = fixture_path(MMDET)
    recs = list(get_source("coco", annotations=ann, image_root=tmp_path).records())
    assert [r.image_id for r in recs] == [139, 255917]
    for r in recs:
        assert r.image_path is None and [e.ann_id for e in r.errors] == [None]
        # named as the annotations give it, so errors.jsonl does not depend on the machine
        assert r.errors[0].reason == f"missing image file: {r.image_id:012d}.jpg (under --image-root)"
    crowd = next(t for t in recs[1].targets if t.ann_id == 900300255917)
    assert crowd.category == "car" and rle_to_mask(crowd.mask_rle).sum() == 3386
    no_crowd = list(get_source("coco", annotations=ann, image_root=tmp_path, include_crowd=False).records())
    assert [t.ann_id for t in no_crowd[1].targets] == [403418] and len(no_crowd[1].errors) == 1


def test_quarantine_in_a_handmade_coco_file(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img/a.jpg").write_bytes(b"not decoded by the source")
    sq = [[1, 1, 9, 1, 9, 9, 1, 9]]
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 20, "height": 10},
            {"id": 2, "file_name": "a.jpg", "width": "20", "height": 10},
            {"id": 3, "file_name": "a.jpg", "width": 20, "height": 10},  # no annotations: skipped
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 5, "segmentation": sq},
            {"id": 11, "image_id": 1, "category_id": 99, "segmentation": sq},
            {"id": 12, "image_id": 1, "category_id": 5, "segmentation": []},
            {"id": 13, "image_id": 1, "category_id": 5, "segmentation": sq, "keypoints": [1, 2], "num_keypoints": 1},
            {"id": 14, "image_id": 2, "category_id": 5, "segmentation": sq},
            {"id": 15, "image_id": 77, "category_id": 5, "segmentation": sq},
        ],
        "categories": [{"id": 5, "name": "dog"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    recs = {r.image_id: r for r in get_source("coco", annotations=path, image_root=tmp_path / "img").records()}
    assert list(recs) == [1, 2, 77]
    assert [t.ann_id for t in recs[1].targets] == [10] and recs[1].image_path.endswith("a.jpg")
    reasons = {e.ann_id: e.reason for e in recs[1].errors}
    assert reasons[11] == "unknown category_id 99"
    assert reasons[12] == "bad segmentation: empty segmentation"
    assert reasons[13].startswith("malformed keypoints")
    assert recs[2].errors[0].reason.startswith("invalid image size") and not recs[2].targets
    assert recs[77].errors[0].reason.startswith("unknown image_id") and "15" in recs[77].errors[0].detail


def test_bad_files_and_options(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": {}}')
    with pytest.raises(ValueError, match="'images' must be a list"):
        list(get_source("coco", annotations=path, image_root=tmp_path).records())
    with pytest.raises(FileNotFoundError):
        get_source("coco", annotations=tmp_path / "nope.json", image_root=tmp_path)
    with pytest.raises(TypeError, match="data_root"):
        get_source("coco", annotations=path, image_root=tmp_path, data_root=tmp_path)
