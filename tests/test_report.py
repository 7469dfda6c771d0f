"""``getok-data report``: the static site of a REFER build (with planted bad inputs) and of a score
run, opened from ``file://`` in a real headless Chromium (the system's ``/usr/bin/chromium``,
driven by Playwright; ``make setup`` installs it) with every page script running."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from getok_data.cli import main as cli
from getok_data.config import load_config
from getok_data.dataset import Dataset
from getok_data.export.rows import ExportStats, iter_rows
from pipelines.build import run_build

from test_build import make_refer_tree

CHROMIUM = os.environ.get("GETOK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = os.environ.get("GETOK_REPORT_SCREENSHOTS")  # a folder (docs/) to keep the screenshots in


@pytest.fixture(scope="module")
def refer(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    make_refer_tree(root / "D")
    build = root / "build"
    run_build(load_config(None, {"source": {"name": "refcoco", "data_root": str(root / "D"),
                                            "image_root": str(root / "D/images/mscoco/images/train2014")},
                                 "grid": {"n": 8}, "build": {"out": str(build), "max_error_rate": 1.0}}), progress=False)
    # predictions: the truth for some rows, a wrong answer, a malformed one; the rest missing
    rows = [r for _, rs in iter_rows(str(build), ("grid",), ("seg", "box", "point"), ExportStats()) for r in rs]
    lines = []
    for k, r in enumerate(rows[:12]):
        text = r.answer if k % 3 == 0 else ("<seg><grid_0_0>" if k % 3 == 1 else r.answer.replace("grid_", "grid_0"))
        lines.append({"id": r.id, "text": text})
    pred = root / "pred.jsonl"
    pred.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = root / "site"
    res = CliRunner().invoke(cli, ["report", str(build), "--out", str(report), "--pred", str(pred), "--no-progress"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    targets = [(s.key, t) for s in Dataset(str(build)).samples() for t in s.meta["targets"]]
    return {"build": build, "report": report, "summary": json.loads(res.output.strip().splitlines()[-1]),
            "targets": targets, "pred": pred, "lines": lines}


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM, "chromium not found: `make setup` installs Debian's chromium (or set GETOK_CHROMIUM)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


class Page:
    """One tab on the report, recording console errors, page errors and every requested URL."""

    def __init__(self, browser, report: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.base = (report / "index.html").as_uri()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.urls.append(r.url))

    def open(self, hash_: str):
        if self.page.url.startswith(self.base):  # the same document: only the hash changes, so wait for a new render
            self.page.evaluate("document.body.dataset.ready = ''")
        self.page.goto(self.base + hash_)
        self.page.wait_for_function("document.body.dataset.ready === '1'")
        self.page.wait_for_load_state("load")
        return self.page

    def shot(self, name: str, tmp: Path) -> Path:
        path = (Path(SCREENSHOTS) if SCREENSHOTS else tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.page.close()


def _not_blank(png: Path) -> None:
    px = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert px.std() > 10 and len(np.unique(px)) > 50, f"{png} looks blank"


def test_every_target_is_listed_with_its_token_iou_from_file_urls(refer, browser, tmp_path):
    tab = Page(browser, refer["report"])
    page = tab.open("#targets?size=all")
    rows = page.query_selector_all("tr.target-row")
    assert len(rows) == len(refer["targets"]) == refer["summary"]["targets"] > 5
    shown = {(r.get_attribute("data-key"), r.get_attribute("data-target")): r.query_selector("td.iou").inner_text()
             for r in rows}
    for key, t in refer["targets"]:
        assert shown[(key, str(t["target_id"]))] == f"{t['token_iou']:.3f}"
    assert tab.errors == [] and page.eval_on_selector("#errors", "e => e.hidden")
    assert tab.urls and all(u.startswith("file://") for u in tab.urls), [u for u in tab.urls if not u.startswith("file")]
    tab.close()


def test_filters_narrow_the_table_and_paging_holds_the_rest(refer, browser):
    tab = Page(browser, refer["report"])
    page = tab.open("#targets")
    total = len(page.query_selector_all("tr.target-row"))
    word = refer["targets"][0][0]  # one image's key: its targets, not the other images'
    assert len({k for k, _ in refer["targets"]}) > 1
    page.fill("#q", word)
    page.press("#q", "Enter")
    page.wait_for_function(f"location.hash.includes('q={word}')")
    page.wait_for_function("document.querySelectorAll('tr.target-row').length > 0")
    narrowed = page.query_selector_all("tr.target-row")
    want = sum(any(word.lower() in str(v).lower() for v in (k, t["target_id"], t["category"], (t["sentences"] or [""])[0]))
               for k, t in refer["targets"])
    assert 0 < len(narrowed) == want < total
    cut = round(float(np.median([t["token_iou"] for _, t in refer["targets"]])), 2)
    page = tab.open(f"#targets?min={cut}&size=all")
    ious = [float(r.query_selector("td.iou").inner_text()) for r in page.query_selector_all("tr.target-row")]
    assert ious and all(v >= cut for v in ious) and len(ious) == sum(t["token_iou"] >= cut for _, t in refer["targets"])
    page = tab.open("#targets?sort=iou&desc=1&size=all")
    ious = [float(r.query_selector("td.iou").inner_text()) for r in page.query_selector_all("tr.target-row")]
    assert ious == sorted(ious, reverse=True)
    page = tab.open("#targets?size=2")
    assert len(page.query_selector_all("tr.target-row")) == 2
    page.click("#next-page")
    page.wait_for_function("location.hash.includes('page=2')")
    assert page.inner_text("#page-info").strip().startswith("page 2 of")
    assert tab.errors == []
    tab.close()


def test_a_target_view_shows_its_overlays(refer, browser, tmp_path):
    tab = Page(browser, refer["report"])
    index = next(i for i, (_, t) in enumerate(refer["targets"]) if len(t["anchors"]) >= 2)
    key, t = refer["targets"][index]
    page = tab.open(f"#target/{index}")
    assert page.inner_text("#target-title") == f"{key} / {t['target_id']}"
    for layer in ("image", "gt", "union"):
        img = page.query_selector(f"#stage img[data-layer='{layer}']")
        assert img.evaluate("e => e.complete && e.naturalWidth > 0"), layer
    assert len(page.query_selector_all("#stage [data-layer='anchors'] circle")) == len(t["anchors"])
    assert len(page.query_selector_all("#stage [data-layer='regions'] circle")) == len(t["regions"]) == 64
    assert page.query_selector("#stage [data-layer='answers'] rect")  # the box answer
    assert page.is_hidden("#stage [data-layer='regions']")
    page.check("input[data-toggle='regions']")
    assert page.is_visible("#stage [data-layer='regions']")
    page.uncheck("input[data-toggle='gt']")
    assert page.is_hidden("#stage img[data-layer='gt']")
    page.check("input[data-toggle='gt']")
    assert "seg" in page.inner_text("#tokens") and t["tokens"]["seg"] in page.inner_text("#tokens")
    _not_blank(tab.shot("report-target.png", tmp_path))
    page = tab.open("#overview")
    assert page.query_selector("#quarantine") and "missing image file" in page.inner_text("#quarantine")
    assert "token IoU" in page.inner_text("main")
    _not_blank(tab.shot("report-overview.png", tmp_path))
    assert tab.errors == []
    tab.close()


def test_with_predictions_every_id_is_on_the_page_with_its_score(refer, browser):
    tab = Page(browser, refer["report"])
    page = tab.open("#predictions?size=all")
    shown = {r.get_attribute("data-id"): (r.query_selector("td.score").inner_text(), r.query_selector("td.failure").inner_text())
             for r in page.query_selector_all("tr.prediction-row")}
    per = refer["report"].parent / "per.jsonl"
    from getok_data.score import score_build

    report = score_build(str(refer["build"]), refer["pred"], per_sample=per)
    scored = {r["id"]: r for r in map(json.loads, per.read_text().splitlines())}
    assert set(shown) == set(scored) and {x["id"] for x in refer["lines"]} <= set(shown)
    for rid, r in scored.items():
        value = r.get("iou", r.get("box_iou", float(r["hit"]) if "hit" in r else None))
        assert shown[rid][0] == f"{value:.3f}", rid
        assert (shown[rid][1] == "ok") == (r["format_ok"] and value >= 0.5), (rid, shown[rid])
    malformed = [x["id"] for x in refer["lines"] if x["text"].endswith("<grid_0_0>")]
    assert all(shown[m][1].startswith("malformed: position") for m in malformed)
    page = tab.open("#overview")
    assert report["metrics"]["all"]["grid/seg"]["n"] and "grid/seg" in page.inner_text("#score")
    first = refer["lines"][0]["id"]  # a correct seg answer: its decoded mask is drawn
    index = next(i for i, (k, t) in enumerate(refer["targets"]) if first.startswith(f"{k}/{t['target_id']}/"))
    page = tab.open(f"#target/{index}")
    assert first in page.inner_text("#target-predictions")
    assert page.query_selector("#stage img[data-layer='pred']").evaluate("e => e.naturalWidth > 0")
    assert tab.errors == []
    tab.close()


def test_report_is_small_and_refuses_bad_input(refer, tmp_path):
    s = refer["summary"]
    assert s["bytes"] == sum(p.stat().st_size for p in refer["report"].rglob("*") if p.is_file())
    assert s["bytes_per_1k_targets"] == round(s["bytes"] * 1000 / s["targets"])
    assert not list(refer["report"].parent.glob("*.tmp"))  # written aside, then renamed
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no such build folder" in res.output and "Traceback" not in res.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["report", str(refer["build"]), "--out", str(tmp_path / "taken")])
    assert res.exit_code == 2 and "not a report folder" in res.output
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    res = CliRunner().invoke(cli, ["report", str(refer["build"]), "--out", str(tmp_path / "lim"), "--limit", "1",
                                   "--no-progress"])
    assert res.exit_code == 0 and json.loads(res.output.strip().splitlines()[-1])["images"] == 1
