"""Groundings as token strings: typed values, encoding, and a strict, total parser.

Every string either parses into typed groundings or raises :class:`ParseError` naming the
character position and the reason. Whitespace between tokens is allowed; anything else is not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from .vocab import DELETE, GRID_RE, OFFSET_RE, WRAPPERS, grid_token, offset_token

Anchor = tuple[int, int]  # (i, j): column, row
Step = Union[tuple[int, int], None]  # (du, dv), None = <DELETE>


@dataclass(frozen=True)
class Point:
    anchor: Anchor
    kind = "point"

    @property
    def anchors(self) -> tuple[Anchor, ...]:
        return (self.anchor,)


@dataclass(frozen=True)
class Box:
    top_left: Anchor
    bottom_right: Anchor
    kind = "box"

    @property
    def anchors(self) -> tuple[Anchor, ...]:
        return (self.top_left, self.bottom_right)


@dataclass(frozen=True)
class Mask:
    anchors: tuple[Anchor, ...]
    kind = "seg"


@dataclass(frozen=True)
class Polyline:
    anchors: tuple[Anchor, ...]
    kind = "pl"


@dataclass(frozen=True)
class OffsetGroup:
    """The offsets for one grounding of the previous answer: one step (or DELETE) per anchor."""

    kind: str  # point | box | seg | pl
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Refinement:
    """A refinement turn: ``<offset>`` then one group per previous grounding, then ``</offset>``."""

    groups: tuple[OffsetGroup, ...]
    kind = "offset"


Grounding = Union[Point, Box, Mask, Polyline]
Item = Union[Point, Box, Mask, Polyline, Refinement]

# Anchor-count rules, shared by groundings and their offset groups.
# ``<seg></seg>`` (no anchors) is the no-target answer (gRefCOCO; docs/FORMAT.md section 3).
_COUNT = {"point": (1, 1), "box": (2, 2), "seg": (0, None), "pl": (2, None)}


class ParseError(ValueError):
    """A malformed token string; ``position`` is the character offset of the offending token."""

    def __init__(self, position: int, reason: str):
        super().__init__(f"position {position}: {reason}")
        self.position = position
        self.reason = reason


def _wrap(kind: str, body: list[str]) -> str:
    open_, close = WRAPPERS[kind]
    return open_ + "".join(body) + close


def encode(item: Item) -> str:
    """Token string of one grounding or refinement turn."""
    if isinstance(item, Refinement):
        return _wrap("offset", [_wrap(g.kind, [offset_token(s) for s in g.steps]) for g in item.groups])
    _check_count(item.kind, len(item.anchors), None)
    return _wrap(item.kind, [grid_token(i, j) for i, j in item.anchors])


def encode_all(items: list[Item]) -> str:
    """Concatenated token strings of several items."""
    return "".join(encode(it) for it in items)


def _check_count(kind: str, count: int, position: int | None) -> None:
    lo, hi = _COUNT[kind]
    if count < lo or (hi is not None and count > hi):
        want = f"exactly {lo}" if lo == hi else f"at least {lo}"
        msg = f"<{kind}> holds {count} tokens, needs {want}"
        if position is None:
            raise ValueError(msg)
        raise ParseError(position, msg)


_TOKEN_RE = re.compile(r"<[^<>\s]*>")


def tokenize(text: str) -> list[tuple[int, str]]:
    """Split into (position, token); raise on any non-whitespace text outside tokens."""
    out: list[tuple[int, str]] = []
    pos = 0
    for m in _TOKEN_RE.finditer(text):
        gap = text[pos : m.start()]
        if gap.strip():
            bad = pos + (len(gap) - len(gap.lstrip()))
            raise ParseError(bad, f"unexpected text {text[bad:m.start()].strip()[:20]!r}")
        out.append((m.start(), m.group()))
        pos = m.end()
    tail = text[pos:]
    if tail.strip():
        bad = pos + (len(tail) - len(tail.lstrip()))
        raise ParseError(bad, f"unexpected text {tail.strip()[:20]!r}")
    return out


_OPEN = {v[0]: k for k, v in WRAPPERS.items()}
_CLOSE = {v[1]: k for k, v in WRAPPERS.items()}


class _Parser:
    def __init__(self, text: str, n: int):
        self.tokens = tokenize(text)
        self.n = n
        self.k = 0
        self.end = len(text)

    def peek(self) -> tuple[int, str] | None:
        return self.tokens[self.k] if self.k < len(self.tokens) else None

    def take(self, what: str) -> tuple[int, str]:
        tok = self.peek()
        if tok is None:
            raise ParseError(self.end, f"unexpected end of string, expected {what}")
        self.k += 1
        return tok

    def grid(self, pos: int, tok: str) -> Anchor:
        m = GRID_RE.fullmatch(tok)
        if not m:
            raise ParseError(pos, f"expected a grid token, got {tok!r}")
        i, j = int(m.group(1)), int(m.group(2))
        if i >= self.n or j >= self.n or tok != grid_token(i, j):
            raise ParseError(pos, f"{tok} is outside the {self.n}x{self.n} grid")
        return i, j

    def step(self, pos: int, tok: str) -> Step:
        if tok == DELETE:
            return None
        m = OFFSET_RE.fullmatch(tok)
        if not m:
            raise ParseError(pos, f"expected an offset token or <DELETE>, got {tok!r}")
        return int(m.group(1)), int(m.group(2))

    def group(self, kind: str, open_pos: int, element) -> list:
        body = []
        close = WRAPPERS[kind][1]
        while True:
            pos, tok = self.take(close)
            if tok == close:
                _check_count(kind, len(body), open_pos)
                return body
            body.append(element(pos, tok))

    def item(self) -> Item:
        pos, tok = self.take("an opening wrapper")
        kind = _OPEN.get(tok)
        if kind is None:
            raise ParseError(pos, f"expected an opening wrapper, got {tok!r}")
        if kind == "offset":
            groups = []
            while True:
                gpos, gtok = self.take("</offset>")
                if gtok == "</offset>":
                    if not groups:
                        raise ParseError(gpos, "empty <offset>")
                    return Refinement(tuple(groups))
                gkind = _OPEN.get(gtok)
                if gkind is None or gkind == "offset":
                    raise ParseError(gpos, f"expected <point>, <box>, <seg> or <pl> inside <offset>, got {gtok!r}")
                groups.append(OffsetGroup(gkind, tuple(self.group(gkind, gpos, self.step))))
        anchors = self.group(kind, pos, self.grid)
        if kind == "point":
            return Point(anchors[0])
        if kind == "box":
            (i0, j0), (i1, j1) = anchors
            if i0 > i1 or j0 > j1:
                raise ParseError(pos, f"<box> corners out of order: {anchors[0]} is not top-left of {anchors[1]}")
            return Box(anchors[0], anchors[1])
        return Mask(tuple(anchors)) if kind == "seg" else Polyline(tuple(anchors))


def parse(text: str, n: int) -> list[Item]:
    """Parse a token string into groundings / refinement turns; raise ParseError otherwise.

    An empty (or all-whitespace) string is an error: an answer must ground something.
    """
    p = _Parser(text, n)
    if not p.tokens:
        raise ParseError(0, "no tokens")
    items = []
    while p.peek() is not None:
        items.append(p.item())
    return items


def parse_one(text: str, n: int, kind: str | None = None) -> Item:
    """Parse a string that must hold exactly one item (of ``kind`` if given)."""
    items = parse(text, n)
    if len(items) != 1:
        raise ParseError(0, f"expected one grounding, got {len(items)}")
    if kind is not None and items[0].kind != kind:
        raise ParseError(0, f"expected <{kind}>, got <{items[0].kind}>")
    return items[0]
