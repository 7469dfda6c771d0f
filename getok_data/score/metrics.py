"""Metrics over scored rows, per task, with the field's conventions made explicit.

Each scored row carries plain fields (``format_ok``, ``tokens``, ``inter``/``union``/``iou``,
``box_iou``, ``hit``, ``gain``, ``no_target``/``pred_empty``). A *unit* is what is counted:
``expression`` (default; every (target, sentence) row counts once, RefCOCO's 10,834 val
expressions) or ``instance`` (every target counts once: its sentences' fields are averaged
first, intersections and unions too; VisionReasoner's counting). Summaries are per task through
:data:`TASK_METRICS`, a registry: a new task (e.g. lanes) adds one file that calls
:func:`register_metric`.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

import numpy as np

COUNTS = ("expression", "instance")
EMPTY_UNION = ("one", "zero")
DEFAULT_COUNT = "expression"
DEFAULT_EMPTY_UNION = "one"

Summary = Callable[[list[dict]], dict]
TASK_METRICS: dict[str, Summary] = {}


def register_metric(task: str) -> Callable[[Summary], Summary]:
    """Register the summary function of a task (``units -> {metric: value}``)."""

    def deco(fn: Summary) -> Summary:
        TASK_METRICS[task] = fn
        return fn

    return deco


def _mean(units: list[dict], key: str) -> float | None:
    vals = [float(u[key]) for u in units if u.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def common(units: list[dict]) -> dict:
    """Counts, format failure rate, tokens per (well-formed) answer, refinement gain."""
    out = {"n": len(units), "format_failure": 1.0 - (_mean(units, "format_ok") or 0.0) if units else None,
           "tokens_per_answer": _mean(units, "tokens")}
    gain = _mean(units, "gain")
    if gain is not None:
        out["refine_gain"] = gain
        out["iou_before"] = _mean(units, "iou_before")
    return out


@register_metric("seg")
def seg_metrics(units: list[dict]) -> dict:
    """gIoU (mean IoU), cIoU (pooled), and N-acc / T-acc where a target can be empty."""
    out = common(units)
    inter, union = sum(u["inter"] for u in units), sum(u["union"] for u in units)
    out.update(giou=_mean(units, "iou"), ciou=inter / union if union else None)
    if any(u.get("no_target") for u in units):
        neg = [u for u in units if u.get("no_target")]
        pos = [u for u in units if not u.get("no_target")]
        out["n_acc"] = _mean(neg, "empty_ok")
        out["t_acc"] = _mean(pos, "nonempty_ok")
        out["n_no_target"] = len(neg)
    return out


@register_metric("box")
def box_metrics(units: list[dict]) -> dict:
    """Acc@0.5, Acc@0.8 (fraction of units with box IoU >= threshold) and mean box IoU."""
    out = common(units)
    ious = np.array([u["box_iou"] for u in units], float)
    out.update(acc50=float(np.mean(ious >= 0.5)) if len(ious) else None,
               acc80=float(np.mean(ious >= 0.8)) if len(ious) else None,
               box_iou=float(ious.mean()) if len(ious) else None)
    return out


@register_metric("point")
def point_metrics(units: list[dict]) -> dict:
    """Hit rate: the predicted point lies inside the GT mask (full resolution)."""
    out = common(units)
    out["hit"] = _mean(units, "hit")
    return out


def units_of(rows: list[dict], count: str) -> list[dict]:
    """``expression``: the rows; ``instance``: one unit per target, its rows' numeric fields
    averaged, the others (key, lists) taken from its first row."""
    if count == "expression":
        return rows
    if count != "instance":
        raise ValueError(f"unknown count {count!r}; valid: {', '.join(COUNTS)}")
    by_target: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_target[(r["key"], r["target_id"])].append(r)
    units = []
    for group in by_target.values():
        # other fields (key, target_id, a lane's vertices) are the first sentence's
        unit = {k: v for k, v in group[0].items() if not isinstance(v, (bool, int, float))}
        for k in {k for r in group for k in r}:
            vals = [r[k] for r in group if isinstance(r.get(k), (bool, int, float)) and r.get(k) is not None]
            if vals:
                unit[k] = float(np.mean(vals))
        units.append(unit)
    return units


def summarize(rows: Iterable[dict], count: str = DEFAULT_COUNT) -> dict:
    """``{group: metrics}`` for every metrics group (``grid/seg``, ``offset/box``, ``refined/seg``, ...)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    out = {}
    for g in sorted(groups):
        task = g.split("/", 1)[1]
        fn = TASK_METRICS.get(task, common)
        out[g] = fn(units_of(groups[g], count))
    return out


def breakdown(rows: list[dict], count: str = DEFAULT_COUNT) -> dict:
    """All rows, then per split and per source."""
    out: dict = {"all": summarize(rows, count), "by_split": {}, "by_source": {}}
    for field, name in (("split", "by_split"), ("source", "by_source")):
        for v in sorted({str(r.get(field)) for r in rows}):
            out[name][v] = summarize([r for r in rows if str(r.get(field)) == v], count)
    return out
