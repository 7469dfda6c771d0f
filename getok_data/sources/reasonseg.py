"""ReasonSeg (LISA, Lai et al. CVPR 2024): reasoning queries over LabelMe-like polygons.

``data_root/{train,val,test}/<name>.jpg`` with ``<name>.json`` beside it (``text``: the queries,
``is_sentence``, ``shapes``), and ``data_root/explanatory/<split>.json`` where present (a list of
``{query, outputs, image, json}`` keyed by the image's basename). The mask follows LISA's
``get_mask_from_json`` exactly: shapes labelled ``flag`` (exact, lowercased) are skipped; each
other shape is rasterised alone (``cv2.polylines`` + ``cv2.fillPoly`` on ``int32`` points, so
coordinates truncate toward zero) to measure its area; shapes are painted largest first
(``np.argsort(areas)[::-1]``), a label containing ``ignore`` as 255 and any other as 1, smaller
shapes overwriting larger ones. ``mask == 1`` is the target and ``mask == 255`` its ignore
region (``Target.ignore_rle``): pixels that count for neither intersection nor union
(``tokens.rules.mask_iou``). The image size comes from the image file (the JSON has none); a JSON that
is not UTF-8 is read as cp1252, as LISA's loader does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import json
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from PIL import Image

from ..location import location, open_input
from ..masks import mask_box, mask_to_rle
from ..types import ImageRecord, PlannedImage, Target
from .base import SOURCES, Source, check_image_size, check_limit, load_json_list, source_error

__all__ = ["ReasonSegSource", "reasonseg_mask", "read_reasonseg_json"]

IGNORE_VALUE = 255
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def read_reasonseg_json(path: Path) -> dict:
    """One per-image JSON: UTF-8 first, then cp1252 (LISA's fallback); ``ValueError`` naming the file."""
    raw = path.read_bytes()
    for enc in ("utf-8", "cp1252"):
        try:
            data = json.loads(raw.decode(enc))
            break
        except UnicodeDecodeError:
            continue
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    else:
        raise ValueError(f"{path}: neither UTF-8 nor cp1252")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise ValueError(f"{path}: expected an object with a 'shapes' list")
    return data


def _points(shape: dict, k: int) -> np.ndarray:
    pts = shape.get("points")
    try:
        arr = np.array([pts], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"shape #{k}: points are not [[x, y], ...]") from e
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[1] == 0 or not np.isfinite(arr).all():
        raise ValueError(f"shape #{k}: points are not [[x, y], ...]")
    return arr.astype(np.int32)  # truncation toward zero, as np.array(..., dtype=np.int32) in LISA


def reasonseg_mask(shapes: list[dict], height: int, width: int) -> np.ndarray:
    """LISA's uint8 label mask (0 background, 1 target, 255 ignore) from a JSON's ``shapes``."""
    areas, valid = [], []
    for k, shape in enumerate(shapes):
        label = shape.get("label") if isinstance(shape, dict) else None
        if not isinstance(label, str):
            raise ValueError(f"shape #{k} has no string 'label'")
        if label.lower() == "flag":  # "meaningless deprecated annotations"
            continue
        pts = _points(shape, k)
        tmp = np.zeros((height, width), np.uint8)
        cv2.polylines(tmp, pts, True, 1, 1)
        cv2.fillPoly(tmp, pts, 1)
        areas.append(tmp.sum())
        valid.append((label, pts))
    mask = np.zeros((height, width), np.uint8)
    for s in list(np.argsort(areas)[::-1].astype(np.int32)):
        label, pts = valid[s]
        value = IGNORE_VALUE if "ignore" in label.lower() else 1
        cv2.polylines(mask, pts, True, value, 1)
        cv2.fillPoly(mask, pts, value)
    return mask


def _image_for(json_path: Path) -> Path | None:
    for ext in IMAGE_EXTS:
        p = json_path.with_suffix(ext)
        if p.is_file():
            return p
    return None


@dataclass(frozen=True)
class ReasonSegOptions:
    data_root: str | None = None  # holds train/ val/ test/ (image + JSON pairs) (required)
    split: str = "all"  # all, or one split folder
    limit: int | None = None  # first N images after sorting

    def __post_init__(self) -> None:
        if self.data_root is None:
            raise ValueError("data_root: required for reasonseg (--data-root)")


class ReasonSegSource(Source):
    """One ``ImageRecord`` per image, one ``Target`` holding all its queries (``text`` in order;
    LISA's validation uses ``text[0]``), with ``is_sentence`` and, where the explanatory file
    lists the image, ``explanation`` (its ``outputs``) and ``explanatory_query``.

    Options: ``data_root`` (the ``ReasonSeg`` folder, or a folder holding ``ReasonSeg/`` or
    ``reason_seg/ReasonSeg/``; required), ``split`` (``all``, a folder name,
    or names joined by ``_`` as in LISA's ``ReasonSeg|train_val``), ``limit`` (first N images).
    """

    name = "reasonseg"

    def __init__(self, *, data_root: str | Path, split: str = "all", limit: int | None = None) -> None:
        if data_root is None:
            raise ValueError("reasonseg source needs data_root=")
        self.data_root = location(data_root)
        if not self.data_root.is_dir():
            raise FileNotFoundError(f"ReasonSeg folder not found: {self.data_root}")
        available = self._splits(self.data_root)
        for inner in ("ReasonSeg", "reason_seg/ReasonSeg"):  # LISA's <base>/reason_seg/ReasonSeg layout
            if not available and self._splits(self.data_root / inner):
                self.data_root = self.data_root / inner
                available = self._splits(self.data_root)
        if not available:
            raise FileNotFoundError(f"no split folder of <name>.json files under {self.data_root}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be 'all' or a split name, got {split!r}")
        self.splits = available if split == "all" else split.split("_")
        unknown = [s for s in self.splits if s not in available]
        if unknown:
            raise ValueError(f"split(s) {unknown} not under {self.data_root}; available: {available}")
        self.split = split
        self.limit = check_limit(limit)

    @staticmethod
    def _splits(root: Path) -> list[str]:
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "explanatory" and any(p.glob("*.json")))

    def describe(self) -> dict:
        return {"source": self.name, "data_root": str(self.data_root.resolve()), "split": self.split,
                "splits": self.splits, "limit": self.limit}

    def _explanatory(self, split: str) -> dict[str, dict]:
        path = self.data_root / "explanatory" / f"{split}.json"
        if not path.is_file():
            return {}
        items = load_json_list(path, "a list of {query, outputs, image, json}")
        return {Path(str(it.get("image", ""))).name: it for it in items if isinstance(it, dict)}

    def plan(self) -> Iterator[PlannedImage]:
        """The split folders listed and the explanatory files read; each image planned with its
        JSON's path and its explanatory entry (the JSON, the image and its mask in ``resolve``)."""
        count = 0
        for split in sorted(self.splits):
            expl = self._explanatory(split)
            for json_path in sorted((self.data_root / split).glob("*.json")):
                if self.limit is not None and count >= self.limit:
                    return
                count += 1
                mine = {n: expl[n] for n in (json_path.stem + e for e in IMAGE_EXTS) if n in expl}
                yield PlannedImage(self.name, split, json_path.stem, (str(json_path), mine))

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        json_path, expl = planned.payload
        return self._record(planned.split, location(json_path), expl)

    def _record(self, split: str, json_path: Path, expl: dict[str, dict]) -> ImageRecord:
        image_id = json_path.stem
        err = lambda reason: source_error(self.name, split, image_id, reason, detail=str(json_path))  # noqa: E731
        rec = ImageRecord(source=self.name, split=split, image_id=image_id, width=0, height=0, targets=[])
        image = _image_for(json_path)
        if image is None:
            rec.errors.append(err(f"missing image file: {json_path.with_suffix('.jpg')}"))
            return rec
        try:
            with open_input(image) as f, Image.open(f) as im:
                width, height = im.size
        except (OSError, ValueError) as e:
            rec.errors.append(err(f"unreadable image {image.name}: {e}"))
            return rec
        problem = check_image_size(width, height)
        if problem:
            rec.errors.append(err(problem))
            return rec
        rec.width, rec.height, rec.image_path = int(width), int(height), str(image)
        rec.image_ext = "png" if image.suffix.lower() == ".png" else "jpg"
        tid = lambda reason: source_error(self.name, split, image_id, reason, ref_id="t0", detail=str(json_path))  # noqa: E731
        try:
            data = read_reasonseg_json(json_path)
            label = reasonseg_mask(data["shapes"], rec.height, rec.width)
        except ValueError as e:
            rec.errors.append(tid(str(e)))
            return rec
        texts = data.get("text")
        texts = [texts] if isinstance(texts, str) else texts
        sentences = [" ".join(t.split()) for t in (texts or []) if isinstance(t, str) and t.strip()]
        if not sentences:
            rec.errors.append(tid("no query text"))
            return rec
        target = label == 1
        box = mask_box(target)
        if box is None:
            rec.errors.append(tid("empty mask: no target pixel (after ignore regions)"))
            return rec
        ignore = label == IGNORE_VALUE
        extra: dict[str, Any] = {"is_sentence": bool(data.get("is_sentence", False))}
        e = expl.get(image.name)
        if e is not None:
            extra["explanation"] = str(e.get("outputs", ""))
            extra["explanatory_query"] = str(e.get("query", ""))
        rec.targets.append(Target(
            target_id="t0", sentences=sentences, category="", mask_rle=mask_to_rle(target), box=box,
            ref_id="t0", ignore_rle=mask_to_rle(ignore) if ignore.any() else None, extra=extra,
        ))
        return rec


SOURCES.register("reasonseg", ReasonSegOptions, lambda o: ReasonSegSource(**asdict(o)))
