"""A PNG of the best and worst scored samples: image, GT (green) and prediction (red)."""
from __future__ import annotations

import heapq
import io
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import atomic_path

TILE = 192


@dataclass(order=True)
class _Entry:
    score: float
    order: int
    row_id: str = field(compare=False)
    image: bytes = field(compare=False)
    gt: object = field(compare=False)  # bool mask (table res) | pixel box
    pred: object = field(compare=False)


class Gallery:
    """Keeps the ``k`` best and ``k`` worst rows offered (ties: first offered wins)."""

    def __init__(self, k: int = 4):
        self.k = k
        self.best: list[_Entry] = []  # min-heap of the best
        self.worst: list[_Entry] = []  # min-heap of negated scores
        self._n = 0

    def offer(self, score: float, row_id: str, image: bytes, gt, pred) -> None:
        self._n += 1
        e = _Entry(score, -self._n, row_id, image, gt, pred)
        w = _Entry(-score, -self._n, row_id, image, gt, pred)
        (heapq.heappush if len(self.best) < self.k else heapq.heappushpop)(self.best, e)
        (heapq.heappush if len(self.worst) < self.k else heapq.heappushpop)(self.worst, w)

    def render(self, path: str | os.PathLike) -> None:
        """Two rows (best, worst), written atomically."""
        best = sorted(self.best, reverse=True)
        worst = [_Entry(-e.score, e.order, e.row_id, e.image, e.gt, e.pred) for e in sorted(self.worst, reverse=True)]
        cols = max(1, len(best), len(worst))
        canvas = Image.new("RGB", (cols * TILE, 2 * (TILE + 16)), "white")
        draw = ImageDraw.Draw(canvas)
        for r, entries in enumerate((best, worst)):
            for c, e in enumerate(entries):
                x, y = c * TILE, r * (TILE + 16)
                canvas.paste(_tile(e), (x, y + 16))
                draw.text((x + 2, y + 2), f"{'best' if r == 0 else 'worst'} {e.score:.3f} {e.row_id[-24:]}", fill="black")
        with atomic_path(path) as tmp:
            canvas.save(tmp, format="PNG")


def _tile(e: _Entry) -> Image.Image:
    with Image.open(io.BytesIO(e.image)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    H, W = rgb.shape[:2]
    if isinstance(e.gt, np.ndarray):
        h, w = e.gt.shape
        small = np.asarray(Image.fromarray(rgb.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
        for mask, color in ((e.gt, (0, 255, 0)), (e.pred, (255, 0, 0))):
            if isinstance(mask, np.ndarray):
                small[mask] = 0.55 * small[mask] + 0.45 * np.array(color, np.float32)
        img = Image.fromarray(small.astype(np.uint8))
    else:
        img = Image.fromarray(rgb.astype(np.uint8))
        d = ImageDraw.Draw(img)
        for box, color in ((e.gt, "lime"), (e.pred, "red")):
            if box is not None and len(box) == 4:
                d.rectangle([float(v) for v in box], outline=color, width=max(1, W // 100))
    img.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE), "white")
    tile.paste(img, (0, 0))
    return tile
