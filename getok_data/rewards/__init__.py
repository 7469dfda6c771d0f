"""GRPO rewards for GETok answers (stage 1: grid answers; stage 2: offset refinement).

``getok_data.rewards.core`` holds the pure reward functions; ``getok_data.rewards.trl`` wraps
them with TRL's reward-function signature over the columns of ``getok-data export chat``.
"""
from .core import (
    BOX_MAX, MASK_IOU_MAX, box_iou, box_refine_gain, box_reward, corner_l1,
    format_reward, gt_mask, inside, mask_iou_gain, mask_iou_reward, noop_outside_penalty, parse_grounding,
    parse_refinement, point_reward, refine_point_reward, refine_point_score, refine_point_scores,
    refinement_format_reward, repetition_reward, score_grid_answer, score_refinement,
    weighted_total,
)
from .table import REWARDS, check_weights, default_weights

__all__ = [
    "BOX_MAX", "MASK_IOU_MAX", "REWARDS", "default_weights", "check_weights", "box_iou", "box_refine_gain", "box_reward",
    "corner_l1", "format_reward", "gt_mask", "inside", "mask_iou_gain", "mask_iou_reward",
    "noop_outside_penalty", "parse_grounding", "parse_refinement", "point_reward", "refine_point_reward",
    "refine_point_score", "refine_point_scores", "refinement_format_reward", "repetition_reward",
    "score_grid_answer", "score_refinement", "weighted_total",
]
