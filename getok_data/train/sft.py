"""Supervised fine-tuning: cross-entropy on answers of the grid stage, the offset stage, or both.

``train_sft(cfg, out)`` streams ``cfg["data"]["train"]``, logs to ``OUT.log.jsonl`` (loss, lr,
periodic val metrics with train-only wall time), and writes checkpoints to ``out`` (model,
config, vocabulary, optimizer, step). ``steps = 0`` writes the untrained model. ``resume``
continues a checkpoint's run up to ``cfg["steps"]`` (model, optimizer and step are restored; the
data stream restarts with a fresh epoch seed).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from .checkpoint import data_grid, load_checkpoint, save_checkpoint
from .data import make_loader
from .evaluate import evaluate
from .model import GroundingModel, ModelConfig, count_params, sft_loss


def lr_at(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup, then cosine decay to ``lr * min_ratio``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def batches(loader, stream, epoch: int = 0) -> Iterator[dict]:
    """Endless batches, one pass over the shards per epoch (each epoch reshuffled)."""
    while True:
        stream.set_epoch(epoch)
        yield from loader
        epoch += 1


class Logger:
    """Appends JSON lines to ``OUT.log.jsonl``."""

    def __init__(self, out: str | Path):
        self.path = Path(str(out) + ".log.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, **row) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def build_model(cfg: dict) -> GroundingModel:
    mcfg = dict(cfg["model"])
    if not mcfg.get("n"):
        mcfg["n"] = data_grid(cfg["data"]["train"])
    return GroundingModel(ModelConfig.from_dict(mcfg))


def train_sft(cfg: dict, out: str, resume: str | None = None, progress: bool = True) -> dict:
    """Run SFT; returns the last logged metrics (``val`` holds the final evaluation, if any)."""
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(int(cfg["threads"]))
    oc = cfg["optim"]
    step = 0
    if resume:
        model, ckpt = load_checkpoint(resume)
        step = int(ckpt["step"])
    else:
        model = build_model(cfg)
    data_n = data_grid(cfg["data"]["train"])
    if data_n != model.cfg.n:
        raise ValueError(f"model grid n={model.cfg.n} but the training data has n={data_n}")
    cfg = {**cfg, "model": model.cfg.to_dict()}
    opt = torch.optim.AdamW(model.parameters(), lr=oc["lr"], weight_decay=oc["weight_decay"])
    if resume and ckpt.get("optimizer"):
        opt.load_state_dict(ckpt["optimizer"])
    log = Logger(out)
    total = int(cfg["steps"])
    log(event="start", step=step, params=count_params(model), config=cfg)
    if step >= total:
        save_checkpoint(out, model, cfg, step, opt)
        return {"step": step}
    dc = {**cfg["data"], "image_size": model.cfg.image_size, "text_buckets": model.cfg.text_buckets,
          "max_words": model.cfg.max_words}
    loader, stream = make_loader(dc["train"], dc, model.vocab, cfg["stage"], int(dc["batch_size"]),
                                 workers=int(dc["workers"]), seed=cfg["seed"], resample=bool(dc["resample"]))
    model.train()
    bar = tqdm(total=total, initial=step, desc=f"sft[{cfg['stage']}]", disable=not progress, dynamic_ncols=True)
    ema, train_s, last = None, 0.0, {}
    t0 = time.time()
    for batch in batches(loader, stream, epoch=step):
        lr = lr_at(step, total, oc["lr"], oc["warmup"], oc["min_lr_ratio"])
        for g in opt.param_groups:
            g["lr"] = lr
        logits = model(batch["images"], batch["text"], batch["ids"], batch["img_index"])
        loss = sft_loss(logits, batch["ids"], batch["loss_mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), oc["grad_clip"])
        opt.step()
        step += 1
        loss_v = loss.item()
        ema = loss_v if ema is None else 0.95 * ema + 0.05 * loss_v
        bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.2e}")
        bar.update()
        if step % 10 == 0 or step == total:
            log(event="train", step=step, loss=loss_v, loss_ema=ema, lr=lr,
                train_seconds=train_s + time.time() - t0)
        every = int(cfg["eval"]["every"] or 0)
        final = step == total
        if cfg["data"].get("val") and ((every and step % every == 0) or final):
            train_s += time.time() - t0
            lim = cfg["eval"]["final_limit"] if final else cfg["eval"]["limit"]
            te = time.time()
            metrics = evaluate(model, cfg["data"]["val"], cfg["eval"]["refine_rounds"], lim, cfg["eval"]["batch_size"])
            last = {"step": step, "train_seconds": train_s, "eval_seconds": time.time() - te, "val": metrics}
            log(event="eval", **last)
            bar.write(json.dumps(last))
            model.train()
            t0 = time.time()
        if final or (cfg["save_every"] and step % cfg["save_every"] == 0):
            save_checkpoint(out, model, cfg, step, opt)
        if final:
            break
    bar.close()
    return last or {"step": step, "train_seconds": train_s + time.time() - t0}
