"""verl reward function: ``custom_reward_function.path=.../verl.py custom_reward_function.name=compute_score``.

verl's reward managers call ``compute_score(data_source, solution_str, ground_truth,
extra_info)`` for each response; a dict return must hold ``score`` (the reward) and its other
keys are logged as metrics. ``extra_info`` is the row's column of ``getok-data export verl``,
holding the whole ground truth (candidate table included); ``ground_truth`` is the answer text.
Rows of another ``data_source`` are not ours: an error naming it, rather than a silent 0.
"""
from __future__ import annotations

from typing import Any

from getok_data.rewards.embedded import parse_ground_truth, score  # absolute: EasyR1 / verl load this file by path

DATA_SOURCE = "getok"


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  **kwargs: Any) -> dict[str, float]:
    """``{"score": weighted total, **components}`` of one response."""
    if data_source != DATA_SOURCE:
        raise ValueError(f"data_source {data_source!r} is not {DATA_SOURCE!r}: route it to its own reward")
    gt = parse_ground_truth(extra_info if isinstance(extra_info, dict) and "stage" in extra_info else ground_truth)
    s = score(str(solution_str), gt)
    return dict(s, score=s.pop("overall"))
