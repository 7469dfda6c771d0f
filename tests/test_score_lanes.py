"""``getok-data score`` on lane builds: ``<pl>`` rows scored per frame with the TuSimple metric."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from getok_data.cli import main
from getok_data.export import run_export
from getok_data.score import score_build
from getok_data.metrics.lanes import frame_score
from getok_data.score.lanes import read_lane
from test_lanes import KHALED, TUSIMPLE, build, draw_frames


@pytest.fixture(scope="module")
def tusimple(fixtures_dir, tmp_path_factory) -> tuple[Path, list[dict]]:
    """8 frames of the TuSimple excerpt (31 lanes) at grid 32, and its pl export rows."""
    root = tmp_path_factory.mktemp("tus")
    lines = (fixtures_dir / TUSIMPLE).read_text().splitlines()[:8]
    (root / "label_data.json").write_text("\n".join(lines) + "\n")
    draw_frames(root, root / "label_data.json")
    out = root / "out"
    build(out, name="tusimple", data_root=str(root))
    return out, export_rows(out, root / "rows.jsonl")


def export_rows(out: Path, path: Path) -> list[dict]:
    stats = run_export("llamafactory", str(out), path, ("grid", "offset"), ("pl",), None)
    assert stats.rows > 0
    return [json.loads(line) for line in path.read_text().splitlines()]


def preds(path: Path, rows: list[dict], text=lambda r: r["solution"]) -> Path:
    path.write_text("".join(json.dumps({"id": r["id"], "text": text(r)}) + "\n" for r in rows))
    return path


def shift(answer: str, di: int) -> str:
    """Every grid anchor moved ``di`` cells right (clamped to the grid)."""
    return re.sub(r"<grid_(\d+)_(\d+)>", lambda m: f"<grid_{min(31, int(m[1]) + di)}_{m[2]}>", answer)


def test_pl_rows_exported_and_expected(tusimple):
    out, rows = tusimple
    assert {r["task"] for r in rows} == {"pl"} and len(rows) == 2 * 31
    assert all(r["id"].endswith(("/pl", "/refinepl")) for r in rows)
    assert all(r["solution"].startswith("<pl>") for r in rows if r["stage"] == "grid")
    assert all(r["solution"].startswith("<offset><pl>") for r in rows if r["stage"] == "offset")


def test_oracle_one_corrupted_lower_garbage_format_failure(tusimple, tmp_path):
    out, rows = tusimple
    m = score_build(str(out), preds(tmp_path / "o.jsonl", rows))["metrics"]["all"]
    for g in ("grid/pl", "offset/pl"):
        assert m[g]["accuracy"] == 1.0 and m[g]["f1"] == 1.0 and m[g]["fp"] == 0.0 and m[g]["fn"] == 0.0
        assert m[g]["frames"] == 8 and m[g]["tp"] == 31 and m[g]["format_failure"] == 0.0
    assert m["grid/pl"]["pixel_thresh"] == 20.0  # 1280 px wide frames
    grid = [r for r in rows if r["stage"] == "grid"]
    # two cells (80 px) to the right: most lanes missed (a shifted lane may land on its neighbour)
    c = score_build(str(out), preds(tmp_path / "c.jsonl", grid, lambda r: shift(r["solution"], 2)))
    cm = c["metrics"]["all"]["grid/pl"]
    assert cm["accuracy"] < 0.5 and cm["f1"] < 0.5 and cm["fn"] > 0.5 and cm["fp"] > 0.5
    assert cm["format_failure"] == 0.0
    # one lane's answer replaced by garbage: a format failure, one FN, precision still 1
    bad = grid[0]["id"]
    g = score_build(str(out), preds(tmp_path / "g.jsonl", grid, lambda r: "<pl>lane" if r["id"] == bad else r["solution"]))
    gm = g["metrics"]["all"]["grid/pl"]
    assert gm["format_failure"] == pytest.approx(1 / 31) and gm["fn_lanes"] == 1 and gm["precision"] == 1.0
    assert 0.9 < gm["f1"] < 1.0 and gm["accuracy"] < 1.0
    allbad = score_build(str(out), preds(tmp_path / "x.jsonl", grid, lambda r: "no lanes here"))["metrics"]["all"]["grid/pl"]
    assert allbad["format_failure"] == 1.0 and allbad["f1"] == 0.0 and allbad["accuracy"] == 0.0


def test_frame_matching_as_tusimple(tusimple, tmp_path):
    """Answers swapped between the lanes of a frame still match those lanes (per-frame matching),
    while each row's own ``lane_acc`` drops; a missing answer counts as a format failure / FN."""
    out, rows = tusimple
    grid = [r for r in rows if r["stage"] == "grid"]
    by_key: dict[str, list[dict]] = {}
    for r in grid:
        by_key.setdefault(r["key"], []).append(r)
    swapped = {}
    for rs in by_key.values():
        texts = [r["solution"] for r in rs]
        swapped.update({r["id"]: t for r, t in zip(rs, texts[1:] + texts[:1])})
    rep = score_build(str(out), preds(tmp_path / "s.jsonl", grid, lambda r: swapped[r["id"]]))
    m = rep["metrics"]["all"]["grid/pl"]
    assert m["accuracy"] == 1.0 and m["f1"] == 1.0 and m["lane_acc"] < 0.5
    rep = score_build(str(out), preds(tmp_path / "m.jsonl", grid[1:]))
    m = rep["metrics"]["all"]["grid/pl"]
    assert rep["join"]["missing"] == {"grid/pl": 1} and m["fn_lanes"] == 1 and m["format_failure"] == pytest.approx(1 / 31)
    inst = score_build(str(out), preds(tmp_path / "o.jsonl", grid), count="instance")["metrics"]["all"]["grid/pl"]
    assert inst["accuracy"] == 1.0 and inst["n"] == 31  # one sentence per lane: the same units


def test_offset_gain_and_cli_on_culane(fixture_path, tmp_path):
    """CULane (1640 px wide: threshold 25.625 px) through the CLI; a refinement that deletes the
    last vertex of every lane is well formed but loses rows: negative gain."""
    out = tmp_path / "out"
    build(out, name="culane", data_root=str(fixture_path(KHALED)))
    rows = export_rows(out, tmp_path / "rows.jsonl")
    off = [r for r in rows if r["stage"] == "offset"]
    cut = lambda r: re.sub(r"<OFF_-?\d+_-?\d+></pl>", "<DELETE></pl>", r["solution"])  # noqa: E731
    p = preds(tmp_path / "p.jsonl", off, cut)
    res = CliRunner().invoke(main, ["score", "--data", str(out), "--pred", str(p), "--per-sample", str(tmp_path / "ps.jsonl")])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output.strip().splitlines()[-1])["metrics"]["all"]["offset/pl"]
    assert m["format_failure"] == 0.0 and m["refine_gain"] < 0 and m["iou_before"] == 1.0
    assert m["pixel_thresh"] == pytest.approx(25.625) and m["frames"] == 3
    per = [json.loads(x) for x in (tmp_path / "ps.jsonl").read_text().splitlines()]
    assert all(len(r["lane_pred"]) == len(re.findall("<OFF_", cut(o))) for r, o in zip(per, off))


def test_read_lane_end_zone():
    """Rows within half a cell of a predicted end are undecided: hit where the GT has no point."""
    ys = np.array([100.0, 110.0, 120.0, 130.0, 140.0])
    xs, soft = read_lane([[50.0, 135.0], [70.0, 105.0]], ys, end_tol=6.0)
    assert soft.tolist() == [True, True, False, True, True]
    assert xs[0] == 70.0 and xs[4] == 50.0  # beyond an end: the end vertex's x
    assert xs[2] == pytest.approx(60.0)
    bare, none = read_lane([[50.0, 135.0], [70.0, 105.0]], ys)
    assert bare[0] == bare[4] == -2.0 and not none.any()
    # in the metric: a GT lane from 110 to 140 px; the prediction's end zone at 100 px is undecided
    gt = np.array([-2.0, 66.67, 60.0, 53.33, 46.67])
    assert frame_score([xs], [gt], ys, soft=[soft]).accuracy == 1.0
    assert frame_score([xs], [gt], ys).accuracy == pytest.approx(0.8)  # without: row 100 is a miss
