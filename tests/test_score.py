"""``getok-data score``: oracle == the build's token IoU (pycocotools), conventions, join accounting."""
from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools import mask as mask_utils

from getok_data.cli import main
from getok_data.dataset import Dataset, load_npz
from getok_data.export import export_chat
from getok_data.score import score_build

N = 8


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    from getok_data.config import load_config
    from pipelines.build import run_build

    out = tmp_path_factory.mktemp("b")
    run_build(load_config(None, {"source": {"name": "synthetic", "size": 6}, "grid": {"n": N},
                                 "segmenter": {"name": "superpixel"},
                                 "build": {"out": str(out), "images_per_shard": 4}}), progress=False)
    return out


@pytest.fixture(scope="module")
def rows(build, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    export_chat(str(build), out, ("grid", "offset"))
    return [json.loads(line) for line in out.read_text().splitlines()]


def write_preds(path: Path, preds: list[dict]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    return path


def oracle(rows: list[dict]) -> list[dict]:
    return [{"id": r["id"], "text": r["solution"]} for r in rows]


def cli_score(*args: str) -> dict:
    res = CliRunner().invoke(main, ["score", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])


# ---------------------------------------------------------------- independent recomputation
def _table_union_rle(cand: dict, anchors: list[tuple[int, int]]) -> tuple[dict, tuple[int, int]]:
    h, w = (int(v) for v in cand["shape"])
    out = np.zeros(h * w, np.uint8)
    for i, j in anchors:
        u = int(cand["index"][j, i])
        if u >= 0:
            out |= np.unpackbits(cand["masks"][u], count=h * w)
    return mask_utils.encode(np.asfortranarray(out.reshape(h, w))), (h, w)


def _gt_rle(mask_rle: dict, shape: tuple[int, int]) -> dict:
    full = mask_utils.decode({"size": mask_rle["size"], "counts": mask_rle["counts"].encode()})
    H, W = full.shape
    rows = (np.arange(shape[0]) * H) // shape[0]
    cols = (np.arange(shape[1]) * W) // shape[1]
    return mask_utils.encode(np.asfortranarray(full[rows][:, cols]))


def pycoco_oracle(rows: list[dict]) -> tuple[float, float, float]:
    """(gIoU, cIoU, mean token_iou) of the grid seg rows, with pycocotools on the stored tables."""
    ious, inters, unions, token = [], 0.0, 0.0, []
    for r in rows:
        if r["stage"] != "grid" or r["task"] != "seg":
            continue
        cand = load_npz(Path(r["cand_npz"]).read_bytes())
        anchors = [(int(i), int(j)) for i, j in re.findall(r"<grid_(\d+)_(\d+)>", r["solution"])]
        pred, shape = _table_union_rle(cand, anchors)
        gt = _gt_rle(r["gt_mask_rle"], shape)
        inter = float(mask_utils.area(mask_utils.merge([pred, gt], intersect=True)))
        union = float(mask_utils.area(mask_utils.merge([pred, gt], intersect=False)))
        ious.append(float(mask_utils.iou([pred], [gt], [0])[0, 0]))
        inters += inter
        unions += union
        token.append(r["token_iou"])
    return float(np.mean(ious)), inters / unions, float(np.mean(token))


def test_oracle_scores_the_builds_token_iou(build, rows, tmp_path):
    rep = cli_score("--data", str(build), "--pred", str(write_preds(tmp_path / "p.jsonl", oracle(rows))))
    seg = rep["metrics"]["all"]["grid/seg"]
    giou, ciou, token = pycoco_oracle(rows)
    assert seg["giou"] == pytest.approx(giou, abs=1e-12) and seg["giou"] == pytest.approx(token, abs=1e-6)
    assert seg["ciou"] == pytest.approx(ciou, abs=1e-12)
    assert 0 < giou < 1
    all_ = rep["metrics"]["all"]
    assert all(m["format_failure"] == 0.0 for m in all_.values())
    assert rep["join"]["matched"] == len(rows) and rep["join"]["unknown"] == 0
    assert rep["conventions"] == {"empty_union": "one", "count": "expression", "missing": "fail"}
    assert set(all_) == {"grid/seg", "grid/box", "grid/point", "offset/seg", "offset/box"}
    assert "refine_gain" in all_["offset/seg"] and all_["grid/box"]["acc50"] is not None
    assert set(rep["metrics"]["by_split"]) == {"train"} and set(rep["metrics"]["by_source"]) == {"synthetic"}


def _corrupt(r: dict) -> str:
    """A well-formed but worse answer: the grid corner farthest from the GT box."""
    x0, y0, x1, y1 = r["gt_box"]
    far_i = 0 if (x0 + x1) / 2 > r["width"] / 2 else N - 1
    far_j = 0 if (y0 + y1) / 2 > r["height"] / 2 else N - 1
    tok = f"<grid_{far_i}_{far_j}>"
    return {"seg": f"<seg>{tok}</seg>", "point": f"<point>{tok}</point>", "box": f"<box>{tok}{tok}</box>"}[r["task"]]


def test_corrupted_lower_and_garbage_is_format_failure(build, rows, tmp_path):
    grid = [r for r in rows if r["stage"] == "grid"]
    good = score_build(str(build), write_preds(tmp_path / "o.jsonl", oracle(grid)))["metrics"]["all"]
    bad = score_build(str(build), write_preds(tmp_path / "c.jsonl", [{"id": r["id"], "text": _corrupt(r)} for r in grid]))
    bad = bad["metrics"]["all"]
    assert bad["grid/seg"]["giou"] < good["grid/seg"]["giou"] and bad["grid/seg"]["ciou"] < good["grid/seg"]["ciou"]
    assert bad["grid/box"]["box_iou"] < good["grid/box"]["box_iou"]
    assert bad["grid/point"]["hit"] < good["grid/point"]["hit"]
    assert bad["grid/seg"]["format_failure"] == 0.0
    garbage = ["the object is on the left", "<seg><grid_99_0></seg>", "<box><grid_1_1></box>", "", "<seg></seg><seg>"]
    g = score_build(str(build), write_preds(tmp_path / "g.jsonl", [{"id": r["id"], "text": garbage[k % 5]}
                                                                    for k, r in enumerate(grid)]))["metrics"]["all"]
    for task in ("seg", "box", "point"):
        assert g[f"grid/{task}"]["format_failure"] == 1.0
    assert g["grid/seg"]["giou"] == 0.0 and g["grid/box"]["acc50"] == 0.0 and g["grid/point"]["hit"] == 0.0


def test_join_counts_unknown_duplicates_bad_and_missing(build, rows, tmp_path):
    seg = [r for r in rows if r["stage"] == "grid" and r["task"] == "seg"]
    preds = oracle(seg[1:]) + [{"id": seg[1]["id"], "text": "junk"}, {"id": "nokey/obj0/0/seg", "text": "<seg></seg>"},
                               {"text": "no id"}]
    p = tmp_path / "p.jsonl"
    write_preds(p, preds)
    with open(p, "a") as f:
        f.write("{not json\n")
    rep = score_build(str(build), p, per_sample=tmp_path / "rows.jsonl")
    j = rep["join"]
    assert (j["unknown"], j["duplicates"], j["bad_rows"]) == (1, 1, 2)
    assert j["missing"] == {"grid/seg": 1} and j["unpredicted"]["grid/box"] == len(seg)
    assert rep["metrics"]["all"]["grid/seg"]["n"] == len(seg)  # the missing row counts, as a failure
    assert rep["metrics"]["all"]["grid/seg"]["format_failure"] == pytest.approx(1 / len(seg))
    per = [json.loads(x) for x in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["id"] for r in per] == [r["id"] for r in seg]  # export order, the duplicate's first row kept
    assert per[0]["missing"] and not per[0]["format_ok"] and per[1]["format_ok"]
    skip = score_build(str(build), p, missing="skip")["metrics"]["all"]["grid/seg"]
    assert skip["n"] == len(seg) - 1 and skip["format_failure"] == 0.0


def test_alternative_key_rows_join_like_ids(build, rows, tmp_path):
    seg = [r for r in rows if r["stage"] == "grid" and r["task"] == "seg"]
    alt = [{"key": r["key"], "target_id": r["target_id"], "sent_id": int(r["id"].split("/")[2]), "task": "seg",
            "text": r["solution"]} for r in seg]
    a = score_build(str(build), write_preds(tmp_path / "a.jsonl", alt))
    b = score_build(str(build), write_preds(tmp_path / "b.jsonl", oracle(seg)))
    assert a["metrics"] == b["metrics"] and a["join"]["matched"] == len(seg)


# ---------------------------------------------------------------- conventions on edited builds
def edit_build(src: Path, dst: Path, edit) -> Path:
    """Copy a build, applying ``edit(meta)`` to every sample JSON (a gRefCOCO/ReasonSeg stand-in)."""
    shutil.copytree(src, dst)
    for shard in sorted(dst.glob("shard-*.tar")):
        with tarfile.open(shard) as tf:
            members = [(i, tf.extractfile(i).read()) for i in tf.getmembers()]
        with tarfile.open(shard, "w") as tf:
            for info, data in members:
                if info.name.endswith(".json"):
                    meta = json.loads(data)
                    edit(meta)
                    data = json.dumps(meta).encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return dst


def _empty_rle(meta: dict) -> dict:
    m = np.zeros((meta["height"], meta["width"]), np.uint8)
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [meta["height"], meta["width"]], "counts": rle["counts"].decode()}


def _no_target_and_one_sentence(meta: dict) -> None:
    t = meta["targets"][0]
    t.update(no_target=True, mask_rle=_empty_rle(meta), refine=[], tokens={"seg": "<seg></seg>", "box": None, "point": None})
    meta["targets"][1]["sentences"] = meta["targets"][1]["sentences"][:1]


def test_empty_targets_n_acc_and_empty_union_conventions(build, tmp_path):
    grefs = edit_build(build, tmp_path / "grefs", _no_target_and_one_sentence)
    rows = [r for r in (json.loads(x) for x in _export(grefs, tmp_path)) if r["task"] == "seg" and r["stage"] == "grid"]
    neg = [r for r in rows if r["solution"] == "<seg></seg>"]
    assert neg
    p = write_preds(tmp_path / "o.jsonl", oracle(rows))
    one = score_build(str(grefs), p, empty_union="one", per_sample=tmp_path / "one.jsonl")["metrics"]["all"]["grid/seg"]
    zero = score_build(str(grefs), p, empty_union="zero")["metrics"]["all"]["grid/seg"]
    assert one["n_acc"] == 1.0 and one["t_acc"] == 1.0 and one["n_no_target"] == len(neg)
    assert one["giou"] - zero["giou"] == pytest.approx(len(neg) / len(rows))  # each empty row: IoU 1 vs 0
    assert one["ciou"] == zero["ciou"]  # an empty union adds nothing to the pooled ratio
    per = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert all(r["iou"] == 1.0 and r["union"] == 0 for r in per if r["no_target"])
    # answering a mask on a no-target expression: N-acc drops, the mask counts in cIoU's union
    wrong = [{"id": r["id"], "text": "<seg><grid_0_0></seg>" if r in neg else r["solution"]} for r in rows]
    w = score_build(str(grefs), write_preds(tmp_path / "w.jsonl", wrong))["metrics"]["all"]["grid/seg"]
    assert w["n_acc"] == 0.0 and w["t_acc"] == 1.0 and w["giou"] < one["giou"] and w["ciou"] < one["ciou"]


def _export(build: Path, tmp_path: Path) -> list[str]:
    out = tmp_path / f"{build.name}.jsonl"
    export_chat(str(build), out, ("grid", "offset"))
    return out.read_text().splitlines()


def test_instance_counting_differs_as_documented(build, tmp_path):
    edited = edit_build(build, tmp_path / "one_sent", lambda m: m["targets"][0].update(sentences=m["targets"][0]["sentences"][:1]))
    rows = [json.loads(x) for x in _export(edited, tmp_path)]
    seg = [r for r in rows if r["stage"] == "grid" and r["task"] == "seg"]
    # sentence 0 answered right, the others wrong: targets with one sentence score higher per instance
    preds = [{"id": r["id"], "text": r["solution"] if r["id"].split("/")[2] == "0" else "x"} for r in seg]
    p = write_preds(tmp_path / "p.jsonl", preds)
    expr = score_build(str(edited), p, count="expression", per_sample=tmp_path / "e.jsonl")["metrics"]["all"]["grid/seg"]
    inst = score_build(str(edited), p, count="instance")["metrics"]["all"]["grid/seg"]
    per = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    by_t: dict = {}
    for r in per:
        by_t.setdefault((r["key"], r["target_id"]), []).append(r)
    assert expr["n"] == len(per) and inst["n"] == len(by_t) < len(per)
    assert expr["giou"] == pytest.approx(np.mean([r["iou"] for r in per]))
    assert inst["giou"] == pytest.approx(np.mean([np.mean([r["iou"] for r in g]) for g in by_t.values()]))
    assert inst["giou"] > expr["giou"]
    inter = sum(np.mean([r["inter"] for r in g]) for g in by_t.values())
    union = sum(np.mean([r["union"] for r in g]) for g in by_t.values())
    assert inst["ciou"] == pytest.approx(inter / union)


def test_ignore_region_counts_for_neither(build, rows, tmp_path):
    """ReasonSeg-style ``ignore_rle``: ignoring everything outside the GT makes IoU = inter / |GT|."""
    def outside_gt(meta):
        for t in meta["targets"]:
            full = mask_utils.decode({"size": t["mask_rle"]["size"], "counts": t["mask_rle"]["counts"].encode()})
            t["ignore_rle"] = {"size": t["mask_rle"]["size"],
                               "counts": mask_utils.encode(np.asfortranarray(1 - full))["counts"].decode()}
    edited = edit_build(build, tmp_path / "ign", outside_gt)
    seg = [r for r in rows if r["stage"] == "grid" and r["task"] == "seg"]
    p = write_preds(tmp_path / "p.jsonl", oracle(seg))
    plain = score_build(str(build), p, per_sample=tmp_path / "a.jsonl")
    ign = score_build(str(edited), p, per_sample=tmp_path / "b.jsonl")
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in seg}
    for ra, rb in zip(a, b):  # the union shrinks to the GT: IoU = inter / |GT at table resolution|
        r = by_id[rb["id"]]
        shape = tuple(int(v) for v in load_npz(Path(r["cand_npz"]).read_bytes())["shape"])
        gt_area = int(mask_utils.area(_gt_rle(r["gt_mask_rle"], shape)))
        assert rb["inter"] == ra["inter"] and rb["union"] == gt_area and rb["iou"] == pytest.approx(ra["inter"] / gt_area)
    assert ign["metrics"]["all"]["grid/seg"]["giou"] > plain["metrics"]["all"]["grid/seg"]["giou"]


# ---------------------------------------------------------------- segmenter decoding
def _grid_answers(rows: list[dict], seed: int = 0) -> list[dict]:
    """The oracle's anchors plus two random grid points per row (grid answers, not only oracle ones)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in rows:
        cells = {(int(i), int(j)) for i, j in re.findall(r"<grid_(\d+)_(\d+)>", r["solution"])}
        cells |= {(int(rng.integers(r["grid_n"])), int(rng.integers(r["grid_n"]))) for _ in range(2)}
        out.append({"id": r["id"], "text": "<seg>" + "".join(f"<grid_{i}_{j}>" for i, j in sorted(cells)) + "</seg>"})
    return out


def _segmenter_equals_table(build: Path, rows: list[dict], tmp_path: Path) -> None:
    seg = [r for r in rows if r["stage"] == "grid" and r["task"] == "seg"]
    p = write_preds(tmp_path / "grid.jsonl", _grid_answers(seg))
    t = score_build(str(build), p, "table", per_sample=tmp_path / "t.jsonl")
    s = score_build(str(build), p, "segmenter", {"device": "cpu"}, per_sample=tmp_path / "s.jsonl")
    rt = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    rs = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(rt) == len(seg) and all(r["format_ok"] for r in rt)
    assert [(r["inter"], r["union"]) for r in rt] == [(r["inter"], r["union"]) for r in rs]
    assert t["metrics"] == s["metrics"] and t["segmenter"] is None
    assert s["segmenter"]["name"] == json.loads((build / "manifest.json").read_text())["config"]["segmenter"]["name"]


def test_segmenter_decoder_equals_table_superpixel(build, rows, tmp_path):
    _segmenter_equals_table(build, rows, tmp_path)


def test_segmenter_decoder_equals_table_tiny_sam(tmp_path):
    from getok_data.config import load_config
    from pipelines.build import run_build

    out = tmp_path / "sam"
    run_build(load_config(None, {"source": {"name": "synthetic", "size": 1}, "grid": {"n": 6},
                                 "segmenter": {"name": "sam", "sam_model": "tiny", "device": "cpu"},
                                 "build": {"out": str(out)}}), progress=False)
    rows = [json.loads(x) for x in _export(out, tmp_path)]
    _segmenter_equals_table(out, rows, tmp_path)


def test_gallery_and_bad_options(build, rows, tmp_path):
    p = write_preds(tmp_path / "p.jsonl", oracle(rows))
    res = CliRunner().invoke(main, ["score", "--data", str(build), "--pred", str(p), "--gallery", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    from PIL import Image

    with Image.open(tmp_path / "g.png") as im:
        assert im.size[0] > 0 and im.format == "PNG"
    res = CliRunner().invoke(main, ["score", "--data", str(tmp_path / "nope"), "--pred", str(p)])
    assert res.exit_code == 2 and "nope" in res.output
    res = CliRunner().invoke(main, ["score", "--data", str(build), "--pred", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "none.jsonl" in res.output


def test_unreadable_sample_is_reported_not_fatal(build, rows, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(build, broken)
    shard = sorted(broken.glob("shard-*.tar"))[0]
    with tarfile.open(shard) as tf:
        members = [(i, tf.extractfile(i).read()) for i in tf.getmembers()]
    bad_key = members[0][0].name.split(".")[0]
    with tarfile.open(shard, "w") as tf:
        for info, data in members:
            if info.name == f"{bad_key}.json":
                data = b"{not json"
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    seg = [r for r in rows if r["stage"] == "grid" and r["task"] == "seg"]
    rep = score_build(str(broken), write_preds(tmp_path / "p.jsonl", oracle(seg)))
    lost = [r for r in seg if r["key"] == bad_key]
    assert rep["join"]["bad_samples"] == 1 and bad_key in rep["join"]["bad_sample_examples"][0]
    assert rep["join"]["unknown"] == len(lost) > 0
    assert rep["metrics"]["all"]["grid/seg"]["n"] == len(seg) - len(lost)


def test_task_registries_plug_a_new_task_in(build):
    """The lane hook: a task registered in both registries is scored and summarised."""
    from getok_data.score import ROW_FIELDS, TASK_METRICS, register_metric, register_row_fields
    from getok_data.score.decoders import SampleMasks
    from getok_data.score.metrics import common, summarize
    from getok_data.score.predictions import Prediction
    from getok_data.score.rows import ExpectedRow
    from getok_data.score.scoring import RowScorer

    saved = ROW_FIELDS.get("pl"), TASK_METRICS.get("pl")  # the real lane scorer, put back below

    @register_row_fields("pl")
    def pl_fields(target, pos, ok, grid):
        return {"n_points": len(pos) if ok else 0}

    @register_metric("pl")
    def pl_metrics(units):
        return {**common(units), "mean_points": float(np.mean([u["n_points"] for u in units]))}

    try:
        sample = next(Dataset(str(build)).samples())
        scorer = RowScorer(SampleMasks(sample), sample.meta)
        t = sample.targets[0]
        row = ExpectedRow("x/0/0/pl", "grid", "pl", "", "", t, 0, ("x", "0", "0", "pl"))
        good, _ = scorer.score(row, Prediction("x", "<pl><grid_0_0><grid_1_1><grid_2_2></pl>"))
        bad, _ = scorer.score(row, Prediction("y", "<seg><grid_0_0></seg>"))
        assert good["n_points"] == 3 and good["format_ok"] and bad["n_points"] == 0 and not bad["format_ok"]
        m = summarize([dict(good, key="k", target_id="a"), dict(bad, key="k", target_id="b")])["grid/pl"]
        assert m["mean_points"] == 1.5 and m["format_failure"] == 0.5 and m["n"] == 2
    finally:
        ROW_FIELDS["pl"], TASK_METRICS["pl"] = saved
