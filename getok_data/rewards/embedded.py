"""GETok rewards for workers that see only the row: the ground truth travels inside it.

``export easyr1`` / ``export verl`` put ``export.parquet.ground_truth`` in the row (EasyR1: the
``answer`` JSON text; verl: ``extra_info``), candidate table included as base64. ``score`` turns
one decoded response and that ground truth into the reward components and their weighted total
(core.DEFAULT_WEIGHTS). The chat template's own markers (``<|im_end|>``, ``<|endoftext|>``,
``</s>``), left in when a framework decodes with ``skip_special_tokens=False``, are removed
before the strict parser sees the text.
"""
from __future__ import annotations

import json
import re
from typing import Any

from . import core
from .trl import COLUMNS, REWARDS, row_scores

_MARKERS = re.compile(r"<\|[^<>|]*\|>|</s>|<s>|<eos>|<pad>")


def clean_response(text: str) -> str:
    """The response without chat-template markers and surrounding whitespace."""
    return _MARKERS.sub("", text or "").strip()


def parse_ground_truth(gt: Any) -> dict[str, Any]:
    """The ground-truth dict from a dict or its JSON text; a clear error when it is not one."""
    if isinstance(gt, (str, bytes)):
        try:
            gt = json.loads(gt)
        except ValueError:
            raise ValueError("ground truth is not GETok JSON: export with `getok-data export easyr1|verl`") from None
    if not isinstance(gt, dict):
        raise ValueError(f"ground truth must be a dict or JSON object, got {type(gt).__name__}")
    missing = [c for c in COLUMNS if c not in gt]
    if missing:
        raise ValueError(f"ground truth lacks {missing}: export with `getok-data export easyr1|verl`")
    return gt


# Every row reports the same keys (0.0 where a component does not apply): EasyR1 and verl collect
# each key into one list per batch, which must be as long as the batch.
KEYS = tuple(dict.fromkeys(s.key for s in REWARDS))


def score(response: str, gt: Any) -> dict[str, float]:
    """Every reward component of ``response`` (``KEYS``) plus ``overall`` (their weighted total)."""
    row = parse_ground_truth(gt)
    comps = row_scores(clean_response(response), row)
    return dict({k: float(comps.get(k, 0.0)) for k in KEYS}, overall=core.weighted_total(comps))


def floor(gt: Any) -> float:
    """The lowest ``overall`` of the row (what a non-answer gets): 0 on grid rows, the sum of
    -weight over the applicable refinement rewards on offset rows."""
    return score("", gt)["overall"]
