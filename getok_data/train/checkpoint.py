"""Checkpoints: one ``torch.save`` file with the model, its config, the vocabulary and the state
needed to resume (optimizer, step). Written to a temporary name and renamed.

Checkpoints are shared files, so they are read with ``weights_only=True``: torch's restricted
unpickler, which builds tensors, dicts, lists, tuples, strings and numbers and nothing else, so a
crafted pickle cannot run code. Everything a checkpoint holds is of those types."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..dataset import Dataset
from .data import resolve_shards
from .model import GroundingModel, ModelConfig

FORMAT = "getok-train-1"


class CheckpointError(ValueError):
    """A file that is not a readable getok-data trainer checkpoint (one line, names the file)."""


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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - pickle refusals, truncated zips, foreign files: all one message
        reason = " ".join(str(e).split("\n")[0].split())[:200] or type(e).__name__
        raise CheckpointError(f"{path}: not a loadable getok-data trainer checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a getok-data trainer checkpoint (format {found!r})")
    try:
        model = GroundingModel(ModelConfig.from_dict(ckpt["model_config"]))
        if model.vocab.tokens != ckpt["vocab"]:
            raise CheckpointError(f"{path}: stored vocabulary differs from this version's for n={model.cfg.n}")
        model.load_state_dict(ckpt["model"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{path}: damaged getok-data trainer checkpoint ({type(e).__name__}: {reason})") from None
    return model, ckpt


def data_grid(spec) -> int:
    """Grid size ``n`` of a build: from its manifest, else from the first sample."""
    url = resolve_shards(spec)[0]
    return Dataset(url.rsplit("/", 1)[0]).grid_n()


__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "data_grid"]
