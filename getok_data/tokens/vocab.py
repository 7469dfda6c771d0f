"""The spatial vocabulary: fixed order, fixed ids relative to its start (docs/FORMAT.md).

Order: the n*n grid tokens in raster order (row j outer, column i inner), then the nine
``<OFF_du_dv>`` tokens in keypad order (top row first: dv = +1 is up), then ``<DELETE>``,
then the ten wrapper tokens.
"""
from __future__ import annotations

import re

# Keypad order: (du, dv) with dv = +1 (up) first, du = -1 (left) first within a row.
OFFSET_STEPS: tuple[tuple[int, int], ...] = tuple(
    (du, dv) for dv in (1, 0, -1) for du in (-1, 0, 1)
)
KEEP = (0, 0)
DELETE = "<DELETE>"
WRAPPERS: dict[str, tuple[str, str]] = {
    "point": ("<point>", "</point>"),
    "box": ("<box>", "</box>"),
    "seg": ("<seg>", "</seg>"),
    "pl": ("<pl>", "</pl>"),
    "offset": ("<offset>", "</offset>"),
}
WRAPPER_TOKENS: tuple[str, ...] = tuple(t for pair in WRAPPERS.values() for t in pair)
NUM_OFFSET_TOKENS = len(OFFSET_STEPS) + 1  # nine moves + <DELETE>

GRID_RE = re.compile(r"<grid_(\d+)_(\d+)>")
OFFSET_RE = re.compile(r"<OFF_(-?1|0)_(-?1|0)>")


def grid_token(i: int, j: int) -> str:
    """``<grid_i_j>``: i is the column (x), j the row (y)."""
    return f"<grid_{i}_{j}>"


def offset_token(step: tuple[int, int] | None) -> str:
    """``<OFF_du_dv>`` for a step, ``<DELETE>`` for None."""
    if step is None:
        return DELETE
    du, dv = step
    if du not in (-1, 0, 1) or dv not in (-1, 0, 1):
        raise ValueError(f"offset step {step} is not in {{-1, 0, 1}}^2")
    return f"<OFF_{du}_{dv}>"


def offset_tokens() -> list[str]:
    """The ten offset tokens in vocabulary order."""
    return [offset_token(s) for s in OFFSET_STEPS] + [DELETE]


def vocabulary(n: int) -> list[str]:
    """The ordered spatial vocabulary for an n x n grid: n*n + 10 + 10 tokens."""
    if n < 1:
        raise ValueError(f"grid n must be >= 1, got {n}")
    grid = [grid_token(i, j) for j in range(n) for i in range(n)]
    return grid + offset_tokens() + list(WRAPPER_TOKENS)


def grid_token_id(i: int, j: int, n: int) -> int:
    """Id of ``<grid_i_j>`` relative to the vocabulary start (raster order)."""
    return j * n + i


def offset_token_id(step: tuple[int, int] | None, n: int) -> int:
    """Id of an offset token (or ``<DELETE>`` for None) relative to the vocabulary start."""
    k = len(OFFSET_STEPS) if step is None else OFFSET_STEPS.index(tuple(step))
    return n * n + k
