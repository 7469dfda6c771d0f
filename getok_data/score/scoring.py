"""One answer against its target: parse, decode (table or segmenter), and the row's fields.

Conventions (docs/SCORING.md): masks are compared at the candidate table's resolution (as
``token_iou``), boxes in pixels, points against the full-resolution GT. A format failure scores
IoU 0, box IoU 0 and no hit, whatever the empty-union convention; an empty union (empty
prediction on an empty target, after ``ignore_rle``) scores ``1`` (``one``, LISA / gRefCOCO) or
``0`` (``zero``, VisionReasoner). ``<seg></seg>`` is the well-formed "no target" answer.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..masks import ignore_mask
from ..rewards.core import box_iou, gt_mask, inside, parse_refinement
from ..tokens import Grid, decode_box, decode_point, encode, positions, tokenize
from ..tokens.answers import MULTI_TASKS, parse_answer
from ..tokens.rules import intersection_union
from .decoders import SampleMasks
from .predictions import Prediction
from .rows import ExpectedRow


RowFields = Callable[[dict, Any, bool, Grid], dict]
ROW_FIELDS: dict[str, RowFields] = {}


def register_row_fields(task: str) -> Callable[[RowFields], RowFields]:
    """Register the per-row fields of a task beyond seg / box / point (e.g. lanes):
    ``fn(target, positions, ok, grid) -> {field: value}``, where ``positions`` are the answer's
    pixel positions (refined when it was refined; None: deleted) or None for a format failure.
    A ``score`` field, when returned, is the quality its refinement gain is measured in.
    Its summary goes to :func:`getok_data.score.metrics.register_metric`."""

    def deco(fn: RowFields) -> RowFields:
        ROW_FIELDS[task] = fn
        return fn

    return deco


def _ntokens(text: str) -> int:
    return len(tokenize(text))


class RowScorer:
    """Scores the rows of one sample with one decoder and the chosen empty-union convention."""

    def __init__(self, masks: SampleMasks, meta: dict, empty_union: str = "one"):
        self.masks, self.meta, self.empty_union = masks, meta, empty_union
        self.grid = masks.grid

    # -------------------------------------------------------------- decoding
    def _result(self, task: str, item, steps=None):
        """Decoded answer: mask (table res) | pixel box | pixel point; None for nothing."""
        if item is None:
            return None
        if isinstance(item, list):  # points / boxes: one decoded grounding per group
            return [self._result(MULTI_TASKS[task], it) for it in item]
        if isinstance(item, str):  # cap: the text itself
            return item
        if task == "seg":
            return self.masks.mask(item.anchors, steps) if item.anchors else np.zeros(self.masks.shape, bool)
        if task == "box":
            return decode_box(item, self.grid, tuple(steps) if steps else ((0, 0), (0, 0)))
        if task == "point":
            return decode_point(item, self.grid, steps[0] if steps else (0, 0))
        return positions(item, self.grid, tuple(steps) if steps else None)  # registered tasks

    def _chain(self, task: str, item, turns: list[str]):
        """Apply the model's own refinement turns, re-quantising between rounds (as ``eval``).

        Returns (decoded result after the last turn, all turns well formed)."""
        from ..train.evaluate import requantise

        result = None
        for turn in turns:
            if item is None or (task == "seg" and not item.anchors):
                return result, True  # nothing left to refine
            parsed = parse_refinement(turn, encode(item), self.grid.n)
            if parsed is None:
                return None, False
            steps = parsed[1].groups[0].steps
            result = self._result(task, item, steps)
            item = requantise(item, steps, self.grid, self.masks.table)
        return result, True

    # -------------------------------------------------------------- fields
    def _fields(self, task: str, target: dict, result, ok: bool) -> dict:
        if task == "seg":
            shape = self.masks.shape
            gt = gt_mask(target["mask_rle"], shape)
            pred = result if ok and result is not None else np.zeros(shape, bool)
            ignore = ignore_mask(target, shape)  # pixels that count for neither I nor U
            inter, union = intersection_union(pred, gt, ignore)
            if not ok:
                iou = 0.0
            else:
                iou = inter / union if union else (1.0 if self.empty_union == "one" else 0.0)
            empty = not (pred if ignore is None else pred & ~ignore).any()
            return {"inter": inter, "union": union, "iou": iou, "pred_empty": empty,
                    "no_target": bool(target.get("no_target")),
                    "empty_ok": ok and empty, "nonempty_ok": ok and not empty}
        if task == "box":
            return {"box_iou": box_iou(result, target["box"]) if ok and result is not None else 0.0}
        if task == "point":
            gt = gt_mask(target["mask_rle"])
            hit = ok and result is not None and bool(inside(gt, [result], self.grid.width, self.grid.height)[0])
            return {"hit": hit}
        fn = ROW_FIELDS.get(task)
        return fn(target, result if ok else None, ok, self.grid) if fn is not None else {}

    def _iou_of(self, task: str, fields: dict) -> float:
        """The row's quality that a refinement gain is measured in (a registered task's ``score``)."""
        if "score" in fields:
            return float(fields["score"])
        return fields.get("iou", fields.get("box_iou", float(fields.get("hit", 0.0))))

    def score(self, row: ExpectedRow, pred: Prediction | None) -> tuple[dict, object]:
        """The row's fields (and the decoded result, for the gallery). ``pred`` None: missing."""
        text = pred.text if pred is not None else ""
        turns = pred.refine if pred is not None else None
        out = {"id": row.id, "key": self.meta["key"], "target_id": str(row.target["target_id"]),
               "sent_index": row.sent_index, "task": row.task, "stage": row.stage,
               "source": self.meta.get("source"), "split": self.meta.get("split"),
               "missing": pred is None}
        n = self.grid.n
        if row.stage == "offset":  # the export's refine{k} row: one turn refining ``previous``
            prev = parse_answer(row.previous, n, row.task)
            parsed = parse_refinement(text, row.previous, n) if pred is not None else None
            ok = parsed is not None
            before = self._fields(row.task, row.target, self._result(row.task, prev), True)
            result = self._result(row.task, prev, parsed[1].groups[0].steps) if ok else None
            fields = self._fields(row.task, row.target, result, ok)
            out["gain"] = self._iou_of(row.task, fields) - self._iou_of(row.task, before)
            out["iou_before"] = self._iou_of(row.task, before)
        else:
            item = parse_answer(text, n, row.task) if pred is not None else None
            ok = item is not None
            result = self._result(row.task, item)
            if turns is not None:  # predict --stage offset: the model's own refinement rounds
                before = self._fields(row.task, row.target, result, ok)
                if ok:
                    refined, ok = self._chain(row.task, item, turns)
                    result = refined if refined is not None else result
                fields = self._fields(row.task, row.target, result, ok)
                out["stage"] = "refined"
                out["gain"] = self._iou_of(row.task, fields) - self._iou_of(row.task, before)
                out["iou_before"] = self._iou_of(row.task, before)
                out["rounds"] = len(turns)
            else:
                fields = self._fields(row.task, row.target, result, ok)
        out["group"] = f"{out['stage']}/{row.task}"
        out["format_ok"] = ok
        if ok and row.task != "cap":
            out["tokens"] = _ntokens(text) + sum(_ntokens(t) for t in turns or [])
        out.update(fields)
        return out, result
