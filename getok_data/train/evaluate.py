"""Evaluate a checkpoint on built shards: decode answers, optionally refine them, score them.

Per (target, sentence) the model answers three prompts (``<seg>``, ``<box>``, ``<point>``) with
constrained greedy decoding. ``refine_rounds = K`` then runs K offset turns: the previous answer
is the model's own, the offsets are applied (masks through the stored candidate table,
``TableDecoder.decode(anchors, steps)``; boxes and points geometrically) and, for the next round,
the refined positions are re-quantised to grid tokens (deleted anchors dropped).
"""
from __future__ import annotations

import itertools
from typing import Iterable

import torch

from ..decode import TableDecoder
from ..masks import rle_to_mask
from ..tokens import Box, Grid, Mask, Point, decode_box, decode_point, encode, parse
from .data import Example, ShardStream, collate
from .decoding import generate, parses
from .metrics import Meter
from .model import GroundingModel, select_enc


class Outcome:
    """A task's current answer for one example: the grounding, its decoded result, and helpers."""

    def __init__(self, ex: Example, task: str, decoder: TableDecoder):
        self.ex, self.task, self.dec = ex, task, decoder
        info = ex.info
        self.grid = Grid(info["n"], info["width"], info["height"], info["m"])
        self.item = None  # current grounding (None: unparsable or everything deleted)
        self.result = None  # mask (table res) | pixel box | pixel point

    def set_answer(self, text: str) -> bool:
        ok = parses(text, self.grid.n, self.task)
        self.item = parse(text, self.grid.n)[0] if ok else None
        self.result = self.decode(self.item, None) if ok else None
        return ok

    def decode(self, item, steps):
        """Decoded result of a grounding with optional per-anchor steps (None in steps = deleted)."""
        if item is None:
            return None
        if self.task == "seg":
            return self.dec.decode(list(item.anchors), list(steps) if steps else None)
        if self.task == "box":
            return decode_box(item, self.grid, tuple(steps) if steps else ((0, 0), (0, 0)))
        return decode_point(item, self.grid, steps[0] if steps else (0, 0))

    def refine(self, text: str, previous: str) -> bool:
        """Apply an offset answer; re-quantise for the next round. False if it does not parse."""
        if not parses(text, self.grid.n, "offset", previous):
            self.item = self.result = None
            return False
        steps = parse(text, self.grid.n)[0].groups[0].steps
        self.result = self.decode(self.item, steps)
        self.item = requantise(self.item, steps, self.grid, self.dec)
        return True


def requantise(item, steps, grid: Grid, dec: TableDecoder):
    """The grid-token grounding a refined one stands for; None if nothing is left. Mask anchors
    become the grid points whose masks stood in for them (``TableDecoder.stand_in``), so the
    re-quantised mask decodes to the refined one; box corners and points go to the nearest grid
    point (``TableDecoder.moved``), clamped to the grid."""
    if item.kind == "seg":
        kept = {dec.stand_in(i, j, s) for (i, j), s in zip(item.anchors, steps)} - {None}
        return Mask(tuple(sorted(kept, key=lambda a: (a[1], a[0])))) if kept else None
    moved = [dec.moved(i, j, s) for (i, j), s in zip(item.anchors, steps)]
    if any(p is None for p in moved):
        return None
    pts = [(min(grid.n - 1, max(0, i)), min(grid.n - 1, max(0, j))) for i, j in moved]
    if item.kind == "point":
        return Point(pts[0])
    (i0, j0), (i1, j1) = pts
    return Box((min(i0, i1), min(j0, j1)), (max(i0, i1), max(j0, j1)))


def encode_batch(model: GroundingModel, examples: list[Example]) -> dict:
    cfg = model.cfg
    b = collate(examples, model.vocab, cfg.text_buckets, cfg.max_words)
    return model.encode(b["images"], b["text"], b["img_index"])


def eval_examples(shards, image_size: int, limit: int | None = None) -> Iterable[Example]:
    """Examples in order: per (target, sentence) a ``seg``, ``box`` and ``point`` prompt."""
    stream = ShardStream(shards, {"image_size": image_size}, stage="eval", shuffle=False, with_table=True)
    pairs = itertools.groupby(iter(stream), key=lambda e: (e.key, e.target, e.sentence))
    for k, (_, group) in enumerate(pairs):
        if limit is not None and k >= limit:
            return
        yield from group


def refinable(o: Outcome) -> bool:
    """Whether an outcome has anchors to refine (an empty ``<seg></seg>`` has none, as in ``score``)."""
    return o.item is not None and bool(o.item.anchors)


def run_refinement(model: GroundingModel, enc: dict, outs: list[Outcome], rounds: int, mode: str, meter: Meter | None):
    """``rounds`` offset turns on each outcome that still has anchors."""
    for _ in range(rounds):
        rows = [k for k, o in enumerate(outs) if refinable(o)]
        if not rows:
            return
        prev = [encode(outs[k].item) for k in rows]
        gen = generate(model, select_enc(enc, torch.tensor(rows)), ["offset"] * len(rows), prev, mode=mode)
        for k, text, p in zip(rows, gen.texts(model.vocab), prev):
            ok = outs[k].refine(text, p)
            if meter is not None:
                meter.add_format(ok)


@torch.no_grad()
def evaluate(model: GroundingModel, shards, refine_rounds: int = 0, limit: int | None = None,
             batch_size: int = 96, mode: str = "strict") -> dict:
    """Metrics (see :mod:`.metrics`) over the (target, sentence) pairs of ``shards``."""
    model.eval()
    meter = Meter()
    examples = eval_examples(shards, model.cfg.image_size, limit)
    while True:
        batch = list(itertools.islice(examples, batch_size))
        if not batch:
            break
        enc = encode_batch(model, batch)
        gen = generate(model, enc, [e.task for e in batch], [""] * len(batch), mode=mode)
        decoders: dict[str, TableDecoder] = {}
        outs = []
        for e, text in zip(batch, gen.texts(model.vocab)):
            if e.key not in decoders:
                decoders[e.key] = TableDecoder(e.table, e.info["n"], e.info["m"])
            o = Outcome(e, e.task, decoders[e.key])
            meter.add_format(o.set_answer(text))
            outs.append(o)
        run_refinement(model, enc, outs, refine_rounds, mode, meter)
        for o in outs:
            score(o, meter)
    return meter.summary()


def score(o: Outcome, meter: Meter) -> None:
    info = o.ex.info
    if o.task == "seg":
        meter.add_mask(o.result, o.dec.gt(info["mask_rle"]))
        empty = o.item is not None and (o.result is None or not o.result.any())
        meter.add_target(bool(info.get("no_target")), ok=o.item is not None, empty=empty)
    elif o.task == "box":
        meter.add_box(o.result, tuple(info["box"]))
    else:
        meter.add_point(o.result, rle_to_mask(info["mask_rle"]))


def oracle(shards, limit: int | None = None) -> dict:
    """The same metrics for the stored GT tokens (the grid's ceiling without refinement)."""
    meter = Meter()
    for e in eval_examples(shards, 8, limit):
        o = Outcome(e, e.task, TableDecoder(e.table, e.info["n"], e.info["m"]))
        meter.add_format(o.set_answer(e.answer) if e.answer else False)
        score(o, meter)
    return meter.summary()


__all__ = ["evaluate", "oracle", "Outcome", "refinable", "requantise", "encode_batch", "eval_examples", "run_refinement"]
