"""Autoregressive decoding with optional grammar constraints (greedy or sampled).

Modes: ``strict`` (the grammar, ``<seg>`` anchors strictly increasing in raster order so never
repeated, ``<seg></seg>`` allowed: the no-target answer, box corners in order, no ``<DELETE>`` on box corners), ``grammar`` (the grammar's
structure and counts only: anchors may repeat, boxes may come out of order, so the format and
repetition rewards still have something to judge), ``none`` (any spatial token or ``<eos>``).
An offset answer is constrained to one offset token per anchor of the previous answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tokens import ParseError, parse
from ..tokens.rules import anchor_counts, refinement_matches
from .model import GroundingModel, select_enc
from .vocab import SeqVocab

MODES = ("strict", "grammar", "none")


def offset_groups(previous: str, n: int) -> list[tuple[str, int]]:
    """(wrapper, anchor count) of each grounding of a previous answer."""
    return anchor_counts(parse(previous, n)) if previous else []


def allowed(v: SeqVocab, task: str, groups: list[tuple[str, int]], ans: list[int], mode: str,
            max_anchors: int) -> torch.Tensor:
    """Bool ``[V]``: the tokens that may follow the answer-so-far ``ans``."""
    m = torch.zeros(len(v), dtype=torch.bool)
    if mode == "none":
        m[: v.num_grid + 20] = True
        m[v.eos] = True
        return m
    if task == "offset":
        template = [v.open["offset"]]
        for kind, count in groups:
            template += [v.open[kind]] + [None] * count + [v.close[kind]]
        template += [v.close["offset"], v.eos]
        p = len(ans)
        if p >= len(template):
            m[v.eos] = True
        elif template[p] is None:
            m[v.off0 : v.off0 + 10] = True
            if mode == "strict" and _group_at(groups, p) == "box":
                m[v.off0 + 9] = False
        else:
            m[template[p]] = True
        return m
    # seg may close at once: <seg></seg> is the no-target answer (gRefCOCO, FORMAT.md section 8)
    lo, hi = {"point": (1, 1), "box": (2, 2), "seg": (0, max_anchors)}[task]
    if not ans:
        m[v.open[task]] = True
        return m
    if ans[-1] == v.close[task] or len(ans) > hi + 1:
        m[v.eos] = True
        return m
    body, n = ans[1:], v.n
    if len(body) < hi:
        m[: v.num_grid] = True
        if mode == "strict" and body and task == "seg":
            m[: body[-1] + 1] = False
        if mode == "strict" and body and task == "box":
            i0, j0 = body[0] % n, body[0] // n
            ids = torch.arange(v.num_grid)
            m[: v.num_grid] = (ids % n >= i0) & (ids // n >= j0)
    if len(body) >= lo:
        m[v.close[task]] = True
    return m


def _group_at(groups: list[tuple[str, int]], p: int) -> str | None:
    pos = 1
    for kind, count in groups:
        if pos < p <= pos + count:
            return kind
        pos += count + 2
    return None


@dataclass
class Generation:
    answers: list[list[int]]  # answer ids (without <eos>)
    seqs: torch.Tensor  # [B, T] prefix + answer + <eos>, padded
    starts: list[int]  # index of the first answer token per row
    allowed: torch.Tensor  # bool [B, T, V]: the mask used at each position (position t predicts t+1)
    logp: torch.Tensor  # [B, T] log-prob of the token chosen at position t+1 (0 elsewhere)

    def texts(self, v: SeqVocab) -> list[str]:
        return [v.text(a) for a in self.answers]


@torch.no_grad()
def generate(model: GroundingModel, enc: dict, tasks: list[str], previous: list[str], mode: str = "strict",
             sample: bool = False, temperature: float = 1.0, max_new: int | None = None,
             generator: torch.Generator | None = None) -> Generation:
    """Decode one answer per row of ``enc`` (rows: examples; ``enc`` from ``model.encode``)."""
    v, cfg = model.vocab, model.cfg
    max_anchors = cfg.max_anchors
    prefixes = [v.prefix(t, p) for t, p in zip(tasks, previous)]
    groups = [offset_groups(p, v.n) if t == "offset" else [] for t, p in zip(tasks, previous)]
    need = [sum(c + 2 for _, c in g) + 3 if t == "offset" else {"point": 4, "box": 5}.get(t, max_anchors + 3)
            for t, g in zip(tasks, groups)]
    max_new = max_new or max(need)
    B = len(prefixes)
    T = min(cfg.max_len, max(len(p) for p in prefixes) + max_new)
    seqs = torch.full((B, T), v.pad, dtype=torch.long)
    for b, p in enumerate(prefixes):
        seqs[b, : len(p)] = torch.tensor(p)
    lens = torch.tensor([len(p) for p in prefixes])
    starts = lens.tolist()
    masks = torch.zeros((B, T, len(v)), dtype=torch.bool)
    logp = torch.zeros((B, T))
    answers: list[list[int]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    rows = torch.arange(B)
    while not done.all():
        live = rows[~done & (lens < T)]
        if len(live) == 0:
            break
        L = int(lens[live].max())
        logits = model.decode(select_enc(enc, live), seqs[live, :L])
        last = logits[torch.arange(len(live)), lens[live] - 1].float()
        allow = torch.stack([allowed(v, tasks[b], groups[b], answers[b], mode, max_anchors) for b in live.tolist()])
        last = last.masked_fill(~allow, float("-inf"))
        lp = torch.log_softmax(last / (temperature if sample else 1.0), dim=-1)
        tok = torch.multinomial(lp.exp(), 1, generator=generator).squeeze(1) if sample else lp.argmax(-1)
        for k, b in enumerate(live.tolist()):
            t = int(lens[b])
            masks[b, t - 1] = allow[k]
            logp[b, t - 1] = lp[k, tok[k]]
            seqs[b, t] = tok[k]
            lens[b] += 1
            if int(tok[k]) == v.eos:
                done[b] = True
            else:
                answers[b].append(int(tok[k]))
        done |= lens >= T
    return Generation(answers, seqs, starts, masks, logp)


def parses(text: str, n: int, task: str, previous: str = "") -> bool:
    """Whether an answer parses to the form its task asks for (offsets: matching the previous)."""
    try:
        items = parse(text, n)
    except ParseError:
        return False
    if len(items) != 1 or items[0].kind != task:
        return False
    if task != "offset":
        return True
    return refinement_matches(parse(previous, n), items[0]) if previous else not items[0].groups
