"""Anchor geometry on (possibly non-square) images and the offset lattice.

``<grid_i_j>`` sits at ``x = (i + 0.5) * W / n``, ``y = (j + 0.5) * H / n``. One offset step is
``(W / m, H / m)`` and ``<OFF_du_dv>`` moves a position by ``(du * W / m, -dv * H / m)``:
``dv = +1`` is up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Grid:
    """An ``n x n`` anchor grid and an ``m``-step offset lattice on a ``width x height`` image."""

    n: int
    width: float
    height: float
    m: int | None = None  # default 2n: one step is half a cell

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"grid n must be >= 1, got {self.n}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if self.m is None:
            object.__setattr__(self, "m", 2 * self.n)
        if self.m < 1:
            raise ValueError(f"offset lattice m must be >= 1, got {self.m}")

    @property
    def step(self) -> tuple[float, float]:
        """One offset step in pixels, (x, y)."""
        return self.width / self.m, self.height / self.m

    def anchor(self, i: int, j: int) -> tuple[float, float]:
        """Pixel position of ``<grid_i_j>``."""
        return (i + 0.5) * self.width / self.n, (j + 0.5) * self.height / self.n

    def position(self, i: int, j: int, step: tuple[int, int] | None = (0, 0)) -> tuple[float, float]:
        """Anchor position moved by one offset step; ``dv = +1`` moves up."""
        x, y = self.anchor(i, j)
        if step is None:
            raise ValueError("a deleted anchor has no position")
        sx, sy = self.step
        return x + step[0] * sx, y - step[1] * sy

    def nearest(self, x: float, y: float) -> tuple[int, int]:
        """The anchor nearest to a pixel position: the cell containing it, clamped to the grid."""
        i = min(self.n - 1, max(0, math.floor(x * self.n / self.width)))
        j = min(self.n - 1, max(0, math.floor(y * self.n / self.height)))
        return i, j
