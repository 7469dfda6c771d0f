"""Draw one sample for a person: GT, chosen anchors, decoded union, region labels."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from .dataset import Dataset, Sample
from .decode import TableDecoder
from .masks import rle_to_mask
from .tokens import Grid

REGION_BGR = {"I": (80, 200, 60), "R": (0, 215, 255), "H": (0, 120, 255), "F": (150, 150, 150)}


def find_sample(url: str, key: str | None = None) -> Sample:
    """The sample with ``key`` (default: the first one) from the build in ``url``."""
    for sample in Dataset(url).samples():
        if key is None or sample.key == key:
            return sample
    raise KeyError(f"no sample with key {key!r} in {url}")


def decoded_union(sample: Sample, anchors, size: tuple[int, int], decoder: TableDecoder | None = None) -> np.ndarray:
    """The union of the table masks of ``anchors`` at the image's ``(w, h)``: what an answer decodes to."""
    union = (decoder or TableDecoder(sample.table, *sample.grid)).decode([tuple(a) for a in anchors])
    return cv2.resize(union.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def sample_rgb(sample: Sample) -> np.ndarray:
    """The sample's image, decoded to RGB."""
    return np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB"))


def target_masks(sample: Sample, target_index: int, size: tuple[int, int],
                 decoder: TableDecoder | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The target's GT mask and the decoded union of its anchors, the union at ``size`` (w, h)."""
    targets = sample.meta["targets"]
    if not 0 <= target_index < len(targets):
        raise IndexError(f"{sample.key} has {len(targets)} target(s); --target {target_index} is out of range")
    t = targets[target_index]
    return rle_to_mask(t["mask_rle"]), decoded_union(sample, t["anchors"], size, decoder)


def target_layers(sample: Sample, target_index: int,
                  decoder: TableDecoder | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Grid]:
    """The image (RGB), the target's GT mask, the decoded union of its anchors (both at the image's
    size) and the grid: what ``inspect`` and ``gallery`` draw (``report`` uses the two parts, so
    that a sample's image is decoded once for all its targets)."""
    rgb = sample_rgb(sample)
    h, w = rgb.shape[:2]
    gt, union = target_masks(sample, target_index, (w, h), decoder)
    return rgb, gt, union, Grid(sample.meta["grid"]["n"], w, h, sample.meta["grid"]["m"])


def draw_target(sample: Sample, target_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Grid]:
    """The image (BGR), the same with GT green, decoded union magenta and anchors yellow, the GT,
    and the grid: the left panel of :func:`render` and a gallery tile."""
    rgb, gt, union, grid = target_layers(sample, target_index)  # raises IndexError for a bad index
    t = sample.meta["targets"][target_index]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    r = max(2, round(min(w, h) / grid.n / 5))

    left = bgr.copy()
    left[gt] = (0.5 * left[gt] + 0.5 * np.array([60, 200, 60])).astype(np.uint8)
    contours, _ = cv2.findContours(union.view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(left, contours, -1, (255, 0, 255), max(1, r // 2))
    if "polyline" in t:  # lanes: the <pl> vertices, in order, cyan
        pts = [tuple(int(v) for v in grid.anchor(i, j)) for i, j in t["polyline"]["anchors"]]
        cv2.polylines(left, [np.array(pts, np.int32).reshape(-1, 1, 2)], False, (255, 255, 0), max(1, r // 2))
    for i, j in t["anchors"]:
        x, y = grid.anchor(i, j)
        cv2.circle(left, (int(x), int(y)), r + 1, (0, 255, 255), -1)
        cv2.circle(left, (int(x), int(y)), r + 1, (0, 0, 0), 1)
    return bgr, left, gt, grid


def render(sample: Sample, target_index: int, png: str) -> str:
    """Write the drawing to ``png``; return the sample's token strings as text."""
    meta = sample.meta
    bgr, left, gt, grid = draw_target(sample, target_index)
    t = meta["targets"][target_index]
    h, w = bgr.shape[:2]
    r = max(2, round(min(w, h) / grid.n / 5))

    right = (0.6 * bgr).astype(np.uint8)
    right[gt] = (0.5 * right[gt] + 0.5 * np.array([255, 255, 255])).astype(np.uint8)
    for k, region in enumerate(t["regions"]):
        x, y = grid.anchor(k % grid.n, k // grid.n)
        cv2.circle(right, (int(x), int(y)), r, REGION_BGR[region], -1)
    sheet = np.concatenate([left, np.full((h, 4, 3), 255, np.uint8), right], axis=1)
    cv2.imwrite(png, sheet)

    lines = [f"key: {meta['key']}  target: {t['target_id']}  ({target_index + 1}/{len(meta['targets'])})",
             f"sentences: {t['sentences']}",
             f"token_iou: {t['token_iou']:.4f}  tokens: {t['token_count']}",
             f"point: {t['tokens']['point']}", f"box:   {t['tokens']['box']}",
             f"seg:   {t['tokens']['seg'] or 'null (' + str(t.get('seg_reason')) + ')'}"]
    if t["tokens"].get("pl"):
        lines.append(f"pl:    {t['tokens']['pl']}")
    lines += [f"refine[{k}] {s['origin']}: {s['prompt']} -> {s['answer']}" for k, s in enumerate(t["refine"][:3])]
    lines.append(f"drawing: {png}  (left: GT green, union magenta, anchors yellow; "
                 "right: regions I green, R yellow, H orange, F grey)")
    return "\n".join(lines)
