"""The build's config sections, each a frozen dataclass whose field defaults are THE defaults.

``configs/default.yaml`` mirrors them (a test fails when the two disagree). Sources and
segmenters declare their own options beside their classes (see ``getok_data.registry``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class GridConfig:
    n: int = 32
    # offset lattice; None = 2n (one step is half a cell)
    m: int | None = None
    # also store the masks one offset step from every anchor, so refined answers decode exactly
    # (auto: on for superpixel, nearly free; off for SAM, ~4x decoding and table size)
    offset_masks: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        _require(self.n >= 1, f"n: must be >= 1, got {self.n}")
        _require(self.m is None or self.m >= 1, f"m: must be >= 1, got {self.m}")


@dataclass(frozen=True)
class SelectionConfig:
    method: Literal["sorted", "gain"] = "sorted"  # sorted (the paper) | gain
    tau: float = 0.9  # target token IoU of the greedy selection
    min_token_iou: float | None = None  # flag targets below this token IoU low_quality (None: off)

    def __post_init__(self) -> None:
        _require(0 < self.tau <= 1, f"tau: must be in (0, 1], got {self.tau}")
        _require(self.min_token_iou is None or 0 <= self.min_token_iou <= 1,
                 f"min_token_iou: must be null or in [0, 1], got {self.min_token_iou}")


def _default_weights() -> dict[str, float]:
    return {"I": 1.0, "R": 3.0, "H": 1.0, "F": 0.25}


@dataclass(frozen=True)
class LabellingConfig:
    far_steps: float = 2.0
    proposals_k: int = 8
    refine_samples: int = 2
    weights: dict[str, float] = field(default_factory=_default_weights)  # proposal draw weight per region
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.far_steps > 0, f"far_steps: must be > 0, got {self.far_steps}")
        _require(self.proposals_k >= 0 and self.refine_samples >= 0,
                 "proposals_k, refine_samples: must be >= 0")
        _require(set(self.weights) == set("IRHF") and min(self.weights.values()) >= 0,
                 f"weights: expected non-negative I, R, H and F, got {self.weights}")


@dataclass(frozen=True)
class BuildOptions:
    out: str = "out/build"
    images_per_shard: int = 64
    max_error_rate: float = 0.05  # above it the build exits 3
    runner: Literal["local", "ray"] = "local"
    address: str | None = None  # Ray address; None starts a local Ray
    num_actors: int | None = None  # None: as many as the cluster's CPUs/GPUs allow
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    shard_timeout_s: float = 3600.0
    max_retries: int = 3
    # CPU workers per runner / Ray actor that annotate and pack while the segmenter runs (1: a
    # thread; k >= 2: k processes); an actor reserves max(cpus_per_actor, cpu_workers) CPUs
    cpu_workers: int = 1

    def __post_init__(self) -> None:
        _require(self.cpu_workers >= 1, f"cpu_workers: must be >= 1, got {self.cpu_workers}")
        _require(self.images_per_shard >= 1, f"images_per_shard: must be >= 1, got {self.images_per_shard}")
        _require(0 <= self.max_error_rate <= 1, f"max_error_rate: must be in [0, 1], got {self.max_error_rate}")
        _require(self.num_actors is None or self.num_actors >= 1, f"num_actors: must be >= 1, got {self.num_actors}")
        _require(self.gpus_per_actor >= 0 and self.cpus_per_actor > 0,
                 "gpus_per_actor must be >= 0 and cpus_per_actor > 0")
        _require(self.shard_timeout_s > 0, f"shard_timeout_s: must be > 0, got {self.shard_timeout_s}")
        _require(self.max_retries >= 0, f"max_retries: must be >= 0, got {self.max_retries}")
        _require(bool(self.out), "out: must not be empty")
