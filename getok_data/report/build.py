"""``getok-data report``: a build (and optionally a score run) as a static site that opens anywhere.

The folder holds everything the page needs: ``index.html``, ``report.js``, ``report.css`` (copied
from ``assets/``), the data as JavaScript files (``data/*.js``: they load from ``file://``, where a
browser refuses ``fetch`` of JSON), one thumbnail and one full-size copy per image, and each
target's GT mask and decoded union as small transparent PNGs (drawn by ``inspect``'s
``target_masks``: one renderer). Anchors, region labels, offset arrows, box and point answers
are drawn by the page from the sample's strings, so a target costs a few kilobytes.

Layout: ``data/overview.js`` (counts, histograms, quarantine reasons, config, metrics),
``data/targets.js`` (one row per target, columns listed once), ``data/predictions.js`` (with
``--pred``: every scored row), ``data/samples/<key>.js`` (loaded when a target is opened),
``thumbs/<key>.jpg``, ``images/<key>.<ext>``, ``masks/<key>/<target index>-{gt,union,pred<k>}.png``.
Every file is written atomically; the folder is replaced only when complete.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import time
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..atomic import write_atomic
from ..dataset import Dataset, Sample
from ..decode import TableDecoder
from ..export.rows import ALL_TASKS, STAGES, ExportStats, rows_of_meta
from ..inspect import decoded_union, sample_rgb, target_masks
from ..tokens import Grid, decode_box, decode_point
from ..tokens.answers import parse_answer
from ..tokens.codec import ParseError, parse

THUMB_SIDE = 192
ASSETS = ("index.html", "report.js", "report.css")
IOU_BINS = 10
# colours of the overlays (the page's legend uses the same), RGBA
GT_RGBA = (60, 200, 60, 110)
UNION_RGBA = (255, 0, 255, 100)
PRED_RGBA = (0, 150, 255, 110)


class ReportError(ValueError):
    """The report cannot be made (no build there, an unreadable prediction file)."""


def _js(name: str, value: Any) -> bytes:
    """A data file the page loads with a <script> tag: one global assignment."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return f"window.{name} = {text};\n".encode()


def _mask_png(mask: np.ndarray, rgba: tuple[int, int, int, int]) -> bytes:
    """A palette PNG: transparent background, ``rgba`` where the mask is set (a few KB)."""
    img = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, *rgba[:3]] + [0] * (256 * 3 - 6))
    img.info["transparency"] = bytes([0, rgba[3]] + [255] * 254)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True, transparency=bytes([0, rgba[3]]))
    return buf.getvalue()


def _thumb(rgb: np.ndarray) -> bytes:
    img = Image.fromarray(rgb)
    img.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


_NUMBER = re.compile(r"\d+(\.\d+)?")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def reason_kind(reason: str) -> str:
    """A quarantine reason with its ids, numbers and names blanked, so like reasons group together."""
    return _NUMBER.sub("N", _QUOTED.sub("'…'", reason))[:160]


def _histogram(values: list[float], lo: float, hi: float, bins: int) -> dict:
    counts = np.histogram(values, bins=bins, range=(lo, hi))[0].tolist() if values else [0] * bins
    return {"lo": lo, "hi": hi, "counts": counts}


class _PredIndex:
    """Scored rows by target (score's per-sample output) and the prediction texts by row id."""

    def __init__(self, build: str, pred: Path, work: Path):
        from ..score import score_build
        from ..score.predictions import read_predictions

        per = work / "scored.jsonl"
        self.report = score_build(build, pred, per_sample=per)
        self.rows = [json.loads(line) for line in per.read_text().splitlines()]
        per.unlink()
        preds = read_predictions(pred)
        self.text = {p.id: p.text for p in preds.by_id.values()}
        self.text.update({p.id: p.text for p in preds.by_alt.values()})
        self.by_target: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for r in self.rows:
            self.by_target[(r["key"], str(r["target_id"]))].append(r)


def _score_of(row: dict) -> float | None:
    for k in ("iou", "box_iou", "density_f1", "density_f1_50", "score"):
        if row.get(k) is not None:
            return float(row[k])
    if "hit" in row:
        return float(bool(row["hit"]))
    return None


def _failure(row: dict, text: str | None, n: int) -> str:
    """Why a scored row failed, in words ('' when it did not)."""
    if row.get("missing"):
        return "no prediction"
    if not row.get("format_ok"):
        try:
            parse(text or "", n)
        except (ParseError, ValueError) as e:
            return f"malformed: {e}"
        return f"not a {row['task']} answer"
    score = _score_of(row)
    if score is not None and score < 0.5:
        return f"score {score:.3f} < 0.5"
    return ""


def _pred_item(sample: Sample, t_index: int, row: dict, text: str | None, decoder: TableDecoder, grid, folder: Path,
               k: int) -> dict:
    """One prediction of a target as the page draws it: text, score, failure, decoded geometry."""
    n = grid.n
    item: dict[str, Any] = {"id": row["id"], "task": row["task"], "stage": row["stage"], "text": text or "",
                            "score": _score_of(row), "ok": bool(row.get("format_ok")),
                            "failure": _failure(row, text, n)}
    parsed = parse_answer(text, n, row["task"]) if text is not None and row.get("format_ok") else None
    if parsed is None:
        return item
    if row["task"] == "seg" and parsed.anchors:
        union = decoded_union(sample, parsed.anchors, (int(grid.width), int(grid.height)), decoder)
        name = f"{t_index}-pred{k}.png"
        write_atomic(folder / name, _mask_png(union, PRED_RGBA))
        item["mask"] = name
        item["anchors"] = [list(grid.anchor(i, j)) for i, j in parsed.anchors]
    elif row["task"] == "box":
        item["box"] = decode_box(parsed, grid)
    elif row["task"] == "point":
        item["point"] = decode_point(parsed, grid)
    elif row["task"] in ("points", "boxes"):
        item["points" if row["task"] == "points" else "boxes"] = [
            decode_point(p, grid) if row["task"] == "points" else decode_box(p, grid) for p in parsed]
    return item


def build_report(build: str, out: str | Path, pred: str | Path | None = None, limit: int | None = None,
                 progress: bool = True) -> dict:
    """Write the report of ``build`` (and of the predictions ``pred``) into the folder ``out``."""
    t0 = time.perf_counter()
    ds = Dataset(build)
    if not ds.shard_names():
        raise ReportError(f"{build}: no shard-*.tar found")
    out = Path(out)
    if out.exists() and not (out / "index.html").exists() and any(out.iterdir()):
        raise ReportError(f"{out}: exists and is not a report folder (no index.html); refusing to write into it")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data" / "samples").mkdir(parents=True)
    preds = _PredIndex(build, Path(pred), tmp) if pred is not None else None
    manifest = ds.manifest

    columns = ["key", "target", "source", "split", "category", "sentence", "tokens", "iou", "low_quality", "index"]
    if preds is not None:
        columns += ["score", "failures"]
    rows: list[list] = []
    counts: dict[str, Counter] = {"source": Counter(), "split": Counter(), "task": Counter()}
    images: Counter = Counter()
    ious, token_counts = [], []
    low = 0
    n_samples = sum(len(s.get("keys") or []) for s in ds.sidecars()) or None
    bar = tqdm(total=limit or n_samples, desc="report", unit="img", disable=not progress, dynamic_ncols=True)
    for k, sample in enumerate(ds.samples()):
        if limit is not None and k >= limit:
            break
        meta = sample.meta
        key = sample.key
        images[(meta.get("source"), meta.get("split"))] += 1
        if not meta["targets"]:
            bar.update()
            continue
        masks = tmp / "masks" / key
        masks.mkdir(parents=True)
        decoder = TableDecoder(sample.table, *sample.grid)
        per_sample = {"key": key, "width": meta["width"], "height": meta["height"], "image": f"images/{key}.{sample.image_ext}",
                      "grid": meta["grid"], "source": meta.get("source"), "split": meta.get("split"), "targets": []}
        for task, c in Counter(r.fields["task"] for r in rows_of_meta(meta, STAGES, ALL_TASKS, ExportStats())).items():
            counts["task"][task] += c
        rgb = sample_rgb(sample)  # once per image: the thumbnail; the masks are at its size
        size = (rgb.shape[1], rgb.shape[0])
        grid = Grid(meta["grid"]["n"], size[0], size[1], meta["grid"]["m"])
        for ti, t in enumerate(meta["targets"]):
            gt, union = target_masks(sample, ti, size, decoder)
            write_atomic(masks / f"{ti}-gt.png", _mask_png(gt, GT_RGBA))
            write_atomic(masks / f"{ti}-union.png", _mask_png(union, UNION_RGBA))
            sents = [s for s in t.get("sentences") or [] if s and s.strip()]
            view = {"target_id": str(t["target_id"]), "category": t.get("category") or "", "sentences": sents,
                    "tokens": t.get("tokens") or {}, "token_iou": t.get("token_iou"),
                    "token_count": t.get("token_count"), "anchors": t.get("anchors") or [],
                    "anchor_xy": [list(grid.anchor(i, j)) for i, j in t.get("anchors") or []],
                    "regions": t.get("regions") or "", "offsets": t.get("offsets") or "",
                    "box": t.get("box"), "point_xy": None, "no_target": bool(t.get("no_target")),
                    "low_quality": bool(t.get("low_quality")), "seg_reason": t.get("seg_reason")}
            point = (t.get("tokens") or {}).get("point")
            if point:
                view["point_xy"] = list(decode_point(parse(point, grid.n)[0], grid))
            row = [key, str(t["target_id"]), meta.get("source"), meta.get("split"), t.get("category") or "",
                   sents[0] if sents else "", t.get("token_count"), t.get("token_iou"), bool(t.get("low_quality")),
                   [k, ti]]
            if preds is not None:
                scored = preds.by_target.get((key, str(t["target_id"])), [])
                view["predictions"] = [_pred_item(sample, ti, r, preds.text.get(r["id"]), decoder, grid, masks, pk)
                                       for pk, r in enumerate(scored)]
                scores = [p["score"] for p in view["predictions"] if p["score"] is not None]
                row += [float(np.mean(scores)) if scores else None, sum(bool(p["failure"]) for p in view["predictions"])]
            per_sample["targets"].append(view)
            rows.append(row)
            counts["source"][meta.get("source")] += 1
            counts["split"][meta.get("split")] += 1
            if t.get("token_iou") is not None and not t.get("no_target"):
                ious.append(float(t["token_iou"]))
                token_counts.append(int(t.get("token_count") or 0))
            low += bool(t.get("low_quality"))
        write_atomic(tmp / "images" / f"{key}.{sample.image_ext}", sample.image)
        write_atomic(tmp / "thumbs" / f"{key}.jpg", _thumb(rgb))
        write_atomic(tmp / "data" / "samples" / f"{key}.js", f"GETOK.sampleLoaded({json.dumps(key)}, ".encode()
                     + json.dumps(per_sample, separators=(",", ":"), allow_nan=False).encode() + b");\n")
        bar.update()
    bar.close()

    errors = ds.storage.read_bytes("errors.jsonl").decode("utf-8", "replace") if ds.storage.exists("errors.jsonl") else ""
    reasons: dict[str, dict] = {}
    for line in errors.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        kind = reason_kind(str(e.get("reason", "")))
        entry = reasons.setdefault(kind, {"reason": kind, "count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < 3:
            entry["examples"].append(e)
    overview = {
        "build": str(build), "generated_by": "getok-data report", "limit": limit,
        "images": sum(images.values()), "targets": len(rows),
        "images_by": [{"source": s, "split": sp, "images": c} for (s, sp), c in sorted(images.items(), key=str)],
        "counts": {k: dict(sorted(v.items(), key=str)) for k, v in counts.items()},
        "token_iou_hist": _histogram(ious, 0.0, 1.0, IOU_BINS),
        "tokens_hist": _histogram(token_counts, 0, max(token_counts or [1]) + 1, min(20, max(token_counts or [1]) + 1)),
        "mean_token_iou": float(np.mean(ious)) if ious else None,
        "low_quality": low, "low_quality_share": low / len(rows) if rows else 0.0,
        "quarantine": sorted(reasons.values(), key=lambda r: (-r["count"], r["reason"])),
        "quarantined": sum(r["count"] for r in reasons.values()),
        "config": manifest.config if manifest is not None else None,
        "manifest": {"format_version": getattr(manifest, "format_version", None),
                     "config_hash": getattr(manifest, "config_hash", None)} if manifest is not None else None,
    }
    if preds is not None:
        overview["score"] = {k: preds.report[k] for k in ("metrics", "conventions", "join", "decoder", "pred")}
        n = ds.grid_n()  # the build has shards (checked above), so a manifest or a first sample says it
        pred_rows = [[r["id"], r["task"], r["stage"], _score_of(r), bool(r.get("format_ok")), bool(r.get("missing")),
                      _failure(r, preds.text.get(r["id"]), n), r["key"], str(r["target_id"])] for r in preds.rows]
        write_atomic(tmp / "data" / "predictions.js", _js("GETOK_PREDICTIONS", {
            "columns": ["id", "task", "stage", "score", "format_ok", "missing", "failure", "key", "target"],
            "rows": pred_rows}))
    else:
        write_atomic(tmp / "data" / "predictions.js", _js("GETOK_PREDICTIONS", None))
    write_atomic(tmp / "data" / "overview.js", _js("GETOK_OVERVIEW", overview))
    write_atomic(tmp / "data" / "targets.js", _js("GETOK_TARGETS", {"columns": columns, "rows": rows}))
    for name in ASSETS:
        write_atomic(tmp / name, resources.files("getok_data.report").joinpath("assets", name).read_bytes())
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"out": str(out), "index": str(out / "index.html"), "images": overview["images"], "targets": len(rows),
            "predictions": len(preds.rows) if preds is not None else 0, "bytes": size,
            "bytes_per_1k_targets": round(size * 1000 / len(rows)) if rows else None,
            "seconds": round(time.perf_counter() - t0, 3)}
