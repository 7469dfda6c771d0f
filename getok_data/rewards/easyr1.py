"""EasyR1 reward function: ``worker.reward.reward_function=.../easyr1.py:compute_score``.

EasyR1 (verl/workers/reward/function.py) calls, with ``reward_type: batch``,
``compute_score(reward_inputs: list[RewardInput]) -> list[RewardScore]`` and, with
``reward_type: sequential``, ``compute_score(reward_input) -> RewardScore``, where a
``RewardInput`` is ``{"response", "response_length", "ground_truth"}`` and a ``RewardScore`` holds
``overall`` (the reward) plus metrics (``format``, ``accuracy``, ...). ``ground_truth`` is the
row's ``answer`` column of ``getok-data export easyr1`` (JSON with the GT and candidate table).
``accuracy`` is the task's main component: ``mask_iou`` / ``box`` / ``point`` on grid rows,
``refine_point`` on offset rows.
"""
from __future__ import annotations

from typing import Any

from getok_data.rewards.embedded import parse_ground_truth, score  # absolute: EasyR1 / verl load this file by path

# Read by EasyR1's AutoRewardManager from the loaded file: its log name and how it calls us
# (batch: one list of inputs per call; sequential works too, compute_score takes either).
REWARD_NAME = "getok"
REWARD_TYPE = "batch"
ACCURACY = {"seg": "mask_iou", "box": "box", "point": "point", "points": "points_f1", "boxes": "boxes_f1"}


def _one(reward_input: dict[str, Any]) -> dict[str, float]:
    gt = parse_ground_truth(reward_input["ground_truth"])
    s = score(str(reward_input.get("response", "")), gt)
    main = "refine_point" if gt["stage"] == "offset" else ACCURACY.get(gt["task"], "format")
    return dict(s, accuracy=float(s.get(main, 0.0)))


def compute_score(reward_inputs: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, float]] | dict[str, float]:
    """Batch (a list of inputs -> a list of scores) or sequential (one input -> one score)."""
    if isinstance(reward_inputs, dict):
        return _one(reward_inputs)
    return [_one(r) for r in reward_inputs]
