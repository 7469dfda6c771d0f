"""The paper's other task families: region captioning (``cap``) and multi-instance pointing and
detection (``points``, ``boxes``), from Visual Genome, HumanRef, gRefCOCO and COCO: built from
fixtures in each dataset's own layout, exported, rewarded and scored."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from getok_data.cli import main as cli
from getok_data.config import load_config
from getok_data.dataset import Dataset
from getok_data.export.registry import run_export
from getok_data.masks import rle_to_mask
from getok_data.rewards import trl as trl_rewards
from getok_data.score import score_build
from getok_data.tokens import Grid, encode, parse
from getok_data.tokens.answers import EMPTY_ANSWER, encode_instances, parse_answer, parse_instances, raster_key
from pipelines.build import run_build

from conftest import FIXTURES_DIR

OWN = FIXTURES_DIR / "getok-data__own"
MMPOSE = FIXTURES_DIR / "open-mmlab__mmpose" / "tests" / "data" / "coco"


def _build(out: Path, source: dict, n: int = 8) -> Path:
    run_build(load_config(None, {"source": source, "grid": {"n": n}, "build": {"out": str(out)}}), progress=False)
    return out


@pytest.fixture(scope="module")
def vg(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("vg") / "b", {"name": "vg", "data_root": str(OWN / "visual_genome")})


@pytest.fixture(scope="module")
def humanref(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("hr") / "b", {"name": "humanref", "data_root": str(OWN / "humanref")})


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _errors(build: Path) -> list[dict]:
    return _rows(build / "errors.jsonl") if (build / "errors.jsonl").read_text().strip() else []


def _export(build: Path, out: Path, *tasks: str, fmt: str = "trl", extra: tuple[str, ...] = ()) -> list[dict]:
    args = ["export", fmt, "--data", str(build), "--out", str(out)]
    for t in tasks:
        args += ["--task", t]
    res = CliRunner().invoke(cli, args + list(extra), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return _rows(out) if out.suffix == ".jsonl" else []


# ---------------------------------------------------------------- sources
def test_visual_genome_fixture_builds_without_quarantine_and_captions_its_regions(vg, tmp_path):
    assert _errors(vg) == []
    regions = {r["region_id"]: r for e in json.loads((OWN / "visual_genome/region_descriptions.json").read_text())
               for r in e["regions"]}
    samples = list(Dataset(str(vg)).samples())
    assert sorted(s.meta["image_id"] for s in samples) == [1, 2, 10]  # VG_100K and VG_100K_2 both read
    targets = [t for s in samples for t in s.meta["targets"]]
    assert len(targets) == len(regions) and all(t["box_only"] for t in targets)
    for t in targets:
        reg = regions[int(t["target_id"][len("region"):])]
        assert t["sentences"] == [reg["phrase"]]
        assert t["box"] == [reg["x"], reg["y"], reg["x"] + reg["width"], reg["y"] + reg["height"]]

    rows = _export(vg, tmp_path / "cap.jsonl", "cap", "seg", "box")
    cap = [r for r in rows if r["task"] == "cap"]
    assert len(cap) == len(regions) and not [r for r in rows if r["task"] == "seg"]  # a box is not a mask
    by_id = {f"{s.key}/{t['target_id']}": t for s in samples for t in s.meta["targets"]}
    prompts = set()
    for r in cap:
        t = by_id[r["id"].rsplit("/", 2)[0]]
        prompt, answer = r["prompt"][0]["content"], r["completion"][0]["content"]
        assert t["tokens"]["box"] in prompt and answer == t["sentences"][0] == r["solution"]
        assert r["region"] == t["tokens"]["box"] and r["id"].endswith("/0/cap")
        prompts.add(prompt.replace(t["tokens"]["box"], "{r}"))
    assert len(prompts) > 1  # the instructions are varied

    # --cap-region seg asks for masks: VG regions have none, so nothing is written (exit 1, with the reason)
    res = CliRunner().invoke(cli, ["export", "trl", "--data", str(vg), "--out", str(tmp_path / "s.jsonl"),
                                   "--task", "cap", "--cap-region", "seg"])
    assert res.exit_code == 1 and "cap --cap-region seg of a box-only region" in res.output


def test_visual_genome_bad_regions_and_images_are_quarantined_with_reasons(tmp_path):
    root = tmp_path / "vg"
    shutil.copytree(OWN / "visual_genome", root)
    regs = json.loads((root / "region_descriptions.json").read_text())
    r0 = regs[0]["regions"][0]
    regs[0]["regions"] += [
        dict(r0, region_id=9001),  # the same box and phrase again
        dict(r0, region_id=9002, phrase="A  RED square"),  # the same, case and spaces aside
        dict(r0, region_id=9003, width=0),  # degenerate
        dict(r0, region_id=9004, x=500, y=500),  # outside the 96x64 image
        dict(r0, region_id=9005, phrase="   "),  # no phrase
        dict(r0, region_id=9006, x=90, width=40, phrase="sticks out on the right"),  # clipped, kept
    ]
    regs.append({"id": 77, "regions": [dict(r0, region_id=9100, image_id=77)]})  # not in image_data.json
    (root / "region_descriptions.json").write_text(json.dumps(regs))
    images = json.loads((root / "image_data.json").read_text())
    images.append({"width": 50, "height": 50, "image_id": 78, "url": "https://x/VG_100K/78.jpg"})
    regs.append({"id": 78, "regions": [dict(r0, region_id=9200, image_id=78, x=1, y=1, width=5, height=5)]})
    (root / "region_descriptions.json").write_text(json.dumps(regs))
    (root / "image_data.json").write_text(json.dumps(images))
    build = tmp_path / "b"
    run_build(load_config(None, {"source": {"name": "vg", "data_root": str(root)}, "grid": {"n": 8},
                                 "build": {"out": str(build), "max_error_rate": 1.0}}), progress=False)
    reasons = {e.get("ann_id"): e["reason"] for e in _errors(build)}
    assert "duplicate region" in reasons[9001] and "duplicate region" in reasons[9002]
    assert "degenerate region 9003" in reasons[9003]
    assert "outside the 96x64 image" in reasons[9004]
    assert "has no phrase" in reasons[9005]
    image_reasons = [e["reason"] for e in _errors(build) if e.get("ann_id") is None]
    assert any("image 77 not in image_data.json" in r for r in image_reasons)
    assert any("missing image file: VG_100K/78.jpg" in r for r in image_reasons)
    kept = {t["target_id"]: t for s in Dataset(str(build)).samples() for t in s.meta["targets"]}
    assert kept["region9006"]["box"] == [90.0, 8.0, 96.0, 48.0]  # clipped to the image
    assert len(kept) == 7  # the six originals and the clipped one


def test_humanref_fixture_builds_without_quarantine(humanref):
    assert _errors(humanref) == []
    lines = {r["id"]: r for r in _rows(OWN / "humanref/annotations.jsonl")}
    targets = {t["target_id"]: t for s in Dataset(str(humanref)).samples() for t in s.meta["targets"]}
    assert set(targets) == {f"ref{i}" for i in lines}
    for rid, line in lines.items():
        t = targets[f"ref{rid}"]
        assert t["sentences"] == [line["referring"]] and t["domain"] == line["domain"]
        assert t["candidate_boxes"] == line["candidate_boxes"]
        if line["domain"] == "rejection":
            assert t["no_target"] and t["instances"] == [] and t["tokens"]["seg"] == "<seg></seg>"
            continue
        assert [i["box"] for i in t["instances"]] == line["answer_boxes"]
        union = np.zeros_like(rle_to_mask(t["mask_rle"]))
        for inst, seg in zip(t["instances"], line["answer_segmentations"]):
            m = rle_to_mask(inst["mask_rle"])
            if isinstance(seg["counts"], list):  # uncompressed RLE (counts as a list) decodes the same
                assert m.sum() == sum(seg["counts"][1::2])
            union |= m
        assert (union == rle_to_mask(t["mask_rle"])).all()


def test_humanref_bad_lines_are_quarantined(tmp_path):
    root = tmp_path / "hr"
    shutil.copytree(OWN / "humanref", root)
    lines = _rows(root / "annotations.jsonl")
    good = lines[0]
    extra = [dict(good, id="dup"), dict(good, id="dup"),
             dict(good, id="unpaired", answer_segmentations=good["answer_segmentations"][:1]),
             dict(good, id="noimage", image_name="nowhere.jpg"),
             dict(good, id="badrej", domain="rejection")]
    text = (root / "annotations.jsonl").read_text() + "".join(json.dumps(x) + "\n" for x in extra) + "{not json\n"
    (root / "annotations.jsonl").write_text(text)
    build = tmp_path / "b"
    run_build(load_config(None, {"source": {"name": "humanref", "data_root": str(root)}, "grid": {"n": 8},
                                 "build": {"out": str(build), "max_error_rate": 1.0}}), progress=False)
    reasons = [e["reason"] for e in _errors(build)]
    assert any("annotations.jsonl line 10: not a JSON object" in r for r in reasons)
    assert any("duplicate id 'dup'" in r for r in reasons)
    assert any("they must pair up" in r for r in reasons)
    assert any("nowhere.jpg" in r for r in reasons)
    assert any("answer_boxes must be empty for rejections" in r for r in reasons)
    targets = {t["target_id"] for s in Dataset(str(build)).samples() for t in s.meta["targets"]}
    assert {f"ref{r['id']}" for r in lines} | {"refdup"} == targets


# ---------------------------------------------------------------- grammar
def test_multi_instance_grammar_round_trips_and_leaves_single_answers_alone():
    pts = parse("<point><grid_5_1></point><point><grid_0_3></point><point><grid_2_1></point>", 8)
    canon = encode_instances("points", pts)
    assert canon == "<point><grid_2_1></point><point><grid_5_1></point><point><grid_0_3></point>"  # row, then column
    assert parse_instances(canon, 8, "points") == sorted(pts, key=raster_key)
    assert encode_instances("points", []) == EMPTY_ANSWER["points"] == "<point></point>"
    assert encode_instances("boxes", []) == "<box></box>"
    assert parse_instances(" <box> </box> ", 8, "boxes") == []
    assert parse_answer("<point><grid_1_1></point><box><grid_0_0><grid_1_1></box>", 8, "points") is None
    assert parse_answer("<point></point><point><grid_1_1></point>", 8, "points") is None
    assert parse_answer("", 8, "points") is None
    # the single-object answers are what they were: one grounding; the empty wrappers only mean
    # "nobody" in the multi-instance tasks
    assert parse_answer("<point></point>", 8, "point") is None
    assert parse_answer("<point><grid_1_1></point><point><grid_2_2></point>", 8, "point") is None
    assert parse_answer("<seg></seg>", 8, "seg").anchors == ()
    assert parse_answer("a dog <grid_1_1>", 8, "cap") is None and parse_answer("  a  dog ", 8, "cap") == "a dog"


def test_points_and_boxes_rows_on_humanref(humanref, tmp_path):
    meta = {t["target_id"]: (s, t) for s in Dataset(str(humanref)).samples() for t in s.meta["targets"]}
    rows = _export(humanref, tmp_path / "p.jsonl", "points", "boxes")
    assert len(rows) == 2 * len(meta)
    for r in rows:
        s, t = meta[r["target_id"]]
        answer = r["completion"][0]["content"]
        grid = Grid(s.meta["grid"]["n"], s.meta["width"], s.meta["height"], s.meta["grid"]["m"])
        if t.get("no_target"):
            assert answer == EMPTY_ANSWER[r["task"]] and json.loads(r["gt_instances"]) == []
            continue
        items = parse_instances(answer, grid.n, r["task"])
        assert len(items) == len(t["instances"]) and items == sorted(items, key=raster_key)
        assert r["gt_candidates"] == len(t["candidate_boxes"]) == 3 or s.meta["image_id"] == "park_002.jpg"
        if r["task"] == "points":  # each instance holds exactly one point, on its mask
            masks = [rle_to_mask(i["mask_rle"]) for i in t["instances"]]
            hits = sorted(next(k for k, m in enumerate(masks) if m[int(grid.anchor(*p.anchor)[1]),
                                                                   int(grid.anchor(*p.anchor)[0])]) for p in items)
            assert hits == list(range(len(masks)))


def test_grefcoco_multi_target_and_coco_categories_gain_points(tmp_path):
    build = _build(tmp_path / "coco", {"name": "coco", "annotations": str(MMPOSE / "test_coco.json"),
                                       "image_root": str(MMPOSE)})
    rows = _export(build, tmp_path / "c.jsonl", "points", "boxes")
    samples = {s.key: s for s in Dataset(str(build)).samples()}
    assert rows and all(r["target_id"].startswith("category-") for r in rows)
    for r in rows:
        s = samples[r["key"]]
        members = [t for t in s.meta["targets"] if t["category"] == r["sentence"]]
        items = parse_instances(r["completion"][0]["content"], 8, r["task"])
        assert len(items) == len(members) == r["gt_candidates"] >= 1
        if r["task"] == "boxes":  # each member's box answer, in raster order
            assert sorted(encode(x) for x in items) == sorted(t["tokens"]["box"] for t in members)
        else:  # a member whose mask holds an anchor pixel gets a point on it (as the scorer tests points)
            grid = Grid(8, s.meta["width"], s.meta["height"], 16)
            px = lambda a: (round(grid.anchor(*a)[1]), round(grid.anchor(*a)[0]))  # noqa: E731
            masks = [rle_to_mask(t["mask_rle"]) for t in members]
            holding = sum(any(m[px((i, j))] for i in range(8) for j in range(8)) for m in masks)
            assert sum(any(m[px(x.anchor)] for m in masks) for x in items) >= holding > 0


# ---------------------------------------------------------------- scoring
def _humanref_formulas(gt_masks, gt_boxes, pred_points, pred_boxes, candidates):
    """HumanRef's evaluation arithmetic written out directly (the benchmark's own rules)."""
    def prf(recall, precision):
        return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)

    def dens(recall, precision, gt, pred):
        if recall + precision == 0 or pred == 0:
            return 0.0
        return prf(recall, precision) * min(1.0, (gt / candidates) / (pred / candidates))

    out = {}
    if pred_points is not None:
        if not pred_points:
            rec, prec = 0.0, 1.0
        else:
            used, hit = set(), 0
            for m in gt_masks:
                for k, (x, y) in enumerate(pred_points):
                    if k not in used and m[int(round(y)), int(round(x))]:
                        used.add(k)
                        hit += 1
                        break
            rec, prec = hit / len(gt_masks), hit / len(pred_points)
        out = {"recall": rec, "precision": prec, "density_f1": dens(rec, prec, len(gt_masks), len(pred_points))}
    if pred_boxes is not None:
        def iou(a, b):
            w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
            if w <= 0 or h <= 0:
                return 0.0
            return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)
        res = []
        for thr in [0.5 + 0.05 * k for k in range(10)]:
            used, hit = set(), 0
            for g in gt_boxes:
                cands = [(iou(g, p), k) for k, p in enumerate(pred_boxes) if k not in used and iou(g, p) >= thr]
                if cands:
                    used.add(max(cands)[1])  # ties: HumanRef keeps the first best; no ties in these cases
                    hit += 1
            rec, prec = (hit / len(gt_boxes), hit / len(pred_boxes)) if pred_boxes else (0.0, 0.0)
            res.append((rec, prec, dens(rec, prec, len(gt_boxes), len(pred_boxes))))
        out = {"recall_50": res[0][0], "precision_50": res[0][1], "density_f1_50": res[0][2],
               "recall_mean": float(np.mean([r[0] for r in res])), "precision_mean": float(np.mean([r[1] for r in res])),
               "density_f1_mean": float(np.mean([r[2] for r in res]))}
    return out


def test_points_and_boxes_scores_follow_humanref_on_hand_made_cases(humanref, tmp_path):
    rows = {r["id"]: r for r in _export(humanref, tmp_path / "p.jsonl", "points", "boxes")}
    sample = next(s for s in Dataset(str(humanref)).samples() if s.meta["image_id"] == "street_001.jpg")
    grid = Grid(8, sample.meta["width"], sample.meta["height"], 16)
    red = next(t for t in sample.meta["targets"] if t["target_id"] == "refa41f0c2e")  # two of three people
    masks = [rle_to_mask(i["mask_rle"]) for i in red["instances"]]
    inside = [[(i, j) for j in range(8) for i in range(8)
               if m[int(round(grid.anchor(i, j)[1])), int(round(grid.anchor(i, j)[0]))]] for m in masks]
    union = np.logical_or.reduce([rle_to_mask(i["mask_rle"]) for t in sample.meta["targets"]
                                  for i in t.get("instances") or []])
    stray = next((i, j) for j in range(8) for i in range(8)
                 if not union[int(round(grid.anchor(i, j)[1])), int(round(grid.anchor(i, j)[0]))])
    a, b = inside[0][0], inside[1][0]
    p = lambda *anchors: "".join(f"<point><grid_{i}_{j}></point>" for i, j in anchors)  # noqa: E731
    rid = f"{sample.key}/refa41f0c2e/0"
    cases = {"exact": p(a, b), "dropped": p(a), "stray": p(a, b, stray), "double": p(a, inside[0][1]),
             "empty": "<point></point>"}
    gt_boxes = [i["box"] for i in red["instances"]]
    bx = lambda *bs: "".join(f"<box><grid_{b[0]}_{b[1]}><grid_{b[2]}_{b[3]}></box>" for b in bs)  # noqa: E731
    true_boxes = parse_instances(rows[f"{rid}/boxes"]["solution"], 8, "boxes")
    tb = [(x.top_left[0], x.top_left[1], x.bottom_right[0], x.bottom_right[1]) for x in true_boxes]
    box_cases = {"exact": bx(*tb), "dropped": bx(tb[0]), "stray": bx(*tb, (3, 0, 4, 1)), "double": bx(tb[0], tb[0])}
    rej = f"{sample.key}/refc0e1f233/0"
    for name in cases:
        pred = tmp_path / f"{name}.jsonl"
        lines = [{"id": f"{rid}/points", "text": cases[name]},
                 {"id": f"{rej}/points", "text": "<point></point>" if name == "exact" else p(a)}]
        if name in box_cases:
            lines.append({"id": f"{rid}/boxes", "text": box_cases[name]})
        pred.write_text("".join(json.dumps(x) + "\n" for x in lines))
        per = tmp_path / f"{name}.per.jsonl"
        report = score_build(str(humanref), pred, per_sample=per, missing="skip")
        scored = {r["id"]: r for r in _rows(per)}
        pts = [grid.anchor(*x.anchor) for x in parse_instances(cases[name], 8, "points")]
        want = _humanref_formulas(masks, None, pts, None, 3)
        got = scored[f"{rid}/points"]
        for k, v in want.items():
            assert got[k] == pytest.approx(v, abs=1e-12), (name, k)
        assert scored[f"{rej}/points"]["rejected"] is (name == "exact")
        m = report["metrics"]["all"]["grid/points"]
        assert m["rejection_score"] == (name == "exact") and m["n_rejection"] == 1 and m["n_named"] == 1
        if name in box_cases:
            from getok_data.tokens import decode_box

            pb = [decode_box(x, grid) for x in parse_instances(box_cases[name], 8, "boxes")]
            want = _humanref_formulas(None, gt_boxes, None, pb, 3)
            got = scored[f"{rid}/boxes"]
            for k, v in want.items():
                assert got[k] == pytest.approx(v, abs=1e-12), (name, k)
    # the hand-made numbers themselves (2 of 3 candidates named): what HumanRef would print
    assert _humanref_formulas(masks, None, [grid.anchor(*a)], None, 3)["density_f1"] == pytest.approx(2 / 3)
    stray3 = [grid.anchor(*x) for x in (a, b, stray)]
    assert _humanref_formulas(masks, None, stray3, None, 3)["density_f1"] == pytest.approx(0.8 * 2 / 3)
    assert _humanref_formulas(masks, None, [grid.anchor(*a), grid.anchor(*inside[0][1])], None, 3)["recall"] == 0.5


def test_caption_scores_equal_pycocoevalcap(vg, tmp_path):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    rows = _export(vg, tmp_path / "cap.jsonl", "cap")
    guesses = ["a red square.", "a blue block, on the right", "green stripe at the bottom", "yellow box",
               "a small purple patch!", "an orange rectangle"]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"id": r["id"], "text": g}) + "\n" for r, g in zip(rows, guesses)))
    got = score_build(str(vg), pred)["metrics"]["all"]["grid/cap"]
    gts = {k: [{"caption": r["solution"]}] for k, r in enumerate(rows)}
    res = {k: [{"caption": g}] for k, g in enumerate(guesses)}
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts), tok.tokenize(res)
    want = {f"bleu{k + 1}": v for k, v in enumerate(Bleu(4).compute_score(gts, res, verbose=0)[0])}
    want["meteor"] = Meteor().compute_score(gts, res)[0]
    want["rouge_l"] = Rouge().compute_score(gts, res)[0]
    want["cider"] = Cider().compute_score(gts, res)[0]
    assert got["caption_tokenizer"] == "ptb" and got["n"] == len(rows) == 6
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
    assert 0 < got["bleu1"] < 1 and 0 < got["cider"]


def test_caption_scoring_without_java_says_so_and_reports_the_rest(vg, tmp_path, monkeypatch):
    rows = _export(vg, tmp_path / "cap.jsonl", "cap")
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"id": r["id"], "text": r["solution"]}) + "\n" for r in rows[:3]))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no java on the PATH
    got = score_build(str(vg), pred)["metrics"]["all"]["grid/cap"]
    assert "meteor" not in got and "java not found" in got["caption_notes"]
    assert got["caption_tokenizer"] == "python-fallback"
    assert got["n"] == 6 and got["format_failure"] == 0.5  # three missing rows are failures (empty captions)
    assert {"bleu4", "rouge_l", "cider"} <= set(got)


# ---------------------------------------------------------------- rewards
def test_points_and_boxes_rewards_rank_the_truth_first_in_trl_and_verl(humanref, tmp_path):
    rows = _export(humanref, tmp_path / "p.jsonl", "points", "boxes")
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    truth = [r["solution"] for r in rows]
    wrong = ["<point><grid_0_0></point>" if r["task"] == "points" else "<box><grid_0_0><grid_0_0></box>" for r in rows]
    junk = ["nobody"] * len(rows)
    for f in (trl_rewards.points_f1_reward, trl_rewards.boxes_f1_reward):
        good, bad, worse = (f(None, c, **columns) for c in (truth, wrong, junk))
        task = "points" if f is trl_rewards.points_f1_reward else "boxes"
        mine = [k for k, r in enumerate(rows) if r["task"] == task]
        assert all(good[k] == 1.0 for k in mine)  # rejections included: the empty answer is right
        assert all(good[k] >= bad[k] >= worse[k] == 0.0 for k in mine)
        assert sum(bad[k] for k in mine) < len(mine)
    run_export("verl", str(humanref), tmp_path / "v.parquet", tasks=("points", "boxes"))
    import pyarrow.parquet as pq

    from getok_data.rewards.verl import compute_score

    for rec in pq.read_table(tmp_path / "v.parquet").to_pylist():
        gt = rec["extra_info"]
        s = compute_score(rec["data_source"], rec["reward_model"]["ground_truth"], None, gt)
        key = "points_f1" if gt["task"] == "points" else "boxes_f1"
        assert s[key] == 1.0 and s["score"] > compute_score(rec["data_source"], "junk", None, gt)["score"]


def test_refer_builds_gain_cap_rows_with_their_sentences(tmp_path):
    """RefCOCOg-style REFER targets caption from the existing source: one row per (region, sentence),
    the region's box (or, asked, its seg) in the prompt and the sentence as the answer."""
    from test_build import make_refer_tree

    make_refer_tree(tmp_path / "D")
    build = _build(tmp_path / "b", {"name": "refcoco", "data_root": str(tmp_path / "D"),
                                    "image_root": str(tmp_path / "D/images/mscoco/images/train2014")}, n=16)
    targets = [t for s in Dataset(str(build)).samples() for t in s.meta["targets"]]
    for region in ("box", "seg"):
        rows = _export(build, tmp_path / f"cap_{region}.jsonl", "cap", extra=("--cap-region", region))
        assert len(rows) == sum(len(t["sentences"]) for t in targets) > 0
        by = {t["target_id"]: t for t in targets}
        for r in rows:
            t = by[r["target_id"]]
            assert t["tokens"][region] in r["prompt"][0]["content"]
            assert r["completion"][0]["content"] == t["sentences"][int(r["id"].split("/")[-2])]
