"""gRefCOCO (GRES, Liu et al. CVPR 2023): multi-target and no-target referring expressions.

Layout as the official ``G_REFER`` and ReLA read it: ``data_root/<dataset_dir>/grefs(<split_by>).json``
(a JSON list of refs; ``.p`` pickles are read through ``safe_pickle`` when only they exist) and
``data_root/<dataset_dir>/instances.json``; images at ``image_root / images[image_id].file_name``
(default ``image_root``: ``data_root/images/train2014``), never from the ref's ``file_name``.

A ref's ``ann_id`` is a list (a scalar is wrapped, as ``G_REFER._toList`` does): its target is
the union of the listed non-crowd annotations (crowd ones are left out, as ``getMaskByRef`` and
ReLA do, and listed in ``excluded_crowd``), with each instance's own mask kept in ``instances``.
``ann_id == [-1]`` is a no-target ref: ``Target.no_target``, an all-background mask, answered by
the empty ``<seg></seg>`` (docs/FORMAT.md). Splits are the file's own names (train, val, testA,
testB); a ref without a sentence is quarantined (the maintainers say to skip them).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..masks import mask_box, mask_to_rle
from ..location import location
from ..types import ImageRecord, PlannedImage, Target
from .base import (
    SOURCES,
    Source,
    attach_image,
    check_image_size,
    check_limit,
    decode_target_mask,
    id_sort_key,
    load_json_list,
    record_sort_key,
    source_error,
)
from .coco import CocoIndex, load_instances
from .refer import _SAFE_NAME, _sentences
from .safe_pickle import safe_load

__all__ = ["GRefCocoSource", "NO_TARGET"]

NO_TARGET = -1  # the ann_id G_REFER uses for "no object"


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def load_grefs(path: Path) -> list[dict]:
    """The refs list of ``grefs(*).json`` (or a ``.p`` pickle); ``ValueError`` naming the file."""
    refs = safe_load(path) if path.suffix == ".p" else load_json_list(path, "a list of ref objects")
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ValueError(f"{path}: expected a list of ref objects")
    for k, r in enumerate(refs):
        missing = [f for f in ("ref_id", "image_id", "ann_id", "split", "sentences") if f not in r]
        if missing:
            raise ValueError(f"{path}: ref #{k} lacks {missing}")
    return refs


@dataclass(frozen=True)
class GRefCocoOptions:
    data_root: str | None = None  # holds grefcoco/grefs(unc).json and instances.json (required)
    image_root: str | None = None  # COCO train2014 images; None: <data_root>/images/train2014
    split_by: str | None = None  # None: unc
    split: str = "all"  # all, or one split (train, val, testA, testB)
    limit: int | None = None  # first N images after sorting
    dataset_dir: str | None = None  # folder under data_root; None: grefcoco

    def __post_init__(self) -> None:
        if self.data_root is None:
            raise ValueError("data_root: required for grefcoco (--data-root)")


class GRefCocoSource(Source):
    """gRefCOCO refs as targets: one ``ImageRecord`` per (split, image), one ``Target`` per ref.

    Options: ``data_root`` (required), ``image_root`` (default ``data_root/images/train2014``),
    ``split_by`` (default unc), ``split`` ("all" or a split name), ``limit`` (first N images),
    ``dataset_dir`` (default ``grefcoco``; when that folder is absent but ``data_root`` itself holds
    ``grefs(*)`` files, ``data_root`` is used).
    """

    name = "grefcoco"

    def __init__(self, *, data_root: str | Path, image_root: str | Path | None = None, split_by: str | None = None,
                 split: str = "all", limit: int | None = None, dataset_dir: str | None = None) -> None:
        if data_root is None:
            raise ValueError("grefcoco source needs data_root=")
        self.data_root = location(data_root)
        self.image_root = location(image_root) if image_root is not None else self.data_root / "images" / "train2014"
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image root is not a folder: {self.image_root}")
        self.dataset_dir = "grefcoco" if dataset_dir is None else str(dataset_dir)
        if not _SAFE_NAME.match(self.dataset_dir) or self.dataset_dir in (".", ".."):
            raise ValueError(f"dataset_dir must be a plain folder name under data_root, got {dataset_dir!r}")
        folder = self.data_root / self.dataset_dir
        if dataset_dir is None and not folder.is_dir() and any(self.data_root.glob("grefs(*)")):
            folder, self.dataset_dir = self.data_root, "."  # the refs files straight under data_root
        if not folder.is_dir():
            raise FileNotFoundError(f"gRefCOCO folder not found: {folder}")
        self.split_by = split_by or "unc"
        if not _SAFE_NAME.match(self.split_by):
            raise ValueError(f"split_by must be a plain name, got {self.split_by!r}")
        # G_REFER tries the pickle first, then the JSON; the JSON is what is distributed.
        candidates = [folder / f"grefs({self.split_by}).json", folder / f"grefs({self.split_by}).p"]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{candidates[0]} not found (nor {candidates[1].name})")
        self.refs_file = found[0]
        self.instances_file = folder / "instances.json"
        if not self.instances_file.is_file():
            raise FileNotFoundError(f"instances.json not found: {self.instances_file}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be 'all' or a split name, got {split!r}")
        self.split = split
        self.limit = check_limit(limit)

    def describe(self) -> dict:
        return {
            "source": self.name, "data_root": str(self.data_root.resolve()),
            "image_root": str(self.image_root.resolve()), "dataset_dir": self.dataset_dir,
            "split_by": self.split_by, "refs_file": str(self.refs_file.resolve()),
            "instances_file": str(self.instances_file.resolve()), "split": self.split, "limit": self.limit,
        }

    def inputs(self) -> list[str]:
        return [str(self.refs_file), str(self.instances_file)]

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        index, refs = planned.payload
        return self._record(index, planned.split, planned.image_id, refs)

    def plan(self) -> Iterator[PlannedImage]:
        """The refs and instances files parsed once; each image planned with its refs and the
        index entries they name (no image opened, no mask decoded)."""
        refs = load_grefs(self.refs_file)
        index = load_instances(self.instances_file)
        if self.split != "all":
            available = sorted({str(r["split"]) for r in refs})
            if self.split not in available:
                raise ValueError(f"split {self.split!r} not in {self.refs_file.name}; available: {available}")
            refs = [r for r in refs if r["split"] == self.split]
        groups: dict[tuple[str, Any], list[dict]] = defaultdict(list)
        for ref in refs:
            groups[(str(ref["split"]), ref["image_id"])].append(ref)
        keys = sorted(groups, key=lambda k: record_sort_key(*k))
        if self.limit is not None:
            keys = keys[: self.limit]
        for split, image_id in keys:
            mine = groups[(split, image_id)]
            sub = index.subset([image_id], [a for r in mine for a in _as_list(r["ann_id"])])
            yield PlannedImage(self.name, split, image_id, (sub, mine))

    def _record(self, index: CocoIndex, split: str, image_id: Any, refs: list[dict]) -> ImageRecord:
        err = lambda reason, **kw: source_error(self.name, split, image_id, reason, **kw)  # noqa: E731
        rec = ImageRecord(source=self.name, split=split, image_id=image_id, width=0, height=0, targets=[])
        refs = sorted(refs, key=lambda r: id_sort_key(r["ref_id"]))
        img = index.images.get(image_id)
        if img is None:
            ids = ", ".join(str(r["ref_id"]) for r in refs)
            rec.errors.append(err(f"unknown image_id {image_id!r}: not in instances.json", detail=f"ref ids: {ids}"))
            return rec
        size_problem = check_image_size(img.get("width"), img.get("height"))
        if size_problem:
            rec.errors.append(err(size_problem))
            return rec
        rec.width, rec.height = int(img["width"]), int(img["height"])
        if not attach_image(rec, self.image_root, img.get("file_name"), err):
            return rec  # masks are never decoded at a size the image does not have
        seen: set[Any] = set()
        for ref in refs:
            ref_id, ann_ids = ref["ref_id"], _as_list(ref["ann_id"])
            e = lambda reason: err(reason, ann_id=ann_ids, ref_id=ref_id)  # noqa: E731
            if ref_id in seen:
                rec.errors.append(e(f"duplicate ref_id {ref_id!r} on this image"))
                continue
            seen.add(ref_id)
            sentences, sent_ids = _sentences(ref)
            if not sentences:
                rec.errors.append(e("ref has no non-empty sentence"))
                continue
            try:
                target = self._target(index, rec, ref, ann_ids, sentences, sent_ids)
            except ValueError as ex:
                rec.errors.append(e(str(ex)))
                continue
            rec.targets.append(target)
        return rec

    def _target(self, index: CocoIndex, rec: ImageRecord, ref: dict, ann_ids: list, sentences: list[str],
                sent_ids: list) -> Target:
        h, w = rec.height, rec.width
        ref_id = ref["ref_id"]
        if NO_TARGET in ann_ids:
            if len(ann_ids) != 1:
                raise ValueError(f"ann_id {ann_ids} mixes -1 (no target) with annotations")
            empty = np.zeros((h, w), bool)
            return Target(target_id=f"ref{ref_id}", sentences=sentences, category="", mask_rle=mask_to_rle(empty),
                          box=[0.0, 0.0, 0.0, 0.0], ann_id=ann_ids, ref_id=ref_id, sent_ids=sent_ids,
                          no_target=True)
        union = np.zeros((h, w), bool)
        instances, names, crowd = [], [], []
        for ann_id in ann_ids:
            ann = index.anns.get(ann_id)
            if ann is None:
                raise ValueError(f"ann_id {ann_id!r} not found in instances.json")
            if ann.get("image_id") != rec.image_id:
                raise ValueError(f"ann {ann_id!r} belongs to image {ann.get('image_id')!r}, not {rec.image_id!r}")
            if ann.get("iscrowd"):
                crowd.append(ann_id)
                continue
            name = index.category_name(ann.get("category_id"))
            if name is None:
                raise ValueError(f"unknown category_id {ann.get('category_id')!r} of ann {ann_id!r}")
            try:
                mask, rle, box = decode_target_mask(ann.get("segmentation"), h, w)
            except ValueError as ex:
                raise ValueError(f"ann {ann_id!r}: {ex}") from ex
            union |= mask
            instances.append({"ann_id": ann_id, "category": name, "mask_rle": rle, "box": box})
            if name not in names:
                names.append(name)
        if not instances:
            raise ValueError(f"every annotation of the ref is a crowd annotation ({crowd}), none to ground")
        extra = {"excluded_crowd": crowd} if crowd else None
        return Target(target_id=f"ref{ref_id}", sentences=sentences, category=", ".join(names),
                      mask_rle=mask_to_rle(union), box=mask_box(union), ann_id=ann_ids, ref_id=ref_id,
                      sent_ids=sent_ids, instances=instances, extra=extra)


SOURCES.register("grefcoco", GRefCocoOptions, lambda o: GRefCocoSource(**asdict(o)))
