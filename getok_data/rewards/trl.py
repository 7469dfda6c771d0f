"""The GRPO rewards with TRL's reward-function signature, over the exported columns.

Each ``*_reward(prompts, completions, **columns) -> list[float]`` takes the batch's completions
(plain strings, or conversational lists of message dicts such as
``[{"role": "assistant", "content": "..."}]``) and the exported columns as lists: ``stage``,
``task``, ``grid_n``, ``grid_m``, ``width``, ``height``, ``gt_box``, ``gt_mask_rle``,
``previous``, ``regions``, ``offsets`` and the candidate table as ``cand_npz`` (a path) or
``cand_npz_b64`` (the ``.cand.npz`` bytes, base64). Unknown keyword arguments (TRL's
``trainer_state``, ``log_metric``, other columns) are ignored. A reward that does not apply to a
row (a box reward on a ``<seg>`` row, a refinement reward on a grid row) scores 0.0 there.
Nothing here imports trl or transformers.

TRL decodes completions with ``skip_special_tokens=True`` (hard-coded), which strips *special*
spatial tokens. ``make_rewards(tokenizer)`` returns functions that re-decode TRL's
``completion_ids`` with the spatial tokens kept (the tokenizer's other special tokens, such as
eos and pad, are dropped), so the score is the same whether the tokens are special or not:

    from getok_data.rewards.trl import make_rewards, reward_weights
    GRPOTrainer(..., reward_funcs=make_rewards(tokenizer, stage="grid"),
                args=GRPOConfig(..., reward_weights=reward_weights("grid")))
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..dataset import load_npz
from ..decode import TableDecoder
from ..tokens import Grid, vocabulary
from ..tokens.vocab import WRAPPER_TOKENS, offset_tokens
from . import core
from .table import REWARDS as TABLE

COLUMNS = ("stage", "task", "grid_n", "grid_m", "width", "height", "gt_box", "gt_mask_rle",
           "previous", "regions", "offsets")
TABLE_COLUMNS = ("cand_npz_b64", "cand_npz")  # either one; the embedded bytes win
# Read when the export has them (docs/FORMAT.md section 8): a no-target query, an ignore region.
# points / boxes rows: the query's instances (JSON text) and DensityF1's candidate count.
OPTIONAL_COLUMNS = ("no_target", "gt_ignore_rle", "gt_instances", "gt_candidates")


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


# ------------------------------------------------------------------ candidate tables
_DECODERS: "OrderedDict[str, TableDecoder]" = OrderedDict()
_MAX_DECODERS = 64


def _table_key(row: dict[str, Any]) -> str:
    """A short name of the row's candidate table ('' when it has none)."""
    data = row.get("cand_npz_b64")
    if data:
        return "b64:" + hashlib.sha1(str(data).encode("ascii")).hexdigest()
    path = row.get("cand_npz")
    return f"path:{path}" if path else ""


def _decoder(row: dict[str, Any], key: str, n: int, m: int) -> TableDecoder:
    """The row's table decoder, cached by table key (a few dozen images at a time)."""
    if key in _DECODERS:
        _DECODERS.move_to_end(key)
        return _DECODERS[key]
    if key.startswith("b64:"):
        raw = base64.b64decode(row["cand_npz_b64"])
    else:
        path = Path(str(row["cand_npz"]))
        if not path.is_file():
            raise FileNotFoundError(f"cand_npz {path}: no such file (re-export, or use an export that embeds it)")
        raw = path.read_bytes()
    dec = TableDecoder(load_npz(raw), n, m)
    _DECODERS[key] = dec
    while len(_DECODERS) > _MAX_DECODERS:
        _DECODERS.popitem(last=False)
    return dec


def _row(columns: dict[str, Sequence], k: int) -> dict[str, Any]:
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise KeyError(f"GETok rewards need the exported columns {missing} (getok-data export trl|llamafactory|swift)")
    row = {c: columns[c][k] for c in COLUMNS}
    for c in TABLE_COLUMNS + OPTIONAL_COLUMNS:
        if c in columns:
            row[c] = columns[c][k]
    return row


@functools.lru_cache(maxsize=4096)
def _scores_cached(text: str, row_json: str, table: str) -> tuple[tuple[str, float], ...]:
    row = json.loads(row_json)
    n, m = int(row["grid_n"]), int(row["grid_m"])
    grid = Grid(n, float(row["width"]), float(row["height"]), m)
    target = {"mask_rle": row["gt_mask_rle"], "box": row["gt_box"], "regions": row["regions"],
              "offsets": row["offsets"] or None, "no_target": bool(row.get("no_target")),
              "ignore_rle": row.get("gt_ignore_rle") or None,
              "instances": json.loads(row["gt_instances"]) if row.get("gt_instances") else []}
    decoder = _DECODERS.get(table) if table else None
    if row["stage"] == "offset":
        scores = core.score_refinement(text, row["previous"] or "", target, decoder, grid)
    else:
        scores = core.score_grid_answer(text, target, decoder, grid, row["task"])
    return tuple(sorted(scores.items()))


def _plain(value: Any) -> Any:
    """numpy scalars / arrays (pandas, datasets' numpy format) as plain JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def row_scores(completion: Any, row: dict[str, Any]) -> dict[str, float]:
    """All reward components for one completion and one exported row (cached)."""
    text = completion_text(completion)
    table = _table_key(row)
    if table and row["task"] == "seg":
        _decoder(row, table, int(row["grid_n"]), int(row["grid_m"]))
    else:
        table = ""
    key = json.dumps({c: row[c] for c in COLUMNS + OPTIONAL_COLUMNS if c in row}, sort_keys=True, default=_plain)
    return dict(_scores_cached(text, key, table))


# ------------------------------------------------------------------ decoding completion ids
def spatial_text_decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """``ids -> text`` that keeps every spatial token (special or not) and drops the tokenizer's
    other special tokens (eos, pad, chat-template markers), as TRL does for non-special ones.
    A processor is accepted too (its ``.tokenizer`` is used)."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    vocab = tokenizer.get_vocab()
    spatial = {vocab[t] for t in vocabulary_tokens(vocab)}
    drop = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])} - spatial
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    drop |= {int(i) for i, t in added.items() if getattr(t, "special", False)} - spatial

    def decode(ids: Sequence[int]) -> str:
        keep = [int(i) for i in ids if int(i) not in drop]
        return tokenizer.decode(keep, skip_special_tokens=False)

    return decode


def vocabulary_tokens(vocab: dict[str, int]) -> list[str]:
    """The spatial tokens a tokenizer vocabulary holds (grid size found from the vocabulary)."""
    n = 0
    while f"<grid_{n}_0>" in vocab:
        n += 1
    tokens = vocabulary(n) if n else offset_tokens() + list(WRAPPER_TOKENS)
    return [t for t in tokens if t in vocab]


# ------------------------------------------------------------------ the reward table
# TRL logs rewards by function name. The components, their stages and default weights are the
# one table in rewards/table.py; a component of both stages (format) is one function here.
TRL_NAMES = {"format": "format_reward", "repetition": "repetition_reward", "mask_iou": "mask_iou_reward",
             "box": "box_reward", "point": "point_reward", "points_f1": "points_f1_reward",
             "boxes_f1": "boxes_f1_reward", "refine_point": "refine_point_reward",
             "box_gain": "box_refine_reward", "mask_gain": "mask_iou_gain_reward", "noop": "noop_reward"}


@dataclass(frozen=True)
class RewardSpec:
    """One reward component: its TRL function name, the stage it applies to, its default weight."""

    name: str  # TRL logs rewards by function name
    key: str  # the component of core.score_grid_answer / core.score_refinement
    stage: str  # "grid", "offset" or "both"
    weight: float
    doc: str


def _specs() -> tuple[RewardSpec, ...]:
    specs: dict[str, RewardSpec] = {}
    for r in TABLE:
        if r.name in specs:
            specs[r.name] = replace(specs[r.name], stage="both")
        else:
            specs[r.name] = RewardSpec(TRL_NAMES[r.name], r.name, r.stage, r.weight, r.what)
    return tuple(specs.values())


REWARDS: tuple[RewardSpec, ...] = _specs()


def _texts(completions: Sequence, completion_ids: Sequence | None, decode: Callable | None) -> list[str]:
    if decode is not None and completion_ids is not None and len(completion_ids) == len(completions):
        return [decode(ids) for ids in completion_ids]
    return [completion_text(c) for c in completions]


def _component(spec: RewardSpec, decode: Callable | None = None) -> Callable[..., list[float]]:
    stage = None if spec.stage == "both" else spec.stage

    def reward(prompts: Sequence | None = None, completions: Sequence = (), completion_ids: Sequence | None = None,
               **columns: Any) -> list[float]:
        out = []
        for k, text in enumerate(_texts(completions, completion_ids, decode)):
            row = _row(columns, k)
            out.append(0.0 if stage and row["stage"] != stage else row_scores(text, row).get(spec.key, 0.0))
        return out

    reward.__name__ = reward.__qualname__ = spec.name
    reward.__doc__ = spec.doc
    return reward


def _selected(stage: str) -> list[RewardSpec]:
    if stage not in ("grid", "offset", "all"):
        raise ValueError(f"unknown stage {stage!r}; expected grid, offset or all")
    return [s for s in REWARDS if stage == "all" or s.stage in (stage, "both")]


def make_rewards(tokenizer: Any = None, stage: str = "all") -> list[Callable[..., list[float]]]:
    """TRL reward functions for ``stage`` (grid | offset | all), one per component of ``REWARDS``.

    With a tokenizer, each function scores the text decoded from TRL's ``completion_ids`` with
    the spatial tokens kept, so a ``--special`` tokenizer still gets a reward signal.
    """
    decode = spatial_text_decoder(tokenizer) if tokenizer is not None else None
    return [_component(s, decode) for s in _selected(stage)]


def reward_weights(stage: str = "all") -> list[float]:
    """The default weights of ``make_rewards(stage=stage)``, in order (GRPOConfig.reward_weights)."""
    return [s.weight for s in _selected(stage)]


_PLAIN = {s.name: _component(s) for s in REWARDS}
format_reward = _PLAIN["format_reward"]
repetition_reward = _PLAIN["repetition_reward"]
mask_iou_reward = _PLAIN["mask_iou_reward"]
box_reward = _PLAIN["box_reward"]
point_reward = _PLAIN["point_reward"]
points_f1_reward = _PLAIN["points_f1_reward"]
boxes_f1_reward = _PLAIN["boxes_f1_reward"]
refine_point_reward = _PLAIN["refine_point_reward"]
box_refine_reward = _PLAIN["box_refine_reward"]
mask_iou_gain_reward = _PLAIN["mask_iou_gain_reward"]
noop_reward = _PLAIN["noop_reward"]


def getok_reward(prompts: Sequence | None = None, completions: Sequence = (), **columns: Any) -> list[float]:
    """Weighted sum of every component (the default weights of the row's stage) for each row."""
    return [core.weighted_total(row_scores(c, _row(columns, k))) for k, c in enumerate(completions)]


GRID_REWARDS: list[Callable[..., list[float]]] = [_PLAIN[s.name] for s in _selected("grid")]
OFFSET_REWARDS: list[Callable[..., list[float]]] = [_PLAIN[s.name] for s in _selected("offset")]
ALL_REWARDS: list[Callable[..., list[float]]] = GRID_REWARDS + OFFSET_REWARDS[1:] + [getok_reward]

__all__ = ["COLUMNS", "REWARDS", "RewardSpec", "completion_text", "row_scores", "make_rewards", "reward_weights",
           "spatial_text_decoder", "format_reward", "repetition_reward", "mask_iou_reward", "box_reward",
           "point_reward", "points_f1_reward", "boxes_f1_reward", "refine_point_reward", "box_refine_reward", "mask_iou_gain_reward", "noop_reward",
           "getok_reward", "GRID_REWARDS", "OFFSET_REWARDS", "ALL_REWARDS"]
