"""The one table of GRPO rewards: name, stage and default weight. The bundled trainer's config
and ``getok_data.rewards.trl`` both read it; a weight for a reward not in it is an error."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardSpec:
    name: str
    stage: str  # grid (stage 1: the grid answer) | offset (stage 2: the <offset> turn)
    weight: float  # default weight in the weighted total
    what: str


REWARDS: tuple[RewardSpec, ...] = (
    RewardSpec("format", "grid", 1.0, "1 iff the answer parses strictly into one grounding of the task"),
    RewardSpec("repetition", "grid", 0.5, "penalty for anchors repeated in one answer"),
    RewardSpec("mask_iou", "grid", 1.0, "<seg>: iou + 0.5*[iou>=0.5] + 0.5*[iou>=0.75], decoded from the table"),
    RewardSpec("box", "grid", 1.0, "<box>: box IoU and corner error"),
    RewardSpec("point", "grid", 1.0, "<point>: the point lies on the GT mask"),
    RewardSpec("points_f1", "grid", 1.0, "points: point-in-mask F1 over the instances x min(1, gt/pred)"),
    RewardSpec("boxes_f1", "grid", 1.0, "boxes: F1 of the box set at IoU 0.5"),
    RewardSpec("format", "offset", 1.0, "1 iff the <offset> turn matches the previous answer one-to-one"),
    RewardSpec("refine_point", "offset", 0.1, "per anchor: moved onto the GT, or rightly deleted"),
    RewardSpec("box_gain", "offset", 1.0, "box IoU after the refinement minus before"),
    RewardSpec("mask_gain", "offset", 3.0, "mask IoU after the refinement minus before"),
    RewardSpec("noop", "offset", 0.5, "-1 for keeping every anchor when one must move or go"),
)
STAGES = ("grid", "offset")


def default_weights(stage: str) -> dict[str, float]:
    """``{reward name: default weight}`` of one stage."""
    if stage not in STAGES:
        raise ValueError(f"unknown reward stage {stage!r}; expected one of {STAGES}")
    return {r.name: r.weight for r in REWARDS if r.stage == stage}


def check_weights(stage: str, weights: dict[str, float], where: str = "rewards") -> dict[str, float]:
    """``weights`` if every name is a reward of ``stage`` and every weight a number; else ValueError
    naming the key (a misspelt reward would otherwise be silently ignored)."""
    known = default_weights(stage)
    for name, value in weights.items():
        if name not in known:
            raise ValueError(f"{where}.{stage}.{name}: unknown reward; {stage} rewards are {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}.{stage}.{name}: expected a number, got {value!r}")
    return {k: float(v) for k, v in weights.items()}


def stage_of(scores: dict[str, float]) -> str:
    """The stage a dict of component scores belongs to (offset scores hold offset-only names)."""
    offset_only = set(default_weights("offset")) - set(default_weights("grid"))
    return "offset" if offset_only & set(scores) else "grid"
