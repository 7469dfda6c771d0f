"""Answers per task: what a well-formed answer of each task is, parsed strictly (docs/FORMAT.md
section 3). Shared by ``score``, ``predict`` and the rewards, so a "format failure" means the same
thing everywhere.

- ``seg`` / ``box`` / ``point`` / ``pl``: exactly one grounding of that kind; ``<seg></seg>`` is
  the well-formed no-target answer of ``seg`` (gRefCOCO).
- ``cap`` (region captioning): any non-empty text without spatial tokens (the region is in the
  prompt; the answer is words).
- ``points`` / ``boxes`` (multi-instance): one ``<point>`` / ``<box>`` group per instance, at least
  one, nothing else; or the no-match answer ``<point></point>`` / ``<box></box>`` alone. The
  canonical order (what builds and exports write) is the raster order of the anchors: by row, then
  column (boxes: of the top-left corner, then of the bottom-right). Parsing accepts any order: the
  scorer and the rewards match instances as a set.
"""
from __future__ import annotations

import re

from .codec import Box, Grounding, Mask, ParseError, Point, encode, parse
from .vocab import WRAPPERS

SINGLE_TASKS = ("seg", "box", "point", "pl")
_SPATIAL_RE = re.compile(r"<(grid_\d+_\d+|OFF_-?\d_-?\d|DELETE|/?(point|box|seg|pl|offset))>")
MULTI_TASKS = {"points": "point", "boxes": "box"}  # task -> the kind of its groups
EMPTY_SEG = "<seg></seg>"
EMPTY_ANSWER = {task: "".join(WRAPPERS[kind]) for task, kind in MULTI_TASKS.items()}
_EMPTY_RE = {kind: re.compile(r"\s*" + re.escape(WRAPPERS[kind][0]) + r"\s*" + re.escape(WRAPPERS[kind][1]) + r"\s*")
             for kind in ("seg", "point", "box")}


def raster_key(item: Point | Box) -> tuple[int, ...]:
    """Canonical order of a multi-instance answer's groups: row before column, corner by corner."""
    return tuple(v for (i, j) in item.anchors for v in (j, i))


def encode_instances(task: str, items: list[Point | Box]) -> str:
    """The canonical answer of ``points`` / ``boxes``: groups in raster order (duplicates kept:
    two instances may share an anchor), or the no-match answer for no items."""
    if task not in MULTI_TASKS:
        raise ValueError(f"not a multi-instance task: {task!r}")
    if not items:
        return EMPTY_ANSWER[task]
    return "".join(encode(it) for it in sorted(items, key=raster_key))


def parse_instances(text: str, n: int, task: str) -> list[Point | Box]:
    """The groups of a ``points`` / ``boxes`` answer ([] for the no-match answer); raise ParseError."""
    kind = MULTI_TASKS[task]
    if _EMPTY_RE[kind].fullmatch(text):
        return []
    items = parse(text, n)
    for it in items:
        if it.kind != kind:
            raise ParseError(0, f"a {task} answer holds only <{kind}> groups, got <{it.kind}>")
    return items


def parse_answer(text: str, n: int, task: str) -> Grounding | list[Point | Box] | None:
    """The answer of ``task`` in ``text``, or None when it is not well formed.

    Single tasks: the one grounding (``<seg></seg>``: an empty Mask); multi-instance tasks: the
    list of groups ([] for the no-match answer); ``cap``: the text, stripped (an empty caption, or
    one holding spatial tokens, is not an answer)."""
    if task == "cap":
        text = " ".join(text.split())
        return text if text and not _SPATIAL_RE.search(text) else None
    try:
        if task in MULTI_TASKS:
            return parse_instances(text, n, task)
        if task == "seg" and _EMPTY_RE["seg"].fullmatch(text):
            return Mask(())
        items = parse(text, n)
    except (ParseError, ValueError):
        return None
    if len(items) != 1 or items[0].kind != task:
        return None
    return items[0]


__all__ = ["SINGLE_TASKS", "MULTI_TASKS", "EMPTY_SEG", "EMPTY_ANSWER", "raster_key", "encode_instances",
           "parse_instances", "parse_answer"]
