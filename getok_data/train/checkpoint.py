"""Checkpoints: one ``torch.save`` file with the model, its config, the vocabulary and the state
needed to resume (optimizer, step). Written to a temporary name and renamed."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..dataset import Dataset
from .data import resolve_shards
from .model import GroundingModel, ModelConfig

FORMAT = "getok-train-1"


def save_checkpoint(path: str | os.PathLike, model: GroundingModel, config: dict, step: int,
                    optimizer: torch.optim.Optimizer | None = None, **extra) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "model": model.state_dict(), "model_config": model.cfg.to_dict(),
             "vocab": model.vocab.tokens, "config": config, "step": step,
             "optimizer": optimizer.state_dict() if optimizer is not None else None, **extra}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> tuple[GroundingModel, dict]:
    """(model, the checkpoint dict); checks the stored vocabulary against the code's."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a getok-data trainer checkpoint (format {ckpt.get('format')!r})")
    model = GroundingModel(ModelConfig.from_dict(ckpt["model_config"]))
    if model.vocab.tokens != ckpt["vocab"]:
        raise ValueError(f"{path}: stored vocabulary differs from this version's for n={model.cfg.n}")
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def data_grid(spec) -> int:
    """Grid size ``n`` of a build: from its manifest, else from the first sample."""
    url = resolve_shards(spec)[0]
    return Dataset(url.rsplit("/", 1)[0]).grid_n()


__all__ = ["save_checkpoint", "load_checkpoint", "data_grid"]
