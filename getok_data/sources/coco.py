"""COCO instances / person-keypoints JSON as a grounding source (category name = expression).

Also holds ``load_instances``, the COCO JSON index that the REFER sources reuse.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any, Iterator

from ..location import location, open_input
from ..types import ErrorRecord, ImageRecord, PlannedImage, Target
from .base import (
    SOURCES,
    Source,
    attach_image,
    check_image_size,
    check_limit,
    decode_target_mask,
    id_sort_key,
    source_error,
    text_problem,
)

__all__ = ["CocoIndex", "load_instances", "CocoSource"]


@dataclass
class CocoIndex:
    """The parts of a COCO JSON a source needs, indexed by id."""

    path: str
    images: dict[Any, dict] = field(default_factory=dict)
    anns: dict[Any, dict] = field(default_factory=dict)
    img_to_anns: dict[Any, list[dict]] = field(default_factory=lambda: defaultdict(list))
    cats: dict[Any, dict] = field(default_factory=dict)
    #: ids that occur more than once (id -> number of entries): those records are quarantined,
    #: the rest of the file is used.
    dup_images: dict[Any, int] = field(default_factory=dict)
    dup_anns: dict[Any, int] = field(default_factory=dict)
    dup_cats: dict[Any, int] = field(default_factory=dict)
    #: entries without a usable id, as reasons under their image id (None: no image to name)
    unattached: dict[Any, list[str]] = field(default_factory=lambda: defaultdict(list))

    def category_name(self, cat_id: Any) -> str | None:
        if cat_id in self.dup_cats:
            return None
        cat = self.cats.get(cat_id)
        name = cat.get("name") if cat else None
        return name if isinstance(name, str) and name.strip() else None

    def image_problem(self, image_id: Any) -> str | None:
        n = self.dup_images.get(image_id)
        return f"duplicate image id {image_id!r}: {n} entries in images[] of {self.name}" if n else None

    def ann_problem(self, ann_id: Any) -> str | None:
        n = self.dup_anns.get(ann_id)
        return f"duplicate annotation id {ann_id!r}: {n} entries in annotations[] of {self.name}" if n else None

    def category_problem(self, cat_id: Any) -> str | None:
        """Why ``category_id`` gives no name (None when it does)."""
        n = self.dup_cats.get(cat_id)
        if n:
            return f"duplicate category id {cat_id!r}: {n} entries in categories[] of {self.name}"
        if self.category_name(cat_id) is None:
            return f"unknown category_id {cat_id!r}"
        return text_problem(self.category_name(cat_id), f"category name of id {cat_id!r}")

    @property
    def name(self) -> str:
        return Path(self.path).name

    def subset(self, image_ids: list, ann_ids: list) -> "CocoIndex":
        """The part of the index a few images' records read (their entries, the annotations
        named, every category and the duplicate counts of those ids): a planned image carries
        it to the worker instead of the whole file."""
        images = {i: self.images[i] for i in image_ids if i in self.images}
        anns = {a: self.anns[a] for a in ann_ids if _hashable_id(a) and a in self.anns}
        sub = CocoIndex(path=self.path, images=images, anns=anns, cats=self.cats, dup_cats=self.dup_cats)
        sub.dup_images = {i: self.dup_images[i] for i in image_ids if i in self.dup_images}
        sub.dup_anns = {a: self.dup_anns[a] for a in ann_ids if _hashable_id(a) and a in self.dup_anns}
        for i in image_ids:
            if i in self.img_to_anns:
                sub.img_to_anns[i] = self.img_to_anns[i]
            if i in self.unattached:
                sub.unattached[i] = self.unattached[i]
        return sub


def _hashable_id(v: Any) -> bool:
    return (isinstance(v, Integral) and not isinstance(v, bool)) or isinstance(v, str)


def load_instances(path: str | Path) -> CocoIndex:
    """Read a COCO JSON (instances or person keypoints) and index images, anns and categories.

    Raises ``ValueError`` naming the file when the top-level structure is not COCO-like
    (not a JSON object, missing lists). Duplicate image, annotation or category ids and entries
    without a usable ``id`` are not fatal: they are kept in ``dup_*`` / ``unattached`` and the
    sources quarantine exactly the records that carry them.
    """
    p = str(path)
    with open_input(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a COCO JSON object at the top level")
    index = CocoIndex(path=p)
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{p}: '{key}' must be a list")
    cats = data.get("categories", [])
    if not isinstance(cats, list):
        raise ValueError(f"{p}: 'categories' must be a list")
    for kind, items, table, dups in (("image", data["images"], index.images, index.dup_images),
                                     ("category", cats, index.cats, index.dup_cats)):
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not _hashable_id(item.get("id")):
                # unusable, but recorded (a category without an id shows up as the unknown
                # category_id of the annotations that name it)
                if kind == "image":
                    index.unattached[None].append(f"images[{i}] has no int/str 'id'")
                continue
            if item["id"] in table:
                dups[item["id"]] = dups.get(item["id"], 1) + 1
                continue
            table[item["id"]] = item
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not _hashable_id(ann.get("id")) or not _hashable_id(ann.get("image_id")):
            image_id = ann.get("image_id") if isinstance(ann, dict) and _hashable_id(ann.get("image_id")) else None
            index.unattached[image_id].append(f"annotations[{i}] lacks an int/str 'id' or 'image_id'")
            continue
        if ann["id"] in index.anns:
            index.dup_anns[ann["id"]] = index.dup_anns.get(ann["id"], 1) + 1
        else:
            index.anns[ann["id"]] = ann
        index.img_to_anns[ann["image_id"]].append(ann)
    return index


def _keypoints(ann: dict, cat: dict | None) -> tuple[list[list[float]] | None, list[str] | None]:
    kps = ann.get("keypoints")
    n = ann.get("num_keypoints", 0)
    if not isinstance(kps, list) or not kps or not isinstance(n, Integral) or n <= 0:
        return None, None
    if len(kps) % 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kps):
        raise ValueError(f"malformed keypoints (length {len(kps)}, expected [x, y, v] * K)")
    points = [[float(kps[i]), float(kps[i + 1]), float(kps[i + 2])] for i in range(0, len(kps), 3)]
    names = cat.get("keypoints") if cat else None
    if not (isinstance(names, list) and len(names) == len(points) and all(isinstance(s, str) for s in names)):
        names = None
    return points, names


@dataclass(frozen=True)
class CocoOptions:
    annotations: str | None = None  # instances / person-keypoints JSON (required)
    image_root: str | None = None  # folder of images[].file_name (required)
    split: str = "train"  # a label for the sample keys; every image of the file is used
    limit: int | None = None  # first N images by id
    include_crowd: bool = True  # False leaves iscrowd=1 annotations out, by policy

    def __post_init__(self) -> None:
        for key in ("annotations", "image_root"):
            if getattr(self, key) is None:
                raise ValueError(f"{key}: required for the coco source (--{key.replace('_', '-')})")


class CocoSource(Source):
    """One ``ImageRecord`` per image of a COCO JSON, one ``Target`` per annotation.

    Options: ``annotations`` (path to the JSON), ``image_root`` (folder holding the files named by
    ``images[].file_name``), ``split`` (only a label for the sample keys, default ``"train"``; all
    images of the file are used), ``limit`` (first N images by id), ``include_crowd`` (default
    True; when False, ``iscrowd=1`` annotations are left out by policy, not as errors).
    Images without any annotation (after the crowd policy) are skipped: there is nothing to ground.
    """

    name = "coco"

    def __init__(
        self,
        *,
        annotations: str | Path,
        image_root: str | Path,
        split: str = "train",
        limit: int | None = None,
        include_crowd: bool = True,
    ) -> None:
        if annotations is None or image_root is None:
            raise ValueError("coco source needs annotations= and image_root=")
        self.annotations = location(annotations)
        self.image_root = location(image_root)
        if not self.annotations.is_file():
            raise FileNotFoundError(f"annotations file not found: {self.annotations}")
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image root is not a folder: {self.image_root}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a non-empty string, got {split!r}")
        if text_problem(split, "split"):
            raise ValueError(text_problem(split, "split"))
        self.split = split
        self.limit = check_limit(limit)
        self.include_crowd = bool(include_crowd)

    def describe(self) -> dict:
        return {
            "source": self.name,
            "annotations": str(self.annotations.resolve()),
            "image_root": str(self.image_root.resolve()),
            "split": self.split,
            "limit": self.limit,
            "include_crowd": self.include_crowd,
        }

    def inputs(self) -> list[str]:
        return [str(self.annotations)]

    def plan(self) -> Iterator[PlannedImage]:
        """The annotation file parsed once; each image planned with its index entries."""
        index = load_instances(self.annotations)
        # Every image id that has at least one annotation kept by the crowd policy, including ids
        # missing from images[] (those become image-level errors, never vanish).
        usable = [
            i for i, anns in index.img_to_anns.items()
            if any(self.include_crowd or not a.get("iscrowd") for a in anns) or i in index.dup_images
        ]
        usable += [i for i in index.dup_images if i not in index.img_to_anns]  # recorded, never silent
        have = set(usable)
        usable += [i for i in index.unattached if i not in have and i is not None]
        usable.sort(key=id_sort_key)
        if self.limit is not None:
            usable = usable[: self.limit]
        if index.unattached.get(None):  # entries that name no image: one record holds their reasons
            usable.append(None)
        for image_id in usable:
            sub = index.subset([image_id], [a["id"] for a in index.img_to_anns.get(image_id, [])])
            yield PlannedImage(self.name, self.split, image_id, sub, problems=len(sub.unattached.get(image_id, [])))

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        index, image_id = planned.payload, planned.image_id
        rec = self._record(index, image_id) if image_id is not None else ImageRecord(
            source=self.name, split=self.split, image_id=None, width=0, height=0, targets=[])
        rec.errors += [source_error(self.name, self.split, image_id, r, detail=f"in {index.name}")
                       for r in index.unattached.get(image_id, [])]
        return rec

    def _record(self, index: CocoIndex, image_id: Any) -> ImageRecord:
        err = lambda reason, **kw: source_error(self.name, self.split, image_id, reason, **kw)  # noqa: E731
        img = index.images.get(image_id)
        anns = [a for a in index.img_to_anns.get(image_id, []) if self.include_crowd or not a.get("iscrowd")]
        rec = ImageRecord(source=self.name, split=self.split, image_id=image_id, width=0, height=0, targets=[])
        if img is None:
            ids = ", ".join(str(a["id"]) for a in anns)
            rec.errors.append(err("unknown image_id in annotations: no images[] entry", detail=f"ann ids: {ids}"))
            return rec
        ann_ids = f"ann ids: {', '.join(str(a['id']) for a in anns)}" if anns else ""
        problem = index.image_problem(image_id) or text_problem(image_id, "image_id") \
            or check_image_size(img.get("width"), img.get("height"))
        if problem:
            rec.errors.append(err(problem, detail=ann_ids))
            return rec
        rec.width, rec.height = int(img["width"]), int(img["height"])
        if not attach_image(rec, self.image_root, img.get("file_name"), err, ann_ids):
            return rec  # masks are never decoded at a size the image does not have
        for ann in sorted(anns, key=lambda a: id_sort_key(a["id"])):
            target, error = self._target(index, ann, rec.height, rec.width, err)
            if target is not None:
                rec.targets.append(target)
            else:
                rec.errors.append(error)
        return rec

    def _target(self, index: CocoIndex, ann: dict, h: int, w: int, err: Any) -> tuple[Target | None, ErrorRecord | None]:
        ann_id = ann["id"]
        cat = index.cats.get(ann.get("category_id"))
        problem = index.ann_problem(ann_id) or index.category_problem(ann.get("category_id"))
        if problem:
            return None, err(problem, ann_id=ann_id)
        name = index.category_name(ann.get("category_id"))
        try:
            _, rle, box = decode_target_mask(ann.get("segmentation"), h, w)
            keypoints, keypoint_names = _keypoints(ann, cat)
        except ValueError as e:
            return None, err(str(e), ann_id=ann_id)
        bad_name = next((t for k in keypoint_names or [] if (t := text_problem(k, "keypoint name"))), None)
        if bad_name:
            return None, err(bad_name, ann_id=ann_id)
        return Target(
            target_id=f"ann{ann_id}", sentences=[name], category=name, mask_rle=rle, box=box,
            ann_id=ann_id, keypoints=keypoints, keypoint_names=keypoint_names,
        ), None


SOURCES.register("coco", CocoOptions, lambda o: CocoSource(**asdict(o)))
