"""ReasonSeg on the real LISA JSONs (images drawn here: the fixture repo's JPEGs could not be copied)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from getok_data.config import load_config
from getok_data.dataset import Dataset
from getok_data.masks import rle_to_mask
from getok_data.sources import get_source
from getok_data.sources.reasonseg import reasonseg_mask
from getok_data.verify import verify_dir
from pipelines.build import run_build

RS = "imran7778__LLMSeg/dataset/reason_seg/ReasonSeg"
# (split, stem, width, height): sizes that hold every polygon (the JSONs carry no size)
IMAGES = [("val", "206674234_4cb520b13d_o", 700, 640), ("val", "2881277421_416273151c_o", 1100, 700),
          ("val", "scene0104_00_0", 320, 256), ("train", "10619389843_339d3c9434_o", 5184, 3456)]


@pytest.fixture
def rsroot(fixture_path, tmp_path) -> Path:
    src = fixture_path(RS)
    for split, stem, w, h in IMAGES:
        (tmp_path / split).mkdir(exist_ok=True)
        shutil.copy(src / split / f"{stem}.json", tmp_path / split / f"{stem}.json")
        data = json.loads((src / split / f"{stem}.json").read_text())
        label = reasonseg_mask(data["shapes"], h, w)
        canvas = np.full((h, w, 3), 190, np.uint8)
        canvas[label == 1] = (30, 60, 170)
        canvas[label == 255] = (30, 160, 60)
        cv2.imwrite(str(tmp_path / split / f"{stem}.jpg"), canvas)
    (tmp_path / "explanatory").mkdir()
    shutil.copy(src / "explanatory" / "train.EXCERPT.json", tmp_path / "explanatory" / "train.json")
    return tmp_path


def test_mask_follows_lisa_area_order_flag_and_ignore(fixture_path):
    data = json.loads((fixture_path(RS) / "val" / "scene0104_00_0.json").read_text())
    label = reasonseg_mask(data["shapes"], 256, 320)
    assert set(np.unique(label)) == {0, 1, 255}
    # the ignore polygon lies in the hole the target's outline traces: painted after (smaller), it wins
    ign = next(s for s in data["shapes"] if s["label"] == "ignore")
    cx, cy = np.mean(np.array(ign["points"]), axis=0).astype(int)
    assert label[cy, cx] == 255
    # the "flag" shape is skipped entirely
    flag = next(s for s in data["shapes"] if s["label"] == "flag")
    (x0, y0), (x1, y1) = np.array(flag["points"]).astype(int)
    assert not label[min(y0, y1):max(y0, y1) + 1, min(x0, x1):max(x0, x1) + 1].any()
    # area order, not list order: swapping two shapes changes nothing
    assert np.array_equal(reasonseg_mask(data["shapes"][::-1], 256, 320), label)


def test_source_records(rsroot):
    recs = list(get_source("reasonseg", data_root=rsroot).records())
    assert [(r.split, r.image_id) for r in recs] == [
        ("train", "10619389843_339d3c9434_o"), ("val", "206674234_4cb520b13d_o"),
        ("val", "2881277421_416273151c_o"), ("val", "scene0104_00_0")]
    train, monkey, cup, scene = recs
    assert not any(r.errors for r in recs) and (train.width, train.height) == (5184, 3456)
    (t,) = train.targets
    assert len(t.sentences) == 6 and t.extra["is_sentence"] is True and t.ignore_rle is None
    assert t.extra["explanation"].startswith("When eating a bowl of soup, a spoon")
    (m,) = monkey.targets
    assert m.extra == {"is_sentence": False} and m.sentences == ["something that the monkey uses to pierce its food"]
    target, ignore = rle_to_mask(m.mask_rle), rle_to_mask(m.ignore_rle)
    assert target.any() and ignore.any() and not (target & ignore).any()
    assert cup.targets[0].ignore_rle is None and cup.targets[0].box[1] == 0.0  # touches the top edge
    assert scene.targets[0].extra["is_sentence"] is True and scene.targets[0].ignore_rle is not None
    assert [r.image_id for r in get_source("reasonseg", data_root=rsroot, split="val", limit=2).records()] == [
        "206674234_4cb520b13d_o", "2881277421_416273151c_o"]
    with pytest.raises(ValueError, match="available"):
        get_source("reasonseg", data_root=rsroot, split="test")


def test_cp1252_json_and_missing_image_are_quarantined(rsroot):
    bad = rsroot / "val" / "zz_cp1252.json"
    text = json.dumps({"text": ["the caf\u00e9 sign"], "is_sentence": False,
                       "shapes": [{"label": "target", "points": [[1, 1], [30, 1], [30, 30]]}]})
    bad.write_bytes(text.encode("ascii").replace(b"\\u00e9", b"\xe9"))  # raw cp1252 byte, not UTF-8
    cv2.imwrite(str(rsroot / "val" / "zz_cp1252.jpg"), np.zeros((40, 40, 3), np.uint8))
    (rsroot / "val" / "zz_noimage.json").write_text(text)
    recs = {r.image_id: r for r in get_source("reasonseg", data_root=rsroot, split="val").records()}
    assert recs["zz_cp1252"].targets[0].sentences == ["the caf\u00e9 sign"]
    assert recs["zz_noimage"].errors[0].reason.startswith("missing image file")


def test_build_and_verify_val(rsroot, tmp_path):
    cfg = load_config(overrides={"source": {"name": "reasonseg", "data_root": str(rsroot), "split": "val"},
                                 "grid": {"n": 12}, "build": {"out": str(tmp_path / "out")}})
    summary = run_build(cfg, progress=False)
    assert summary["images_written"] == 3 and summary["errors"] == 0
    assert all(not r.problems for r in verify_dir(str(tmp_path / "out")))
    meta = {s.key: s.meta for s in Dataset(str(tmp_path / "out")).samples()}
    t = meta["reasonseg_val_206674234_4cb520b13d_o"]["targets"][0]
    assert t["is_sentence"] is False and "ignore_rle" in t and 0 < t["token_iou"] <= 1  # 4 small parts: low at n=12
    assert "ignore_rle" not in meta["reasonseg_val_2881277421_416273151c_o"]["targets"][0]
