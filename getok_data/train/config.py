"""Trainer configuration: code defaults (mirrored by ``configs/train_sft.yaml`` and
``configs/train_grpo.yaml``), then a YAML file, then flag overrides."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..config import deep_merge, drop_none as _drop_none
from ..rewards.table import check_weights, default_weights
from .model import ModelConfig

DATA: dict[str, Any] = {
    "train": "out/syn_train", "val": "out/syn_val",
    "batch_size": 64, "workers": 1,
    "sample_shuffle": 64,  # images
    "shuffle_buffer": 0,  # examples; 0 keeps an image's examples together (one CNN pass per image)
    "resample": False,
    "keep_low_quality": False,  # also train on targets flagged low_quality (selection.min_token_iou)
    "tasks": {"seg": 0.6, "box": 0.2, "point": 0.2},  # grid-stage task mix
    "offset_rate": 0.5,  # stage both: chance of an offset example per (target, sentence)
    "jitter_move": 0.3, "jitter_extra": 0.7, "jitter_far": 1.0,  # offset stage: jittered GT answers to refine
}

SFT_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "threads": 1,  # torch threads; with one DataLoader worker this fills 2 cores without oversubscribing
    "stage": "both",  # grid | offset | both
    "steps": 1000,
    "data": DATA,
    "model": {**ModelConfig().to_dict(), "n": None},  # n: None = the grid of the training data
    "optim": {"lr": 2.0e-3, "weight_decay": 0.01, "warmup": 100, "min_lr_ratio": 0.05, "grad_clip": 1.0},
    "eval": {"every": 0, "limit": 300, "final_limit": None, "refine_rounds": 0, "batch_size": 96},
    "save_every": 500,
}

GRPO_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "threads": 1,  # torch threads; with one DataLoader worker this fills 2 cores without oversubscribing
    "stage": "grid",  # grid | offset
    "steps": 150,
    "data": {**DATA, "tasks": {"seg": 1.0, "box": 0.0, "point": 0.0}, "workers": 0},
    "grpo": {
        "prompts": 16, "group": 8, "temperature": 1.0, "mode": "grammar",
        "clip": 0.2, "kl": 0.02, "inner_steps": 1, "lr": 1.0e-4, "grad_clip": 1.0,
        # auto (all for stage grid, offset for stage offset) | all | decoder (CNN frozen) |
        # offset (only what offset tokens alone use: stage 2 cannot move the grid answers)
        "trainable": "auto",
        "adv_eps": 0.25,  # A = (r - mean) / (std + adv_eps): groups whose rewards barely differ get small advantages
        "turn1": "greedy",  # offset stage: the policy's grid answer to refine, greedy (as in eval) | sample
    },
    "rewards": {  # default weights: the table in getok_data/rewards/table.py
        "grid": default_weights("grid"),
        "offset": default_weights("offset"),
        "noop_rule": "outside",  # outside: keep-all is penalised only if an anchor lies outside the GT | labels
    },
    "eval": {"every": 0, "limit": 300, "final_limit": None, "refine_rounds": None, "batch_size": 96},  # None: 1 for offset
    "save_every": 50,
}


def load_train_config(defaults: dict, path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then a YAML file, then overrides (None values skipped); unknown keys are errors."""
    cfg = copy.deepcopy(defaults)
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a mapping")
        cfg = deep_merge(cfg, data)
    if overrides:
        cfg = deep_merge(cfg, _drop_none(overrides))
    if cfg["stage"] not in ("grid", "offset", "both"):
        raise ValueError(f"stage must be grid, offset or both, got {cfg['stage']!r}")
    if "rewards" in cfg:
        for stage in ("grid", "offset"):
            cfg["rewards"][stage] = check_weights(stage, cfg["rewards"][stage])
    return cfg
