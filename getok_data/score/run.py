"""``getok-data score``: join predictions onto a build, score every row, summarise.

One pass over the build's samples, in the export's order; nothing is held but the scored rows'
plain fields (and the gallery's few entries).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from ..atomic import write_jsonl
from ..dataset import Dataset, Sample, iter_tar
from .decoders import MaskDecoder, segmenter_config
from .gallery import Gallery
from .metrics import COUNTS, DEFAULT_COUNT, DEFAULT_EMPTY_UNION, EMPTY_UNION, breakdown
from .predictions import read_predictions
from ..export.rows import ALL_TASKS, NEW_TASKS, TASKS
from .rows import expected_rows
from .scoring import RowScorer

MISSING = ("fail", "skip")
#: What an empty prediction file is scored on under ``--missing fail``: the default export's grid rows.
DEFAULT_GROUPS = tuple(f"grid/{t}" for t in TASKS)


class ScoreError(ValueError):
    """Scoring cannot start (bad option, unreadable build); the message says what and where."""


def _check(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ScoreError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def score_build(data: str, pred_path: str | os.PathLike, decoder: str = "table",
                segmenter_overrides: Mapping[str, Any] | None = None, empty_union: str = DEFAULT_EMPTY_UNION,
                count: str = DEFAULT_COUNT, missing: str = "fail", per_sample: str | os.PathLike | None = None,
                gallery: str | os.PathLike | None = None, gallery_k: int = 4) -> dict:
    """The metrics report (one JSON object) of the predictions at ``pred_path`` on build ``data``.

    ``missing``: ``fail`` scores an export row without a prediction as a format failure when its
    metrics group (``grid/seg`` ...) has at least one prediction, and every grid row when no
    prediction joined at all, every row of the default tasks' grid groups (an empty file scores 0,
    it does not vanish); ``skip`` leaves it
    out. Otherwise groups without any prediction are not scored (their row counts are reported).
    """
    _check("decoder", decoder, ("table", "segmenter"))
    _check("empty-union convention", empty_union, EMPTY_UNION)
    _check("count", count, COUNTS)
    _check("missing policy", missing, MISSING)
    if not Path(pred_path).is_file():
        raise ScoreError(f"{pred_path}: no such prediction file")
    ds = Dataset(data)
    preds = read_predictions(pred_path)
    seg_cfg = None
    if decoder == "segmenter":
        manifest = ds.manifest
        if manifest is None and not (segmenter_overrides or {}).get("name"):
            raise ScoreError(f"{data}: no manifest.json to take the segmenter from; pass --segmenter")
        seg_cfg = segmenter_config(manifest.config if manifest else None, segmenter_overrides or {})
    masks = MaskDecoder(decoder, seg_cfg)
    # the captioning and multi-instance rows are derived (and their instances decoded) only when
    # some prediction answers them: a seg / box / point run costs what it always did
    asked = {pid.rsplit("/", 1)[-1] for pid in preds.by_id} | {alt[3] for alt in preds.by_alt}
    tasks = tuple(t for t in ALL_TASKS if t not in NEW_TASKS or t in asked)
    keep = Gallery(gallery_k) if gallery else None
    every: list[dict] = []
    bad_samples: list[str] = []
    for sample, rows, scorer in _samples(ds, masks, empty_union, bad_samples, tasks):
        for row in rows:
            pred = preds.lookup(row.id, row.alt)
            fields, result = scorer.score(row, pred)
            every.append(fields)
            if keep is not None and pred is not None and row.task in ("seg", "box"):
                gt = (scorer.masks.table.gt(row.target["mask_rle"]) if row.task == "seg" else row.target["box"])
                keep.offer(fields.get("iou", fields.get("box_iou", 0.0)), row.id, sample.image, gt, result)
    predicted = {r["group"] for r in every if not r["missing"]}
    if not predicted and missing == "fail":
        # Nothing joined at all (an empty or wholly unusable file): every grid row is a failure,
        # so the figures say 0, not "no data".
        predicted = {r["group"] for r in every if r["group"] in DEFAULT_GROUPS}
    absent = [r for r in every if r["missing"]]
    rows_out = [r for r in every if not r["missing"] or (missing == "fail" and r["group"] in predicted)]
    unknown = preds.unknown()
    report = {
        "data": str(data), "pred": str(pred_path), "decoder": decoder,
        "segmenter": masks.identity or None,
        "conventions": {"empty_union": empty_union, "count": count, "missing": missing},
        "join": {
            "predictions": len(preds.by_id) + len(preds.by_alt), "matched": len(every) - len(absent),
            "unknown": len(unknown), "unknown_examples": unknown[:5],
            "duplicates": preds.duplicates, "bad_samples": len(bad_samples),
            "bad_sample_examples": bad_samples[:5], "bad_rows": len(preds.bad_rows),
            "bad_row_examples": preds.bad_rows[:5],
            "missing": dict(sorted(Counter(r["group"] for r in absent if r["group"] in predicted).items())),
            "unpredicted": dict(sorted(Counter(r["group"] for r in absent if r["group"] not in predicted).items())),
        },
        "metrics": breakdown(rows_out, count),
    }
    if per_sample:
        _write_jsonl(per_sample, rows_out)
    if keep is not None:
        keep.render(gallery)
    return report


def _samples(ds: Dataset, masks: MaskDecoder, empty_union: str, bad: list[str], tasks: tuple[str, ...] = ALL_TASKS):
    """(sample, its export rows, its scorer) for every readable sample; an unreadable one is
    recorded in ``bad`` (``shard/key: why``) and its predictions end up ``unknown``."""
    names = ds.shard_names()
    if not names:
        raise ScoreError(f"{ds.url}: no shard-*.tar found")
    for name in names:
        for key, members in iter_tar(ds.read_shard(name)):
            try:
                sample = Sample(key, members, name)
                rows = list(expected_rows(sample.meta, tasks=tasks))
                scorer = RowScorer(masks.for_sample(sample), sample.meta, empty_union) if rows else None
            except (ValueError, KeyError, TypeError) as e:  # DatasetError, TableError, bad JSON, bad fields
                bad.append(f"{name}/{key}: {type(e).__name__}: {e}")
                continue
            if rows:
                yield sample, rows, scorer


def _write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_jsonl(path, rows, sort_keys=True)
