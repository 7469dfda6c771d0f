"""The embedded default source: deterministic scenes of coloured shapes with referring expressions.

Nothing is downloaded. Each image (non-square, e.g. 320x240) holds 2-5 flat-coloured shapes
(circle, square, triangle, ring, bar, star, cross) on a plain or low-contrast textured grey
background. Shapes are rasterised without anti-aliasing and painted from their own masks, so a
GT mask is exactly the pixels that show the object; later objects occlude earlier ones and the GT
is the visible part. Objects left with too little visible area are removed from the scene during
generation (not quarantined). Each object gets two expressions built from its colour, shape, size
relative to same-shaped objects and position, chosen to be unambiguous where possible.

Images are generated lazily, one per step of ``records()``, from a seed derived from
``(seed, split, index)``, and encoded as PNG with fixed settings. Same numpy/OpenCV versions ->
identical bytes and masks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Integral
from typing import Iterator

import cv2
import numpy as np

from ..masks import mask_box, mask_to_rle
from ..types import ImageRecord, PlannedImage, Target
from .base import SOURCES, Source, check_limit

__all__ = ["SyntheticSource", "DEFAULT_SIZES", "SPLIT_INDEX", "SHAPES", "COLOURS", "IMAGE_SIZES", "GENERATOR_VERSION"]

GENERATOR_VERSION = 1
#: Default number of images per split.
DEFAULT_SIZES = {"train": 2000, "val": 200, "test": 200}
#: Fixed split -> seed component, so splits never share a seed.
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
#: (width, height) choices; all non-square.
IMAGE_SIZES = ((320, 240), (256, 320), (384, 256))
SHAPES = ("circle", "square", "triangle", "ring", "bar", "star", "cross")
COLOURS = {
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 85, 220),
    "yellow": (235, 205, 35), "purple": (140, 60, 185), "orange": (245, 135, 25),
}
MIN_VISIBLE_PIXELS = 60
MIN_VISIBLE_FRACTION = 0.3
_COLOUR_NAMES = tuple(COLOURS)
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


@dataclass
class _Obj:
    shape: str
    colour: str
    scale: float
    cx: float
    cy: float
    angle: float
    thickness: int
    full: np.ndarray | None = None
    visible: np.ndarray | None = None


def _poly(canvas: np.ndarray, pts: np.ndarray, o: _Obj) -> None:
    c, s = np.cos(o.angle), np.sin(o.angle)
    xy = np.stack([o.cx + pts[:, 0] * c - pts[:, 1] * s, o.cy + pts[:, 0] * s + pts[:, 1] * c], axis=1)
    cv2.fillPoly(canvas, [np.round(xy).astype(np.int32)], 1, lineType=cv2.LINE_8)


def _star_points(n: int, r_out: float, r_in: float) -> np.ndarray:
    a = np.arange(2 * n) * np.pi / n - np.pi / 2
    r = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _render(o: _Obj, h: int, w: int) -> np.ndarray:
    """Rasterise one object (no anti-aliasing) into a bool [h, w] mask."""
    m = np.zeros((h, w), np.uint8)
    s, centre = o.scale, (int(round(o.cx)), int(round(o.cy)))
    if o.shape in ("circle", "ring"):
        cv2.circle(m, centre, int(round(s)), 1, -1, lineType=cv2.LINE_8)
        if o.shape == "ring":
            cv2.circle(m, centre, max(3, int(round(s * 0.5))), 0, -1, lineType=cv2.LINE_8)
    elif o.shape == "square":
        a = s * 0.85
        _poly(m, np.array([[-a, -a], [a, -a], [a, a], [-a, a]]), o)
    elif o.shape == "triangle":
        t = np.arange(3) * 2 * np.pi / 3 - np.pi / 2
        _poly(m, np.stack([1.1 * s * np.cos(t), 1.1 * s * np.sin(t)], axis=1), o)
    elif o.shape == "bar":
        L, t = s * 1.6, o.thickness / 2.0
        _poly(m, np.array([[-L, -t], [L, -t], [L, t], [-L, t]]), o)
    elif o.shape == "star":
        _poly(m, _star_points(5, 1.15 * s, 0.48 * s), o)
    elif o.shape == "cross":
        a, b = 0.32 * s, 1.0 * s
        _poly(m, np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b],
                           [-a, a], [-b, a], [-b, -a], [-a, -a]]), o)
    return m.astype(bool)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = int(rng.integers(4))
    base = float(rng.uniform(70, 190))
    if kind == 0:  # plain
        g = np.full((h, w), base)
    elif kind == 1:  # linear gradient
        t = np.linspace(-1, 1, w)[None, :] * np.cos(rng.uniform(0, np.pi)) + np.linspace(-1, 1, h)[:, None] * 0.5
        g = base + 30 * t
    elif kind == 2:  # soft stripes
        period = rng.uniform(12, 40)
        g = base + 12 * np.sin(2 * np.pi * np.arange(w)[None, :] / period + np.zeros((h, 1)))
    else:  # low-frequency noise
        small = rng.uniform(-25, 25, size=(5, 7))
        g = base + cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    tint = rng.uniform(-6, 6, size=3)  # slight tint; stays grey so colour words hold
    return np.clip(g[..., None] + tint, 0, 255).astype(np.uint8)


def _sample_objects(rng: np.random.Generator, h: int, w: int) -> list[_Obj]:
    objs: list[_Obj] = []
    side = min(h, w)
    for _ in range(int(rng.integers(2, 6))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
        scale = float(rng.uniform(0.06, 0.15) * side)
        if objs and rng.random() < 0.35:  # same shape as an earlier object: needs size/position words
            ref = objs[int(rng.integers(len(objs)))]
            shape = ref.shape
            if rng.random() < 0.5:
                colour = ref.colour
            scale = ref.scale * (0.55 if rng.random() < 0.5 else 1.7)
            scale = float(np.clip(scale, 0.05 * side, 0.2 * side))
        margin = 0.8 * scale
        objs.append(_Obj(
            shape=shape, colour=colour, scale=scale,
            cx=float(rng.uniform(margin, w - margin)), cy=float(rng.uniform(margin, h - margin)),
            angle=float(rng.uniform(0, 2 * np.pi)), thickness=int(rng.integers(4, 7)),
        ))
    return objs


def _occlude(objs: list[_Obj], h: int, w: int) -> list[_Obj]:
    """Visible masks (later objects on top); drops objects with too little left."""
    for o in objs:
        o.full = _render(o, h, w)
    kept = objs
    while True:
        cover = np.zeros((h, w), bool)
        for o in reversed(kept):
            o.visible = o.full & ~cover
            cover |= o.full
        ok = [o for o in kept if o.visible.sum() >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * o.full.sum())]
        if len(ok) == len(kept):
            return kept
        kept = ok


def _abs_phrase(cx: float, cy: float, h: int, w: int) -> str:
    col = "left" if cx < w / 3 else "right" if cx > 2 * w / 3 else ""
    row = "top" if cy < h / 3 else "bottom" if cy > 2 * h / 3 else ""
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    return f"on the {col}" if col else "in the center"


def _rel_phrase(i: int, group: list[int], cents: list[tuple[float, float]], h: int, w: int) -> str | None:
    """Position word that singles out object i within group (extreme along x or y), or None."""
    others = [cents[j] for j in group if j != i]
    x, y = cents[i]
    options = [
        (min(ox for ox, _ in others) - x, w, "on the left"), (x - max(ox for ox, _ in others), w, "on the right"),
        (min(oy for _, oy in others) - y, h, "at the top"), (y - max(oy for _, oy in others), h, "at the bottom"),
    ]
    gap, _, word = max(options, key=lambda t: t[0] / t[1])
    return word if gap / (w if "left" in word or "right" in word else h) > 0.06 else None


def _size_word(i: int, group: list[int], objs: list[_Obj]) -> str | None:
    others = [objs[j].scale for j in group if j != i]
    if not others:
        return None
    if objs[i].scale >= 1.35 * max(others):
        return "large"
    if objs[i].scale * 1.35 <= min(others):
        return "small"
    return None


def _expressions(objs: list[_Obj], h: int, w: int, rng: np.random.Generator) -> list[list[str]]:
    cents = []
    for o in objs:
        ys, xs = np.nonzero(o.visible)
        cents.append((float(xs.mean()), float(ys.mean())))
    out = []
    for i, o in enumerate(objs):
        same_shape = [j for j, p in enumerate(objs) if p.shape == o.shape]
        same_cs = [j for j in same_shape if objs[j].colour == o.colour]
        noun = o.shape if o.shape != "bar" or rng.random() < 0.5 else "stick"
        size = _size_word(i, same_cs, objs) if len(same_cs) > 1 else None
        rel = _rel_phrase(i, same_cs, cents, h, w) if len(same_cs) > 1 else None
        absp = _abs_phrase(*cents[i], h, w)
        if len(same_cs) == 1:
            first = f"the {o.colour} {noun}"
        elif size:
            first = f"the {size} {o.colour} {noun}"
        elif rel:
            first = f"the {o.colour} {noun} {rel}"
        else:
            first = f"the {o.colour} {noun} {absp}"
        abs_unique = all(_abs_phrase(*cents[j], h, w) != absp for j in same_cs if j != i)
        if len(same_shape) == 1:
            second = f"the {noun} {absp}"
        elif abs_unique:
            lead = f"{size} " if size and len(same_cs) > 1 else ""
            second = f"the {lead}{o.colour} {noun} {absp}"
        else:
            second = f"the {size + ' ' if size else ''}{o.colour} {noun}" + (f" {rel}" if rel else f" {absp}")
        out.append([first] if second == first else [first, second])
    return out


def generate_image(seed: int, split: str, index: int) -> ImageRecord:
    """Generate synthetic image ``index`` of ``split`` (pure function of its arguments)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, SPLIT_INDEX[split], int(index)])
    w, h = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    image = _background(rng, h, w)
    objs: list[_Obj] = []
    for _ in range(20):  # resample until at least 2 objects stay visible
        objs = _occlude(_sample_objects(rng, h, w), h, w)
        if len(objs) >= 2:
            break
    kernel = np.ones((3, 3), np.uint8)
    for o in objs:
        colour = np.array(COLOURS[o.colour], np.float64)
        inner = cv2.erode(o.full.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        image[o.full] = np.round(colour * 0.7).astype(np.uint8)  # darker outline
        image[inner] = colour.astype(np.uint8)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]), _PNG_PARAMS)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    targets = []
    for k, (o, sents) in enumerate(zip(objs, _expressions(objs, h, w, rng))):
        targets.append(Target(
            target_id=f"obj{k}", sentences=sents, category=o.shape, mask_rle=mask_to_rle(o.visible),
            box=mask_box(o.visible), ann_id=k,
        ))
    return ImageRecord(source="synthetic", split=split, image_id=int(index), width=w, height=h,
                       targets=targets, image_bytes=png.tobytes(), image_ext="png")


@dataclass(frozen=True)
class SyntheticOptions:
    split: str = "train"  # train | val | test | all
    size: int | None = None  # images per split; None = DEFAULT_SIZES[split]
    seed: int = 0  # scene seed
    limit: int | None = None  # first N images overall


class SyntheticSource(Source):
    """Rendered scenes with exact masks and sentences (no download); options: :class:`SyntheticOptions`."""

    name = "synthetic"

    def __init__(self, *, split: str = "train", size: int | None = None, seed: int = 0, limit: int | None = None) -> None:
        if split != "all" and split not in SPLIT_INDEX:
            raise ValueError(f"synthetic split must be one of {sorted(SPLIT_INDEX)} or 'all', got {split!r}")
        for label, v in (("size", size), ("seed", seed)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, Integral) or v < 0):
                raise ValueError(f"{label} must be an int >= 0, got {v!r}")
        self.split = split
        self.size = None if size is None else int(size)
        self.seed = int(seed)
        self.limit = check_limit(limit)

    def _splits(self) -> list[str]:
        return sorted(SPLIT_INDEX) if self.split == "all" else [self.split]

    def split_sizes(self) -> dict[str, int]:
        """Number of images per split (before ``limit``)."""
        return {s: DEFAULT_SIZES[s] if self.size is None else self.size for s in self._splits()}

    def describe(self) -> dict:
        return {"source": self.name, "split": self.split, "size": self.size, "sizes": self.split_sizes(),
                "seed": self.seed, "limit": self.limit, "generator_version": GENERATOR_VERSION}

    def plan(self) -> Iterator[PlannedImage]:
        """Each image planned by its index; drawn in ``resolve`` (on the worker, for Ray builds)."""
        left = self.limit
        for split, n in self.split_sizes().items():
            for i in range(n):
                if left is not None:
                    if left <= 0:
                        return
                    left -= 1
                yield PlannedImage(self.name, split, int(i), self.seed)

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        return generate_image(planned.payload, planned.split, planned.image_id)


SOURCES.register("synthetic", SyntheticOptions, lambda o: SyntheticSource(**asdict(o)))
