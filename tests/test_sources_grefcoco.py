"""gRefCOCO: multi-target refs (union + per-instance masks) and no-target refs (<seg></seg>), built
from the real fixtures: ReLA's instances excerpt and the real no-target ref 135 of gRefCOCO issue 12."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from getok_data.config import load_config
from getok_data.dataset import Dataset
from getok_data.decode import TableDecoder, grid_for
from getok_data.masks import rle_to_mask, segmentation_to_mask
from getok_data.rewards import score_grid_answer
from getok_data.sources import get_source
from getok_data.verify import verify_dir
from pipelines.build import run_build

INSTANCES = "henghuiding__ReLA/datasets/instances_sample.json"
NO_TARGET_REF = "henghuiding__gRefCOCO/issues/12/ref_135.ISSUE-QUOTE.json"
# The excerpt keeps categories 1-3 only; its annotations use 18, 62, 63 (COCO: dog, chair, couch).
MISSING_CATS = [{"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}, {"id": 63, "name": "couch"}]


def _ref(ref_id: int, image_id: int, ann_ids: list[int], text: str, split: str = "val") -> dict:
    return {"ref_id": ref_id, "image_id": image_id, "ann_id": ann_ids, "category_id": [0] * len(ann_ids),
            "split": split, "no_target": ann_ids == [-1], "file_name": f"COCO_train2014_{image_id:012d}_{ann_ids[0]}.jpg",
            "sent_ids": [ref_id * 10], "sentences": [{"raw": text, "sent": text, "sent_id": ref_id * 10, "tokens": []}]}


@pytest.fixture
def groot(fixture_path, tmp_path) -> Path:
    """A gRefCOCO layout: the real instances excerpt (+ the categories it lacks, + image 909 of
    the real no-target ref), a multi-target and a single-target ref, and drawn images."""
    inst = json.loads(fixture_path(INSTANCES).read_text())
    inst["images"].append({"id": 909, "file_name": "COCO_train2014_000000000909.jpg", "width": 320, "height": 240})
    inst["categories"] += MISSING_CATS
    no_target = json.loads(fixture_path(NO_TARGET_REF).read_text())
    refs = [no_target, _ref(500, 98304, [3007, 99893], "the dog and the couch"), _ref(501, 98304, [108703], "the chair"),
            _ref(502, 98304, [3007], "")]  # no sentence: quarantined
    (tmp_path / "grefcoco").mkdir()
    (tmp_path / "grefcoco" / "instances.json").write_text(json.dumps(inst))
    (tmp_path / "grefcoco" / "grefs(unc).json").write_text(json.dumps(refs))
    images = tmp_path / "images" / "train2014"
    images.mkdir(parents=True)
    for im in inst["images"]:
        if im["id"] not in (909, 98304):
            continue
        canvas = np.full((im["height"], im["width"], 3), 200, np.uint8)
        for k, a in enumerate(a for a in inst["annotations"] if a["image_id"] == im["id"]):
            m = segmentation_to_mask(a["segmentation"], im["height"], im["width"])
            canvas[m] = [(40, 90, 160), (160, 40, 40), (30, 150, 60)][k % 3]
        cv2.imwrite(str(images / im["file_name"]), canvas)
    return tmp_path


def test_source_multi_and_no_target(groot):
    recs = list(get_source("grefcoco", data_root=groot).records())
    assert [(r.split, r.image_id) for r in recs] == [("val", 909), ("val", 98304)]
    (nt,) = recs[0].targets
    assert nt.no_target and nt.ann_id == [-1] and nt.target_id == "ref135"
    assert nt.sentences == ["the b;ack keyboard in front of the computer on the table"]  # the typo is real data
    assert not rle_to_mask(nt.mask_rle).any() and rle_to_mask(nt.mask_rle).shape == (240, 320)
    multi, single = recs[1].targets
    inst = json.loads((groot / "grefcoco" / "instances.json").read_text())
    anns = {a["id"]: a for a in inst["annotations"]}
    masks = {i: segmentation_to_mask(anns[i]["segmentation"], 424, 640) for i in anns}
    assert multi.ann_id == [3007, 99893] and multi.category == "dog, couch"
    assert np.array_equal(rle_to_mask(multi.mask_rle), masks[3007] | masks[99893])
    assert [i["ann_id"] for i in multi.instances] == [3007, 99893]
    for i in multi.instances:
        assert np.array_equal(rle_to_mask(i["mask_rle"]), masks[i["ann_id"]])
    assert single.ann_id == [108703] and single.category == "chair" and len(single.instances) == 1
    assert [(e.ref_id, e.reason) for e in recs[1].errors] == [(502, "ref has no non-empty sentence")]
    with pytest.raises(ValueError, match="available"):
        list(get_source("grefcoco", data_root=groot, split="testA").records())


def test_source_quarantines_unknown_category_of_the_raw_excerpt(fixture_path, tmp_path):
    """The excerpt as it is (categories 18/62/63 missing): the refs are quarantined, named."""
    (tmp_path / "grefcoco").mkdir()
    (tmp_path / "grefcoco" / "instances.json").write_bytes(fixture_path(INSTANCES).read_bytes())
    (tmp_path / "grefcoco" / "grefs(unc).json").write_text(json.dumps([_ref(7, 98304, [3007, 99893], "x")]))
    (tmp_path / "img").mkdir()
    (rec,) = get_source("grefcoco", data_root=tmp_path, image_root=tmp_path / "img").records()
    assert not rec.targets
    reasons = [e.reason for e in rec.errors]
    assert "unknown category_id 18 of ann 3007" in reasons and any("missing image file" in r for r in reasons)


def test_build_verify_and_reward_no_target(groot, tmp_path):
    cfg = load_config(overrides={"source": {"name": "grefcoco", "data_root": str(groot)}, "grid": {"n": 8},
                                 "build": {"out": str(tmp_path / "out")}})
    summary = run_build(cfg, progress=False)
    assert summary["targets"] == 3 and summary["targets_no_target"] == 1 and summary["errors"] == 1
    assert all(not r.problems for r in verify_dir(str(tmp_path / "out")))
    samples = {s.key: s for s in Dataset(str(tmp_path / "out")).samples()}
    t = samples["grefcoco_val_909"].meta["targets"][0]
    assert t["no_target"] is True and t["tokens"] == {"point": None, "box": None, "seg": "<seg></seg>"}
    assert t["anchors"] == [] and t["token_iou"] == 1.0 and t["regions"] == "F" * 64 and t["offsets"] == "9" * 64
    assert t["refine"] and all(r["answer"].count("<DELETE>") == r["prompt"].count("<grid_") for r in t["refine"])
    meta = samples["grefcoco_val_909"].meta
    dec = TableDecoder(samples["grefcoco_val_909"].table, 8, meta["grid"]["m"])
    right = score_grid_answer("<seg></seg>", t, dec, grid_for(meta), "seg")
    wrong = score_grid_answer("<seg><grid_3_3></seg>", t, dec, grid_for(meta), "seg")
    assert right["format"] == 1.0 and right["mask_iou"] == 2.0 and wrong["mask_iou"] == 0.0
    multi = next(x for x in samples["grefcoco_val_98304"].meta["targets"] if x["ref_id"] == 500)
    assert multi["ann_id"] == [3007, 99893] and len(multi["instances"]) == 2 and "no_target" not in multi
    assert multi["token_iou"] > 0.5 and multi["tokens"]["seg"].count("<grid_") == multi["token_count"]


def test_trl_rewards_read_the_optional_no_target_column(groot, tmp_path):
    from getok_data.rewards.trl import mask_iou_reward
    from getok_data.dataset import npz_bytes

    cfg = load_config(overrides={"source": {"name": "grefcoco", "data_root": str(groot), "limit": 1},
                                 "grid": {"n": 8}, "build": {"out": str(tmp_path / "out")}})
    run_build(cfg, progress=False)
    (s,) = Dataset(str(tmp_path / "out")).samples()
    t = s.meta["targets"][0]
    (tmp_path / "t.npz").write_bytes(npz_bytes(s.table))
    cols = {"stage": ["grid"] * 2, "task": ["seg"] * 2, "grid_n": [8] * 2, "grid_m": [16] * 2,
            "width": [s.meta["width"]] * 2, "height": [s.meta["height"]] * 2, "gt_box": [t["box"]] * 2,
            "gt_mask_rle": [t["mask_rle"]] * 2, "cand_npz": [str(tmp_path / "t.npz")] * 2, "previous": [""] * 2,
            "regions": [t["regions"]] * 2, "offsets": [t["offsets"]] * 2}
    answers = ["<seg></seg>", "<seg><grid_2_2></seg>"]
    assert mask_iou_reward(completions=answers, **cols, no_target=[True, True]) == [2.0, 0.0]
    assert mask_iou_reward(completions=answers, **cols) == [0.0, 0.0]  # without the column: no credit


def test_multi_target_refs_gain_points_and_boxes(groot, tmp_path):
    """A multi-target ref names each instance (one group per instance, on its own mask); a no-target
    ref's answer is the empty <point></point> / <box></box>; a single-target ref names itself."""
    from getok_data.export.registry import run_export
    from getok_data.tokens import Grid
    from getok_data.tokens.answers import parse_instances

    cfg = load_config(overrides={"source": {"name": "grefcoco", "data_root": str(groot)}, "grid": {"n": 16},
                                 "build": {"out": str(tmp_path / "out")}})
    run_build(cfg, progress=False)
    run_export("trl", str(tmp_path / "out"), tmp_path / "p.jsonl", tasks=("points", "boxes"))
    rows = {r["id"].split("/", 1)[1]: r for r in map(json.loads, (tmp_path / "p.jsonl").read_text().splitlines())}
    assert rows["ref135/0/points"]["solution"] == "<point></point>" and rows["ref135/0/boxes"]["solution"] == "<box></box>"
    targets = {t["target_id"]: t for s in Dataset(str(tmp_path / "out")).samples() for t in s.meta["targets"]}
    grid = Grid(16, 640, 424)
    multi = parse_instances(rows["ref500/0/points"]["solution"], 16, "points")
    masks = [rle_to_mask(i["mask_rle"]) for i in targets["ref500"]["instances"]]
    assert len(multi) == 2
    # the couch holds anchors: its point lies on it; the dog (196 px) holds none at n=16: its point
    # is the cell of its deepest pixel, the single <point> answer's rule
    from getok_data.labelling import deepest_anchor

    on = [[bool(m[round(grid.anchor(*p.anchor)[1]), round(grid.anchor(*p.anchor)[0])]) for m in masks] for p in multi]
    dog, couch = masks
    assert dog.sum() == 196 and sum(row[1] for row in on) == 1
    assert deepest_anchor(dog, grid) in [p.anchor for p in multi]
    assert len(parse_instances(rows["ref500/0/boxes"]["solution"], 16, "boxes")) == 2
    (single,) = parse_instances(rows["ref501/0/points"]["solution"], 16, "points")
    x, y = grid.anchor(*single.anchor)
    assert rle_to_mask(targets["ref501"]["mask_rle"])[round(y), round(x)]
    assert rows["ref501/0/boxes"]["solution"] == targets["ref501"]["tokens"]["box"]
