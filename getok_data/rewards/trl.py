"""The GRPO rewards with TRL's reward-function signature, over ``getok-data export chat`` columns.

Each ``*_reward(prompts, completions, **columns) -> list[float]`` takes the batch's completions
(plain strings, or conversational lists of message dicts such as
``[{"role": "assistant", "content": "..."}]``) and the exported columns as lists: ``stage``,
``task``, ``grid_n``, ``grid_m``, ``width``, ``height``, ``gt_box``, ``gt_mask_rle``,
``cand_npz``, ``previous``, ``regions``, ``offsets``. Unknown keyword arguments (TRL's
``completion_ids``, ``trainer_state``, other columns) are ignored. A reward that does not apply
to a row (a box reward on a ``<seg>`` row, a refinement reward on a grid row) scores 0.0 there.
Nothing here imports trl or transformers.

    from getok_data.rewards.trl import GRID_REWARDS, OFFSET_REWARDS
    GRPOTrainer(..., reward_funcs=GRID_REWARDS)
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from ..decode import TableDecoder
from ..dataset import load_npz
from ..tokens import Grid
from . import core

COLUMNS = ("stage", "task", "grid_n", "grid_m", "width", "height", "gt_box", "gt_mask_rle",
           "cand_npz", "previous", "regions", "offsets")
# Read when the export has them (docs/FORMAT.md section 7): a no-target query, an ignore region.
OPTIONAL_COLUMNS = ("no_target", "gt_ignore_rle")


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, a message dict, or a list of messages (the last
    assistant message wins; a ``content`` list of ``{"type": "text", "text": ...}`` parts is
    joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content", "")
        if isinstance(content, list):
            return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        return "" if content is None else str(content)
    if isinstance(completion, (list, tuple)):
        msgs = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in msgs if m.get("role", "assistant") == "assistant"]
        pick = assistant or msgs
        return completion_text(pick[-1]) if pick else ""
    return "" if completion is None else str(completion)


@functools.lru_cache(maxsize=64)
def _decoder(path: str, n: int, m: int) -> TableDecoder:
    return TableDecoder(load_npz(Path(path).read_bytes()), n, m)


def _row(columns: dict[str, Sequence], k: int) -> dict[str, Any]:
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise KeyError(f"GETok rewards need the exported columns {missing} (getok-data export chat)")
    return {c: columns[c][k] for c in COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in columns)}


@functools.lru_cache(maxsize=4096)
def _scores_cached(text: str, row_json: str) -> tuple[tuple[str, float], ...]:
    row = json.loads(row_json)
    n, m = int(row["grid_n"]), int(row["grid_m"])
    grid = Grid(n, float(row["width"]), float(row["height"]), m)
    target = {"mask_rle": row["gt_mask_rle"], "box": row["gt_box"], "regions": row["regions"],
              "offsets": row["offsets"] or None, "no_target": bool(row.get("no_target")),
              "ignore_rle": row.get("gt_ignore_rle") or None}
    kind = row["task"]
    needs_table = kind == "seg" and row.get("cand_npz")
    decoder = _decoder(str(row["cand_npz"]), n, m) if needs_table else None
    if row["stage"] == "offset":
        scores = core.score_refinement(text, row["previous"] or "", target, decoder, grid)
    else:
        scores = core.score_grid_answer(text, target, decoder, grid, kind)
    return tuple(sorted(scores.items()))


def _plain(value: Any) -> Any:
    """numpy scalars / arrays (pandas, datasets' numpy format) as plain JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def row_scores(completion: Any, row: dict[str, Any]) -> dict[str, float]:
    """All reward components for one completion and one exported row (cached)."""
    text = completion_text(completion)
    key = json.dumps({c: row[c] for c in COLUMNS + OPTIONAL_COLUMNS if c in row}, sort_keys=True, default=_plain)
    return dict(_scores_cached(text, key))


def _component(key: str, stage: str | None) -> Callable[..., list[float]]:
    def reward(prompts: Sequence | None = None, completions: Sequence = (), **columns: Any) -> list[float]:
        out = []
        for k, c in enumerate(completions):
            row = _row(columns, k)
            out.append(0.0 if stage and row["stage"] != stage else row_scores(c, row).get(key, 0.0))
        return out

    return reward


format_reward = _component("format", None)
format_reward.__doc__ = "1.0 iff the answer is strictly formatted: one grounding of the row's task (grid rows) or one <offset> turn matching `previous` (offset rows)."
repetition_reward = _component("repetition", "grid")
repetition_reward.__doc__ = "Grid rows: 1 - duplicate anchors / anchors (core.repetition_reward)."
mask_iou_reward = _component("mask_iou", "grid")
mask_iou_reward.__doc__ = "Grid <seg> rows: iou + 0.5*[iou>=0.5] + 0.5*[iou>=0.75], IoU decoded from the candidate table."
box_reward = _component("box", "grid")
box_reward.__doc__ = "Grid <box> rows: box IoU + (1 - normalised corner L1)."
point_reward = _component("point", "grid")
point_reward.__doc__ = "Grid <point> rows: hit; <seg> rows: anchors-in-GT rate * (1 - exp(-m/5)) - 0.02 m, clamped at 0."
refine_point_reward = _component("refine_point", "offset")
refine_point_reward.__doc__ = "Offset rows: mean per-point score in {-1, 0, +1} (core.refine_point_score, lazy-keep guard); -1 if malformed."
box_refine_reward = _component("box_gain", "offset")
box_refine_reward.__doc__ = "Offset <box> rows: box-reward gain of the refined box, in [-1, 1]; -1 if malformed."
mask_iou_gain_reward = _component("mask_gain", "offset")
mask_iou_gain_reward.__doc__ = "Offset <seg> rows: IoU(after) - IoU(before) on the candidate table; -1 if malformed."

noop_reward = _component("noop", "offset")
noop_reward.__doc__ = "Offset rows: -1 for no valid offsets, or for keeping every point while the labels say one must change; else 0."

for _f, _name in ((format_reward, "format_reward"), (repetition_reward, "repetition_reward"),
                  (mask_iou_reward, "mask_iou_reward"), (box_reward, "box_reward"), (point_reward, "point_reward"),
                  (refine_point_reward, "refine_point_reward"), (box_refine_reward, "box_refine_reward"),
                  (mask_iou_gain_reward, "mask_iou_gain_reward"), (noop_reward, "noop_reward")):
    _f.__name__ = _f.__qualname__ = _name  # TRL logs rewards by function name


def getok_reward(prompts: Sequence | None = None, completions: Sequence = (), **columns: Any) -> list[float]:
    """Weighted sum of every component (the default weights of the row's stage, rewards/table.py) for each row."""
    return [core.weighted_total(row_scores(c, _row(columns, k))) for k, c in enumerate(completions)]


GRID_REWARDS: list[Callable[..., list[float]]] = [format_reward, repetition_reward, mask_iou_reward,
                                                   box_reward, point_reward]
OFFSET_REWARDS: list[Callable[..., list[float]]] = [format_reward, refine_point_reward, box_refine_reward,
                                                     mask_iou_gain_reward, noop_reward]
ALL_REWARDS: list[Callable[..., list[float]]] = GRID_REWARDS + OFFSET_REWARDS[1:] + [getok_reward]

__all__ = ["COLUMNS", "completion_text", "row_scores", "format_reward", "repetition_reward", "mask_iou_reward",
           "box_reward", "point_reward", "refine_point_reward", "box_refine_reward", "mask_iou_gain_reward",
           "noop_reward", "getok_reward", "GRID_REWARDS", "OFFSET_REWARDS", "ALL_REWARDS"]
