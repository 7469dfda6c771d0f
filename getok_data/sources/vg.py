"""Visual Genome 1.2 region descriptions: region captioning (``cap``) and phrase grounding.

Layout as VG ships it: ``data_root/region_descriptions.json`` (a list of ``{"id": image_id,
"regions": [{"region_id", "image_id", "phrase", "x", "y", "width", "height"}, ...]}``) and
``data_root/image_data.json`` (a list of ``{"image_id" (1.0: "id"), "width", "height", "url",
"coco_id", "flickr_id"}``) beside the image folders ``VG_100K/`` and ``VG_100K_2/``. The folder of
an image is the one its ``url`` names; an url naming neither is looked up in both (stat only).

One target per region: ``region{region_id}``, its phrase the one sentence, its box the region
(``x, y, width, height`` in pixels) clipped to the image, its mask the box's rectangle: VG regions
have no masks, so the target is marked ``box_only`` (exports give it no ``seg`` rows, and
``cap --cap-region seg`` skips it). Quarantined with reasons, like every source: a region outside
the image, a degenerate region (under one pixel wide or high after clipping), a duplicate (the same
box and the same phrase, case and spacing aside, as an earlier region of the image), a region
without a phrase, and an image missing from ``image_data.json`` or from disk. Regions that stick out
of the image are clipped, as VG's own loaders do.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..masks import mask_to_rle
from ..location import location
from ..types import ImageRecord, PlannedImage, Target, key_part
from .base import (
    SOURCES, Source, attach_image, check_image_size, check_limit, id_sort_key, load_json_list, resolve_image_path,
    source_error, text_problem,
)

__all__ = ["VisualGenomeSource", "VgOptions", "IMAGE_FOLDERS"]

IMAGE_FOLDERS = ("VG_100K", "VG_100K_2")


@dataclass(frozen=True)
class VgOptions:
    data_root: str | None = None  # holds region_descriptions.json, image_data.json, VG_100K/, VG_100K_2/
    image_root: str | None = None  # None: data_root (the folder holding VG_100K/ and VG_100K_2/)
    split: str = "train"  # VG has no official split: the name the samples carry
    limit: int | None = None  # first N images (sorted by image_id)

    def __post_init__(self) -> None:
        if self.data_root is None:
            raise ValueError("data_root: required for vg (--data-root)")


class VisualGenomeSource(Source):
    """Visual Genome regions as targets: one ``ImageRecord`` per image, one ``Target`` per region."""

    name = "vg"

    def __init__(self, *, data_root: str | Path, image_root: str | Path | None = None, split: str = "train",
                 limit: int | None = None) -> None:
        self.data_root = location(data_root)
        self.image_root = location(image_root) if image_root is not None else self.data_root
        for f in ("region_descriptions.json", "image_data.json"):
            if not (self.data_root / f).is_file():
                raise FileNotFoundError(f"{self.data_root / f} not found (Visual Genome 1.2 layout)")
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image root is not a folder: {self.image_root}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a non-empty name, got {split!r}")
        self.split = split
        self.limit = check_limit(limit)

    def describe(self) -> dict:
        return {"source": self.name, "data_root": str(self.data_root.resolve()),
                "image_root": str(self.image_root.resolve()), "split": self.split, "limit": self.limit}

    def inputs(self) -> list[str]:
        return [str(self.data_root / "region_descriptions.json"), str(self.data_root / "image_data.json")]

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        info, regs = planned.payload
        return self._record(planned.image_id, info, regs)

    def plan(self) -> Iterator[PlannedImage | ImageRecord]:
        """Both JSON files parsed once; each image planned with its entry and regions."""
        images: dict[Any, dict] = {}
        for k, im in enumerate(load_json_list(self.data_root / "image_data.json")):
            if isinstance(im, dict):
                iid = im.get("image_id", im.get("id"))
                images.setdefault(iid, im)
        regions: dict[Any, list] = {}
        problems: dict[Any, str] = {}
        for k, entry in enumerate(load_json_list(self.data_root / "region_descriptions.json")):
            iid = entry.get("id", entry.get("image_id")) if isinstance(entry, dict) else None
            if iid is None or isinstance(iid, bool) or not isinstance(iid, (int, str)):
                problems[f"#{k}"] = f"region_descriptions.json entry #{k} has no usable image id"
                continue
            regs = entry.get("regions")
            if not isinstance(regs, list):
                problems[iid] = f"region_descriptions.json entry of image {iid!r} has no regions list"
                continue
            regions.setdefault(iid, []).extend(regs)
        ids = sorted(set(regions) | set(problems), key=id_sort_key)
        if self.limit is not None:
            ids = ids[: self.limit]
        for iid in ids:
            if iid in problems:
                rec = ImageRecord(source=self.name, split=self.split, image_id=iid, width=0, height=0, targets=[])
                rec.errors.append(source_error(self.name, self.split, iid, problems[iid]))
                yield rec
                continue
            yield PlannedImage(self.name, self.split, iid, (images.get(iid), regions[iid]))

    def _image_name(self, iid: Any, info: dict) -> str:
        """``VG_100K[_2]/<id>.jpg`` as the url names it, else whichever folder holds the file."""
        url = info.get("url")
        base = f"{iid}.jpg"
        if isinstance(url, str) and url.count("/") >= 1:
            folder, base = url.rstrip("/").split("/")[-2:]
            if folder in IMAGE_FOLDERS:
                return f"{folder}/{base}"
        for folder in IMAGE_FOLDERS:
            path, _ = resolve_image_path(self.image_root, f"{folder}/{base}")
            if path is not None:
                return f"{folder}/{base}"
        return f"{IMAGE_FOLDERS[0]}/{base}"

    def _record(self, iid: Any, info: dict | None, regs: list) -> ImageRecord:
        err = lambda reason, **kw: source_error(self.name, self.split, iid, reason, **kw)  # noqa: E731
        rec = ImageRecord(source=self.name, split=self.split, image_id=iid, width=0, height=0, targets=[])
        if info is None:
            rec.errors.append(err(f"image {iid!r} not in image_data.json", detail=f"{len(regs)} region(s)"))
            return rec
        problem = check_image_size(info.get("width"), info.get("height"))
        if problem:
            rec.errors.append(err(problem))
            return rec
        rec.width, rec.height = int(info["width"]), int(info["height"])
        if not attach_image(rec, self.image_root, self._image_name(iid, info), err) or rec.image_path is None:
            return rec
        seen: dict[tuple, Any] = {}
        ordered = sorted(regs, key=lambda r: id_sort_key(r.get("region_id")) if isinstance(r, dict) else (2, 0, ""))
        for reg in ordered:
            rid = reg.get("region_id") if isinstance(reg, dict) else None
            try:
                target, dup_key = self._target(rec, reg)
            except ValueError as ex:
                rec.errors.append(err(str(ex), ann_id=rid))
                continue
            if dup_key in seen:
                rec.errors.append(err(f"duplicate region: same box and phrase as region {seen[dup_key]!r}", ann_id=rid))
                continue
            seen[dup_key] = rid
            rec.targets.append(target)
        return rec

    def _target(self, rec: ImageRecord, reg: Any) -> tuple[Target, tuple]:
        if not isinstance(reg, dict):
            raise ValueError(f"region is not an object: {type(reg).__name__}")
        rid = reg.get("region_id")
        if rid is None or isinstance(rid, bool) or not isinstance(rid, (int, str)):
            raise ValueError(f"region without a usable region_id: {rid!r}")
        if reg.get("image_id", rec.image_id) != rec.image_id:
            raise ValueError(f"region {rid!r} names image {reg.get('image_id')!r}, listed under {rec.image_id!r}")
        phrase = reg.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            raise ValueError(f"region {rid!r} has no phrase")
        bad_text = text_problem(phrase, f"phrase of region {rid!r}")
        if bad_text:
            raise ValueError(bad_text)
        vals = [reg.get(k) for k in ("x", "y", "width", "height")]
        if not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
            raise ValueError(f"region {rid!r}: x, y, width, height must be numbers, got {vals}")
        x, y, w, h = (float(v) for v in vals)
        if w <= 0 or h <= 0:
            raise ValueError(f"degenerate region {rid!r}: width {w:g}, height {h:g}")
        x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(rec.width), x + w), min(float(rec.height), y + h)
        if x0 >= rec.width or y0 >= rec.height or x1 <= 0 or y1 <= 0:
            raise ValueError(f"region {rid!r} lies outside the {rec.width}x{rec.height} image: "
                             f"x={x:g} y={y:g} width={w:g} height={h:g}")
        c0, r0, c1, r1 = math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError(f"degenerate region {rid!r}: {x1 - x0:g}x{y1 - y0:g} px inside the image")
        mask = np.zeros((rec.height, rec.width), bool)
        mask[r0:r1, c0:c1] = True
        sentence = " ".join(phrase.split())
        target = Target(target_id=f"region{key_part(rid)}", sentences=[sentence], category="", mask_rle=mask_to_rle(mask),
                        box=[x0, y0, x1, y1], ann_id=rid, extra={"box_only": True})
        return target, (x, y, w, h, sentence.lower())


SOURCES.register("vg", VgOptions, lambda o: VisualGenomeSource(**asdict(o)))
