"""Two-stage GRPO on the bundled model; rewards from ``getok_data.rewards.core`` (table-decoded masks).

Per step: ``P`` prompts, ``G`` sampled completions each (grammar-constrained sampling; the
constraint is part of the policy, so log-probs are taken under the same masks).

- advantages ``A = (r - mean_G(r)) / (std_G(r) + eps)`` per group (population std);
- per answer token ``t``: ``ratio = exp(logp - logp_old)``,
  ``L_pg = -min(ratio * A, clip(ratio, 1 - c, 1 + c) * A)``;
- KL to the frozen reference (the ``--init`` model), the k3 estimator
  ``kl = exp(logp_ref - logp) - (logp_ref - logp) - 1`` (>= 0, unbiased for KL(pi || ref));
- ``loss = mean_answers( sum_t (L_pg + beta * kl) / |answer tokens| )``; tokens the grammar forces
  (one allowed choice) are left out of the sums.

Stage ``grid``: prompts are grid-stage examples; rewards ``score_grid_answer`` (format,
non-repetition, piecewise mask IoU, box IoU + corner L1, points). Stage ``offset`` (multi-turn):
the policy first answers the grid prompt greedily; that answer becomes the previous answer of the
refinement prompt, and the G sampled ``<offset>`` turns are scored by ``score_refinement``
(format, per-point refinement score, box-refinement gain, mask-IoU gain) plus a no-op guard (see
docs/TRAINING.md).
"""
from __future__ import annotations

import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..decode import TableDecoder
from ..rewards.core import noop_outside_penalty, score_grid_answer, score_refinement, weighted_total
from ..tokens import Grid
from .checkpoint import load_checkpoint, save_checkpoint
from .data import Example, ShardStream
from .decoding import Generation, generate
from .evaluate import encode_batch, evaluate
from .model import GroundingModel, select_enc
from .sft import Logger


# ---------------------------------------------------------------- loss math
def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``[P, G]`` rewards -> ``(r - mean) / (std + eps)`` within each group (population std)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, adv: torch.Tensor,
              mask: torch.Tensor, clip: float = 0.2, beta: float = 0.04) -> tuple[torch.Tensor, dict]:
    """Clipped-ratio policy loss + k3 KL to the reference; all ``[B, T]`` but ``adv`` ``[B]``."""
    mask = mask.float()
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    pg = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
    d = ref_logp - logp
    kl = torch.exp(d) - d - 1
    per_answer = ((pg + beta * kl) * mask).sum(1) / mask.sum(1).clamp(min=1)
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        stats = {"kl": float((kl * mask).sum() / n), "ratio": float((ratio * mask).sum() / n),
                 "clip_frac": float((((ratio - 1).abs() > clip).float() * mask).sum() / n)}
    return per_answer.mean(), stats


def token_logprobs(model: GroundingModel, enc: dict, gen: Generation, temperature: float = 1.0) -> torch.Tensor:
    """``[B, T]``: log-prob of the token at ``t + 1``, at position ``t``, under the sampling policy
    (the same masks and temperature)."""
    logits = model.decode(enc, gen.seqs).float() / temperature
    logits = logits.masked_fill(~gen.allowed & gen.allowed.any(-1, keepdim=True), float("-inf"))
    lp = torch.log_softmax(logits[:, :-1], dim=-1)
    out = lp.gather(-1, gen.seqs[:, 1:, None]).squeeze(-1)
    return F.pad(torch.where(answer_mask(gen)[:, :-1], out, 0.0), (0, 1))


def answer_mask(gen: Generation) -> torch.Tensor:
    """Positions that chose a token with more than one allowed option."""
    return gen.allowed.sum(-1) > 1


# ---------------------------------------------------------------- rewards
def rewards_for(stage: str, texts: list[str], prompts: list[Example], previous: list[str], weights: dict,
                decoders: dict, noop_rule: str = "outside") -> tuple[torch.Tensor, dict]:
    """Weighted total per completion and the per-reward means. ``noop_rule``: ``outside`` replaces
    ``score_refinement``'s label-based ``noop`` by :func:`noop_outside_penalty`; ``labels`` keeps it."""
    totals, parts = [], {}
    for text, e, prev in zip(texts, prompts, previous):
        info = e.info
        grid = Grid(info["n"], info["width"], info["height"], info["m"])
        dec = decoders.setdefault(e.key, TableDecoder(e.table, info["n"], info["m"]))
        if stage == "grid":
            s = score_grid_answer(text, info, dec, grid, e.task)
        else:
            s = score_refinement(text, prev, info, dec, grid)
            if noop_rule == "outside":
                s["noop"] = noop_outside_penalty(text, prev, info, grid)
        totals.append(weighted_total(s, weights))
        for k, v in s.items():
            parts.setdefault(k, []).append(v)
    return torch.tensor(totals), {k: float(np.mean(v)) for k, v in parts.items()}


# ---------------------------------------------------------------- loop
def prompt_batches(cfg: dict, model: GroundingModel, P: int):
    dc = {**cfg["data"], "image_size": model.cfg.image_size}
    stream = ShardStream(dc["train"], dc, "grid", shuffle=True, with_table=True, seed=cfg["seed"])
    epoch, batch = 0, []
    while True:
        stream.set_epoch(epoch)
        for e in stream:
            batch.append(e)
            if len(batch) == P:
                yield batch
                batch = []
        epoch += 1


def grpo_step(model, ref, opt, prompts: list[Example], cfg: dict) -> dict:
    gc, stage, G = cfg["grpo"], cfg["stage"], int(cfg["grpo"]["group"])
    temp = float(gc["temperature"])
    with torch.no_grad():
        enc = encode_batch(model, prompts)
        previous = [""] * len(prompts)
        if stage == "offset":  # turn 1: the policy's own grid answer (greedy or sampled)
            first = generate(model, enc, [e.task for e in prompts], previous, mode="strict",
                             sample=gc["turn1"] == "sample", temperature=float(gc["temperature"]))
            previous = first.texts(model.vocab)
        rep = torch.arange(len(prompts)).repeat_interleave(G)
        tasks = ["offset" if stage == "offset" else prompts[k].task for k in rep.tolist()]
        prev_rep = [previous[k] for k in rep.tolist()]
        gen = generate(model, select_enc(enc, rep), tasks, prev_rep, mode=gc["mode"], sample=True, temperature=temp)
    rep_prompts = [prompts[k] for k in rep.tolist()]
    rewards, parts = rewards_for(stage, gen.texts(model.vocab), rep_prompts, prev_rep, cfg["rewards"][stage], {},
                                 cfg["rewards"]["noop_rule"])
    adv = group_advantages(rewards.view(len(prompts), G), float(gc["adv_eps"])).view(-1)
    mask = F.pad(answer_mask(gen)[:, :-1], (0, 1))
    with torch.no_grad():
        old = token_logprobs(model, select_enc(enc, rep), gen, temp)
        ref_lp = token_logprobs(ref, select_enc(encode_batch(ref, prompts), rep), gen, temp)
    model.train()
    for _ in range(int(gc["inner_steps"])):
        enc_g = encode_batch(model, prompts)
        logp = token_logprobs(model, select_enc(enc_g, rep), gen, temp)
        loss, stats = grpo_loss(logp, old, ref_lp, adv, mask, float(gc["clip"]), float(gc["kl"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(gc["grad_clip"]))
        opt.step()
    model.eval()
    return {"loss": loss.item(), "reward": float(rewards.mean()), **{f"r_{k}": v for k, v in parts.items()}, **stats}


def set_trainable(model: GroundingModel, which: str) -> None:
    """``all``; ``decoder`` (the CNN frozen); ``offset``: only what offset tokens alone use (their
    anchor-neighbourhood features and their rows of the output head), so grid answers stay fixed."""
    if which == "all":
        return
    if which == "decoder":
        for mod in (model.cnn, model.cell_in, model.fine_in):
            mod.requires_grad_(False)
        return
    if which != "offset":
        raise ValueError(f"grpo.trainable must be auto, all, decoder or offset, got {which!r}")
    model.requires_grad_(False)
    for mod in (model.local, model.fine, model.fine_in, model.fine_film, model.head):
        mod.requires_grad_(True)
    rows = torch.zeros(model.head.out_features, 1)
    rows[:10] = 1.0  # head rows 0..9: the nine offset tokens and <DELETE>
    model.head.weight.register_hook(lambda g: g * rows)
    model.head.bias.register_hook(lambda g: g * rows[:, 0])


def train_grpo(cfg: dict, init: str, out: str, progress: bool = True) -> dict:
    """GRPO from checkpoint ``init``; the reference policy is a frozen copy of it."""
    if cfg["stage"] not in ("grid", "offset"):
        raise ValueError(f"GRPO stage must be grid or offset, got {cfg['stage']!r}")
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(int(cfg["threads"]))
    model, ckpt = load_checkpoint(init)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    which = cfg["grpo"]["trainable"]
    set_trainable(model, ("all" if cfg["stage"] == "grid" else "offset") if which == "auto" else which)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(cfg["grpo"]["lr"]), weight_decay=0.0)
    cfg = {**cfg, "model": model.cfg.to_dict(), "init": init}
    log, total, last = Logger(out), int(cfg["steps"]), {}
    log(event="start", step=0, init_step=ckpt["step"], config=cfg)
    batches = prompt_batches(cfg, model, int(cfg["grpo"]["prompts"]))
    bar = tqdm(total=total, desc=f"grpo[{cfg['stage']}]", disable=not progress, dynamic_ncols=True)
    t0, train_s = time.time(), 0.0
    model.eval()
    for step in range(1, total + 1):
        stats = grpo_step(model, ref, opt, next(batches), cfg)
        bar.set_postfix(reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.4f}")
        bar.update()
        log(event="train", step=step, train_seconds=train_s + time.time() - t0, **stats)
        every, final = int(cfg["eval"]["every"] or 0), step == total
        if cfg["data"].get("val") and ((every and step % every == 0) or final):
            train_s += time.time() - t0
            ec = cfg["eval"]
            rounds = ec["refine_rounds"] if ec["refine_rounds"] is not None else int(cfg["stage"] == "offset")
            limit = ec["final_limit"] if final else ec["limit"]
            last = {"step": step, "train_seconds": train_s, "refine_rounds": rounds,
                    "val": evaluate(model, cfg["data"]["val"], rounds, limit, ec["batch_size"])}
            if final and rounds:  # the same answers without refinement, for the comparison
                last["val_no_refine"] = evaluate(model, cfg["data"]["val"], 0, limit, ec["batch_size"])
            log(event="eval", **last)
            bar.write(json.dumps(last))
            t0 = time.time()
        if final or (cfg["save_every"] and step % cfg["save_every"] == 0):
            save_checkpoint(out, model, cfg, int(ckpt["step"]) + step, stage=cfg["stage"])
    bar.close()
    return last or {"step": total}
