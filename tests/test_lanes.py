"""Lanes as <pl> polylines: the TuSimple and CULane sources on real fixtures, and the lane rule."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from getok_data.config import load_config
from getok_data.types import sample_key
from getok_data.dataset import Dataset
from getok_data.lanes import clean_lane, lane_polyline, simplify
from getok_data.sources import get_source
from getok_data.tokens import Grid, parse_one
from getok_data.verify import verify_dir
from pipelines.build import run_build

TUSIMPLE = "TuSimple__tusimple-benchmark/example/label_data.EXCERPT.json"
TUSIMPLE_TEST = "ScienceLuke7__CS-455-Lane-Detection/test_label.EXCERPT.json"
KHALED = "khaledmohammed__CULaneDetection/Data"
VBUFA = "Vbufa__CULane"
VBUFA_FRAME = "driver_23_30frame/05161008_0500.MP4/01065"


def draw_frames(root: Path, label_file: Path) -> None:
    """A flat 1280 x 720 road image per frame with its lanes painted (TuSimple ships no images here)."""
    for line in label_file.read_text().splitlines():
        o = json.loads(line)
        img = np.full((720, 1280, 3), 90, np.uint8)
        for lane in o["lanes"]:
            pts = np.array([(x, y) for x, y in zip(lane, o["h_samples"]) if x >= 0], np.int32)
            if len(pts) > 1:
                cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, (230, 230, 230), 8)
        path = root / o["raw_file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)


def build(out: Path, **source) -> dict:
    cfg = load_config(None, {"source": source, "grid": {"n": 32}, "build": {"out": str(out)}})
    return run_build(cfg, progress=False)


def lane_cells(xy: list, grid: Grid) -> np.ndarray:
    """The lane densely resampled (0.01 cell steps), in grid-cell units."""
    pts = np.asarray(xy, float) * [grid.n / grid.width, grid.n / grid.height]
    out = [pts[0]]
    for a, b in zip(pts, pts[1:]):
        k = max(1, int(np.ceil(np.abs(b - a).max() / 0.01)))
        out += list(a + (b - a) * np.linspace(0, 1, k + 1)[1:, None])
    return np.asarray(out)


def cheb_to_lane(p: tuple[float, float], lane: np.ndarray, grid: Grid) -> float:
    """Per-axis (Chebyshev) distance in cells from pixel position p to the lane."""
    q = np.array([p[0] * grid.n / grid.width, p[1] * grid.n / grid.height])
    return float(np.abs(lane - q).max(axis=1).min())


def check_lane_targets(out: Path) -> int:
    """Every lane target: <pl> parses, anchors within half a cell of the lane, refined vertices
    within a quarter cell, ordered bottom first, inside the image."""
    count = 0
    for s in Dataset(str(out)).samples():
        grid = Grid(s.meta["grid"]["n"], s.meta["width"], s.meta["height"], s.meta["grid"]["m"])
        for t in s.meta["targets"]:
            pl = t["polyline"]
            anchors = [tuple(a) for a in parse_one(t["tokens"]["pl"], grid.n, "pl").anchors]
            assert anchors == [tuple(a) for a in pl["anchors"]] and len(anchors) >= 2
            lane = lane_cells(pl["points"], grid)
            for (i, j), step, v in zip(anchors, pl["steps"], pl["xy"]):
                assert 0 <= v[0] <= grid.width and 0 <= v[1] <= grid.height
                assert cheb_to_lane(grid.anchor(i, j), lane, grid) <= 0.5 + 1e-9
                assert cheb_to_lane(grid.position(i, j, tuple(step)), lane, grid) <= 0.25 + 1e-9
            assert pl["xy"][0][1] >= pl["xy"][-1][1]  # bottom of the image first
            count += 1
    return count


@pytest.fixture(scope="module")
def tusimple_root(fixtures_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tusimple")
    # the fixtures under their own names: label_data*.json -> train, test_label*.json -> test
    for rel in (TUSIMPLE, TUSIMPLE_TEST):
        shutil.copy(fixtures_dir / rel, root / Path(rel).name)
        draw_frames(root, root / Path(rel).name)
    return root


def test_tusimple_builds_verifies_and_lanes_lie_on_the_lane(tusimple_root, tmp_path):
    src = get_source("tusimple", data_root=tusimple_root)
    assert src.describe()["files"] == ["label_data.EXCERPT.json", "test_label.EXCERPT.json"]
    summary = build(tmp_path / "out", name="tusimple", data_root=str(tusimple_root))
    # 80 + 110 lane slots; the one all -2 slot (clips/0313-1/51660/20.jpg) is "no lane", left out
    assert summary["images"] == 50 and summary["targets"] == 189 and summary["errors"] == 0
    assert all(not r.problems for r in verify_dir(str(tmp_path / "out")))
    assert check_lane_targets(tmp_path / "out") == 189
    ds = Dataset(str(tmp_path / "out"))
    key = sample_key("tusimple", "train", "clips/0313-1/51660/20")  # the path, escaped (FORMAT.md section 7)
    frame = next(s for s in ds.samples() if s.key == key)
    assert [t["target_id"] for t in frame.meta["targets"]] == ["lane0", "lane1", "lane2"]
    assert sorted(t["sentences"][0] for t in frame.meta["targets"]) == [
        f"lane marking {k} of 3 from the left" for k in (1, 2, 3)]
    assert {s.meta["split"] for s in ds.samples()} == {"train", "test"}
    only_test = list(get_source("tusimple", data_root=tusimple_root, split="test").records())
    assert len(only_test) == 30 and {r.split for r in only_test} == {"test"}


def test_tusimple_bad_lines_are_quarantined(tmp_path):
    good = {"lanes": [[-2, 100, 200, 300], [-2, -2, 640, -2]], "h_samples": [400, 500, 600, 700], "raw_file": "clips/a/1/20.jpg"}
    lines = [json.dumps(good), "{not json", json.dumps({"lanes": [[1, 2]], "h_samples": [400, 500, 600], "raw_file": "clips/a/2/20.jpg"}),
             json.dumps({**good, "raw_file": "clips/a/3/20.jpg"})]
    (tmp_path / "label_data_x.json").write_text("\n".join(lines) + "\n")
    for clip in ("1", "2"):
        (tmp_path / "clips/a" / clip).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "clips/a" / clip / "20.jpg"), np.full((720, 1280, 3), 90, np.uint8))
    recs = {r.image_id: r for r in get_source("tusimple", data_root=tmp_path).records()}
    assert [t.target_id for t in recs["clips/a/1/20"].targets] == ["lane0", "lane1"]
    assert [e.reason.split(": ")[1] for e in recs["label_data_x.json:2"].errors] == ["not valid JSON"]
    assert recs["clips/a/2/20"].errors[0].reason.endswith("lane 0 is not 3 numbers (one per h_sample)")
    assert recs["clips/a/3/20"].errors[0].reason.startswith("missing image file")
    assert [e.ann_id for e in recs["clips/a/3/20"].errors] == [None, 0, 1]  # one per lane lost
    # the single-point lane collapses to one anchor: quarantined at annotate, never dropped
    summary = build(tmp_path / "out", name="tusimple", data_root=str(tmp_path))
    errors = [json.loads(x) for x in (tmp_path / "out/errors.jsonl").read_text().splitlines()]
    assert summary["targets"] == 1 and any("fewer than 2 anchors" in e["reason"] and e["ann_id"] == 1 for e in errors)


def test_culane_folder_without_list(fixture_path, tmp_path):
    root = fixture_path(KHALED)
    recs = list(get_source("culane", data_root=root).records())
    assert [r.image_id for r in recs] == [f"nightblur05312336_0004.MP4/{k}" for k in ("00000", "00810", "01410", "03060")]
    assert recs[0].errors[0].reason.startswith("missing image file") and len(recs[0].errors) == 4
    assert [len(r.targets) for r in recs[1:]] == [3, 4, 4] and (recs[1].width, recs[1].height) == (1640, 590)
    # lane 4 of 01410 reaches x=1644.3: clipped to the image edge
    assert max(x for x, _ in recs[2].targets[3].polyline) == 1640.0
    summary = build(tmp_path / "out", name="culane", data_root=str(root))
    assert summary["targets"] == 11 and summary["targets_seen"] == 14
    assert all(not r.problems for r in verify_dir(str(tmp_path / "out")))
    assert check_lane_targets(tmp_path / "out") == 11


def test_culane_with_list(fixture_path, tmp_path):
    root = tmp_path / "culane"
    shutil.copytree(fixture_path(VBUFA), root)
    (root / "list/train_gt.EXCERPT.txt").rename(root / "list/train_gt.txt")
    cv2.imwrite(str(root / f"{VBUFA_FRAME}.jpg"), np.full((590, 1640, 3), 80, np.uint8))
    src = get_source("culane", data_root=root, list="list/train_gt.txt")
    recs = list(src.records())
    assert src.describe()["split"] == "train" and len(recs) == 133
    built = [r for r in recs if r.targets]
    assert [r.image_id for r in built] == [VBUFA_FRAME] and len(built[0].targets) == 4
    assert all(r.errors[0].reason.startswith("missing lane file") for r in recs if not r.targets)
    summary = build(tmp_path / "out", name="culane", data_root=str(root), list="list/train_gt.txt")
    assert summary["images_written"] == 1 and summary["targets"] == 4 and summary["errors"] == 132
    assert all(not r.problems for r in verify_dir(str(tmp_path / "out")))
    assert check_lane_targets(tmp_path / "out") == 4


def test_lane_rule_order_clipping_and_simplification():
    grid = Grid(10, 100, 100)
    # top-first input is reversed; an exact duplicate is dropped
    assert clean_lane([(50, 10), (50, 10), (50, 90)], 100, 100) == [(50.0, 90.0), (50.0, 10.0)]
    # leaves at the right edge and re-enters: the crossing points are vertices, the longest piece is kept
    pts = clean_lane([(90, 100), (130, 80), (90, 60), (10, 0)], 100, 100)
    assert pts == [(100.0, 65.0), (90.0, 60.0), (10.0, 0.0)]
    with pytest.raises(ValueError, match="entirely outside"):
        clean_lane([(-5, 10), (-1, 90)], 100, 100)
    # a straight lane sampled densely keeps only its two ends
    line = [(20 + k, 95 - 2 * k) for k in range(40)]
    assert simplify(line, grid) == [0, 39]
    pl = lane_polyline(line, grid)
    assert pl["anchors"] == [[2, 9], [5, 1]] and pl["tokens"] == "<pl><grid_2_9><grid_5_1></pl>"
    # (20, 95): anchor (25, 95), one step (5 px) left lands exactly on it
    assert pl["steps"][0] == [-1, 0] and pl["refine"]["answer"].startswith("<offset><pl><OFF_-1_0>")
    with pytest.raises(ValueError, match="fewer than 2 anchors"):
        lane_polyline([(21, 21), (28, 28)], grid)


def test_verify_catches_a_tampered_polyline(fixture_path, tmp_path):
    from getok_data.verify import check_sample

    build(tmp_path / "out", name="culane", data_root=str(fixture_path(KHALED)))
    s = next(iter(Dataset(str(tmp_path / "out")).samples()))
    assert check_sample(s.key, s.members)[1] == []
    for change in ("anchor", "step", "tokens"):
        meta = json.loads(s.members["json"])
        pl = meta["targets"][0]["polyline"]
        if change == "anchor":
            pl["anchors"][0][0] += 1
        elif change == "step":
            pl["steps"][0] = [1, 1] if pl["steps"][0] != [1, 1] else [-1, -1]
        else:
            meta["targets"][0]["tokens"]["pl"] = "<pl><grid_0_0><grid_1_1></pl>"
        _, problems = check_sample(s.key, {**s.members, "json": json.dumps(meta).encode()})
        assert len(problems) == 1 and ("polyline" in problems[0] or "tokens.pl" in problems[0]), problems
