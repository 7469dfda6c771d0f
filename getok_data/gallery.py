"""A contact sheet of several targets chosen to show a build's spread of token IoU.

``inspect --gallery`` shows more than the first target: the targets are ranked by token IoU and
``count`` of them are taken at evenly spaced ranks, so the sheet always holds the best, the
median and the worst (ties: the first in key, then target order). Each tile is the target drawn
as ``inspect`` draws it (GT green, decoded union magenta, anchors yellow; lanes also show their
``<pl>`` in cyan), captioned with its rank, token IoU, token count and first sentence.
"""
from __future__ import annotations

import cv2
import numpy as np

from .dataset import Dataset
from .inspect import draw_target

TILE_H = 220
CAPTION_H = 36
COLUMNS = 3


def spread_ranks(total: int, count: int) -> list[int]:
    """``count`` ranks (0 = best) evenly spaced over ``total`` items, both ends and the median in."""
    if total <= 0:
        return []
    if count >= total:
        return list(range(total))
    ranks = {round(k * (total - 1) / (count - 1)) for k in range(count)} if count > 1 else {0}
    ranks.add((total - 1) // 2)
    return sorted(ranks)


def label_of(rank: int, total: int) -> str:
    if rank == 0:
        return "best"
    if rank == total - 1:
        return "worst"
    if rank == (total - 1) // 2:
        return "median"
    return f"#{rank + 1}/{total}"


def _tile(img: np.ndarray, lines: list[str]) -> np.ndarray:
    h, w = img.shape[:2]
    scale = TILE_H / h
    img = cv2.resize(img, (max(1, round(w * scale)), TILE_H), interpolation=cv2.INTER_AREA)
    width = max(img.shape[1], TILE_H * 4 // 3)
    tile = np.full((TILE_H + CAPTION_H, width, 3), 255, np.uint8)
    tile[CAPTION_H:, : img.shape[1]] = img
    for k, text in enumerate(lines):
        cv2.putText(tile, text[:48], (4, 14 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def gallery(url: str, png: str, count: int = 9) -> str:
    """Write the contact sheet to ``png``; return one line per tile (rank, IoU, key, target)."""
    ds = Dataset(url)
    rows = [(-float(t["token_iou"]), s.key, k) for s in ds.samples() for k, t in enumerate(s.meta["targets"])]
    if not rows:
        raise FileNotFoundError(f"no targets in the shards of {url}")
    rows.sort()
    ranks = spread_ranks(len(rows), count)
    wanted = {(rows[r][1], rows[r][2]): r for r in ranks}
    tiles: dict[int, tuple[np.ndarray, str]] = {}
    for s in ds.samples():
        for (key, k), r in wanted.items():
            if key != s.key:
                continue
            t = s.meta["targets"][k]
            _, left, _, _ = draw_target(s, k)
            head = f"{label_of(r, len(rows))}  token IoU {t['token_iou']:.3f}  {t['token_count']} tok"
            sent = t["sentences"][0] if t["sentences"] else t["target_id"]
            tiles[r] = (_tile(left, [head, sent]), f"{head}  {key}/{t['target_id']}  {sent!r}")
    ordered = [tiles[r] for r in sorted(tiles)]
    width = max(t.shape[1] for t, _ in ordered)
    padded = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t, _ in ordered]
    while len(padded) % COLUMNS:
        padded.append(np.full_like(padded[0], 255))
    rows_img = [np.concatenate(padded[c : c + COLUMNS], axis=1) for c in range(0, len(padded), COLUMNS)]
    cv2.imwrite(png, np.concatenate(rows_img, axis=0))
    return "\n".join([f"gallery: {png}  ({len(ordered)} of {len(rows)} targets by token IoU; GT green, "
                      "union magenta, anchors yellow, <pl> cyan)"] + [line for _, line in ordered])
