"""Hugging Face parquet / arrow sources: a parquet made here from the real mmpose COCO fixture (4
images embedded) builds the same samples as the COCO source; the presets read their layouts."""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from getok_data.config import load_config
from getok_data.dataset import Dataset
from getok_data.masks import rle_to_mask, segmentation_to_mask
from getok_data.sources import get_source
from getok_data.sources.hf import parse_columns
from getok_data.verify import verify_dir
from pipelines.build import run_build

MMPOSE = "open-mmlab__mmpose/tests/data/coco"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # the datasets Image feature


def _coco_rows(root: Path) -> tuple[dict, list[dict]]:
    coco = json.loads((root / "test_coco.json").read_text())
    for a in coco["annotations"]:  # boxes and masks only: keypoints are not what this compares
        a.pop("keypoints", None)
        a["num_keypoints"] = 0
    images = {im["id"]: im for im in coco["images"]}
    rows = [{"image": {"bytes": (root / images[a["image_id"]]["file_name"]).read_bytes(), "path": None},
             "text": ["person"], "polygon": a["segmentation"], "image_id": a["image_id"], "ann_id": a["id"],
             "category": "person"} for a in coco["annotations"]]
    random.Random(0).shuffle(rows)  # the source sorts; file order must not matter
    return coco, rows


def _write_parquet(path: Path, rows: list[dict], row_group_size: int = 4) -> None:
    schema = pa.schema([("image", IMAGE), ("text", pa.list_(pa.string())), ("polygon", pa.list_(pa.list_(pa.float64()))),
                        ("image_id", pa.int64()), ("ann_id", pa.int64()), ("category", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)


def _strip(meta: dict) -> dict:
    """Everything but the key, the source name and the proposals drawn with a key-seeded generator."""
    targets = [dict(t, refine=[r for r in t["refine"] if r["origin"] != "sampled"]) for t in meta["targets"]]
    return {**{k: v for k, v in meta.items() if k not in ("key", "source")}, "targets": targets}


def test_parquet_builds_the_same_samples_as_the_coco_source(fixture_path, tmp_path):
    root = fixture_path(MMPOSE)
    coco, rows = _coco_rows(root)
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    _write_parquet(tmp_path / "train-00000-of-00001.parquet", rows)
    assert pq.ParquetFile(tmp_path / "train-00000-of-00001.parquet").num_row_groups == 4
    out = {}
    for name, source in (("coco", {"name": "coco", "annotations": str(tmp_path / "ann.json"), "image_root": str(root)}),
                         ("hf", {"name": "hf", "data_files": str(tmp_path / "*.parquet"),
                                 "columns": "image=image,text=text,polygon=polygon,image_id=image_id,ann_id=ann_id,"
                                            "category=category"})):
        cfg = load_config(overrides={"source": source, "grid": {"n": 8}, "build": {"out": str(tmp_path / name)}})
        assert run_build(cfg, progress=False)["targets"] == 14
        assert all(not r.problems for r in verify_dir(str(tmp_path / name)))
        out[name] = list(Dataset(str(tmp_path / name)).samples())
    assert [s.key for s in out["hf"]] == [f"hf_train_{i}" for i in (785, 40083, 196141, 197388)]
    for a, b in zip(out["coco"], out["hf"]):
        assert _strip(a.meta) == _strip(b.meta)
        assert a.image == b.image and a.image_ext == b.image_ext == "jpg"
        assert all(np.array_equal(a.table[k], b.table[k]) for k in a.table)


def test_save_to_disk_folder_is_read_without_datasets_at_run_time(fixture_path, tmp_path):
    datasets = pytest.importorskip("datasets")
    root = fixture_path(MMPOSE)
    _, rows = _coco_rows(root)
    rows = [r for r in rows if r["image_id"] == 785]
    ds = datasets.Dataset.from_list(rows)
    datasets.DatasetDict({"val": ds}).save_to_disk(str(tmp_path / "saved"))
    cols = "image=image,text=text,polygon=polygon,image_id=image_id,ann_id=ann_id"
    recs = list(get_source("hf", data_files=str(tmp_path / "saved"), columns=cols).records())
    assert [(r.split, r.image_id, len(r.targets)) for r in recs] == [("val", 785, len(rows))]
    assert recs[0].targets[0].category == "person"  # no category column: the first text


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_lmms_refcoco_preset_flat_polygon_and_expressions(tmp_path):
    rows = [{"question_id": "1001", "image": {"bytes": _png(40, 30), "path": None}, "question": "q",
             "answer": ["left man", "man on the left"], "segmentation": [2.0, 2.0, 20.0, 2.0, 20.0, 20.0, 2.0, 20.0],
             "bbox": [2.0, 2.0, 18.0, 18.0], "iscrowd": 0, "file_name": "COCO_train2014_000000000001.jpg"},
            {"question_id": "1002", "image": {"bytes": _png(40, 30), "path": None}, "question": "q",
             "answer": ["nothing drawable"], "segmentation": None, "bbox": [30.0, 5.0, 5.0, 5.0], "iscrowd": 0,
             "file_name": "COCO_train2014_000000000001.jpg"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "testA-00000-of-00001.parquet")
    (rec,) = get_source("hf", data_files=str(tmp_path / "testA-00000-of-00001.parquet"), preset="lmms-refcoco").records()
    assert rec.split == "testA" and rec.image_ext == "jpg" and (rec.width, rec.height) == (40, 30)
    poly, box = rec.targets
    assert poly.target_id == "ann1001" and poly.sentences == ["left man", "man on the left"]
    assert np.array_equal(rle_to_mask(poly.mask_rle), segmentation_to_mask([rows[0]["segmentation"]], 30, 40))
    assert box.box == [30.0, 5.0, 35.0, 10.0]  # no polygon: the xywh box, filled


def test_visionreasoner_preset_bool_mask(tmp_path):
    mask = np.zeros((30, 40), bool)
    mask[5:15, 10:30] = True
    rows = [{"image": {"bytes": _png(40, 30), "path": None}, "text": "the thing", "mask": mask.tolist(),
             "image_id": "abc", "ann_id": "7", "img_height": 30, "img_width": 40, "bbox": [10, 5, 30, 15]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test-00000-of-00001.parquet")
    (rec,) = get_source("hf", data_files=str(tmp_path / "*.parquet"), preset="visionreasoner").records()
    (t,) = rec.targets
    assert rec.key == "hf_test_abc" and np.array_equal(rle_to_mask(t.mask_rle), mask) and t.box == [10.0, 5.0, 30.0, 15.0]


def test_column_map_errors_are_one_line_and_named(tmp_path):
    with pytest.raises(ValueError, match="unknown hf preset"):
        parse_columns(None, "nope")
    with pytest.raises(ValueError, match="needs one of mask="):
        parse_columns("image=a,text=b", None)
    with pytest.raises(ValueError, match="unknown --columns role 'colour'"):
        parse_columns("image=a,text=b,bbox=c,colour=d", None)
    pq.write_table(pa.Table.from_pylist([{"img": b"x", "t": "y"}]), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"column\(s\) \['bbox'\] not in the file"):
        list(get_source("hf", data_files=str(tmp_path / "a.parquet"), columns="image=img,text=t,bbox=bbox").records())


def test_cli_build_hf_with_preset_and_min_token_iou(tmp_path):
    from click.testing import CliRunner

    from getok_data.cli import main

    mask = np.zeros((48, 64), bool)
    mask[8:40, 8:56] = True
    img = np.full((48, 64, 3), 200, np.uint8)
    img[mask] = (20, 40, 160)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    rows = [{"image": {"bytes": buf.getvalue(), "path": None}, "text": "the blue box", "mask": mask.tolist(),
             "image_id": "a1", "ann_id": "1", "bbox": [8, 8, 56, 40]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test-00000-of-00001.parquet")
    res = CliRunner().invoke(main, ["build", "--src", "hf", "--data-files", str(tmp_path / "*.parquet"),
                                    "--preset", "visionreasoner", "--columns", "bbox_format=xyxy", "--grid", "8",
                                    "--min-token-iou", "1.0", "--out", str(tmp_path / "o"), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    (s,) = Dataset(str(tmp_path / "o")).samples()
    (t,) = s.meta["targets"]
    assert s.key == "hf_test_a1" and s.image_ext == "png" and s.meta["selection"]["min_token_iou"] == 1.0
    assert summary["targets_low_quality"] == int(t["token_iou"] < 1.0) == int(bool(t.get("low_quality")))
    assert CliRunner().invoke(main, ["verify", str(tmp_path / "o")]).exit_code == 0


def test_mask_as_png_and_polygon_as_json_string(tmp_path):
    mask = np.zeros((30, 40), bool)
    mask[3:12, 4:20] = True
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    poly = [[25.0, 15.0, 38.0, 15.0, 38.0, 28.0, 25.0, 28.0]]
    rows = [{"img": _png(40, 30), "t": "a", "m": buf.getvalue(), "p": None, "id": 1},
            {"img": _png(40, 30), "t": "b", "m": None, "p": json.dumps(poly), "id": 2}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    (rec,) = get_source("hf", data_files=str(tmp_path / "x.parquet"), columns="image=img,text=t,mask=m,polygon=p,ann_id=id").records()
    a, b = rec.targets
    assert rec.split == "train" and np.array_equal(rle_to_mask(a.mask_rle), mask)
    assert np.array_equal(rle_to_mask(b.mask_rle), segmentation_to_mask(poly, 30, 40))
