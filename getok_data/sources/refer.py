"""RefCOCO / RefCOCO+ / RefCOCOg in the REFER layout (lichengunc/refer).

``data_root/<dataset_dir>/refs(<split_by>).p`` (loaded by ``safe_pickle.safe_load``) and
``data_root/<dataset_dir>/instances.json``; images at ``image_root / images[image_id].file_name``
(never from ``ref["file_name"]``, which is not a real file). One ``ImageRecord`` per
(split, image), one ``Target`` per ref of that split on that image.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator

from ..location import location
from ..types import ImageRecord, PlannedImage, Target
from .base import (
    SOURCES,
    Source,
    attach_image,
    check_image_size,
    check_inside,
    check_limit,
    decode_target_mask,
    id_sort_key,
    record_sort_key,
    source_error,
    text_problem,
)
from .coco import CocoIndex, load_instances
from .safe_pickle import load_refs

__all__ = ["ReferSource", "DEFAULT_SPLIT_BY"]

#: Default ``split_by`` per dataset (the splits papers use).
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_+.-]+$")


def _sentences(ref: dict) -> tuple[list[str], list[Any]]:
    """``raw`` stripped (falling back to ``sent``) for each sentence, with its ``sent_id``.

    Raises ``ValueError`` naming the sentence when its text is not valid Unicode."""
    sents: list[str] = []
    ids: list[Any] = []
    ref_sent_ids = ref.get("sent_ids") if isinstance(ref.get("sent_ids"), list) else []
    for i, s in enumerate(ref["sentences"]):
        text = ""
        for key in ("raw", "sent"):
            v = s.get(key)
            if isinstance(v, str) and v.strip():
                text = " ".join(v.split())
                break
        if not text:
            continue
        problem = text_problem(text, f"sentence #{i} (sent_id {s.get('sent_id')!r})")
        if problem:
            raise ValueError(problem)
        sents.append(text)
        ids.append(s.get("sent_id", ref_sent_ids[i] if i < len(ref_sent_ids) else None))
    return sents, ids


@dataclass(frozen=True)
class ReferOptions:
    data_root: str | None = None  # holds <dataset>/refs(<split_by>).p and instances.json (required)
    image_root: str | None = None  # COCO train2014 images (required)
    split_by: str | None = None  # None: unc for refcoco/refcoco+, umd for refcocog
    split: str = "all"  # all, or one split value (train, val, testA, ...)
    limit: int | None = None  # first N images after sorting
    dataset_dir: str | None = None  # folder under data_root; None: the dataset name

    def __post_init__(self) -> None:
        for key in ("data_root", "image_root"):
            if getattr(self, key) is None:
                raise ValueError(f"{key}: required for REFER sources (--{key.replace('_', '-')})")


def _plain(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def _where(ref: Any) -> tuple[str, Any]:
    """(split, image_id) of a malformed ref, as far as it can be told."""
    if not isinstance(ref, dict):
        return "unknown", None
    split = ref.get("split") if isinstance(ref.get("split"), str) else "unknown"
    image_id = ref.get("image_id") if _plain(ref.get("image_id")) else None
    return split, image_id


class ReferSource(Source):
    """A REFER-layout dataset (``refcoco``, ``refcoco+`` or ``refcocog``).

    Options: ``data_root`` and ``image_root`` (required), ``split_by`` (default unc for
    refcoco/refcoco+, umd for refcocog; when left at the default and that refs file is absent
    but exactly one ``refs(*).p`` exists, that one is used and ``describe()`` says so),
    ``split`` ("all" or a split value such as train/val/testA, exact match), ``limit``
    (first N images after sorting), ``dataset_dir`` (folder under data_root, default the
    dataset name).
    """

    def __init__(
        self,
        dataset: str,
        *,
        data_root: str | Path,
        image_root: str | Path,
        split_by: str | None = None,
        split: str = "all",
        limit: int | None = None,
        dataset_dir: str | None = None,
    ) -> None:
        if dataset not in DEFAULT_SPLIT_BY:
            raise ValueError(f"unknown REFER dataset {dataset!r}; expected one of {sorted(DEFAULT_SPLIT_BY)}")
        if data_root is None or image_root is None:
            raise ValueError(f"{dataset} source needs data_root= and image_root=")
        self.name = dataset
        self.data_root = location(data_root)
        self.image_root = location(image_root)
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image root is not a folder: {self.image_root}")
        self.dataset_dir = dataset if dataset_dir is None else str(dataset_dir)
        if not _SAFE_NAME.match(self.dataset_dir) or self.dataset_dir in (".", ".."):
            raise ValueError(f"dataset_dir must be a plain folder name under data_root, got {dataset_dir!r}")
        folder = self.data_root / self.dataset_dir
        if not folder.resolve().is_relative_to(self.data_root.resolve()):
            raise ValueError(f"dataset folder escapes data_root: {folder}")
        if not folder.is_dir():
            raise FileNotFoundError(f"REFER dataset folder not found: {folder}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be 'all' or a split name, got {split!r}")
        self.split = split
        self.limit = check_limit(limit)
        self.split_by_requested = split_by
        self.split_by, self.refs_file, self.split_by_note = self._resolve_refs(folder, split_by)
        self.instances_file = folder / "instances.json"
        if not self.instances_file.is_file():
            raise FileNotFoundError(f"instances.json not found: {self.instances_file}")
        for what, path in (("refs file", self.refs_file), ("instances file", self.instances_file)):
            check_inside(self.data_root, path, what)  # a symlink out of --data-root is refused

    def _resolve_refs(self, folder: Path, split_by: str | None) -> tuple[str, Path, str]:
        wanted = split_by or DEFAULT_SPLIT_BY[self.name]
        if not _SAFE_NAME.match(wanted):
            raise ValueError(f"split_by must be a plain name, got {wanted!r}")
        path = folder / f"refs({wanted}).p"
        if path.is_file():
            return wanted, path, ""
        found = sorted(p for p in folder.glob("refs(*).p") if p.is_file())
        names = [p.name for p in found]
        if split_by is None and len(found) == 1:
            other = found[0].name[len("refs("):-len(").p")]
            return other, found[0], f"refs({wanted}).p not found; used the only refs file, {found[0].name}"
        raise FileNotFoundError(f"{path} not found (refs files in {folder}: {names or 'none'})")

    def describe(self) -> dict:
        return {
            "source": self.name,
            "data_root": str(self.data_root.resolve()),
            "image_root": str(self.image_root.resolve()),
            "dataset_dir": self.dataset_dir,
            "split_by": self.split_by,
            "split_by_requested": self.split_by_requested,
            "split_by_note": self.split_by_note,
            "refs_file": str(self.refs_file.resolve()),
            "instances_file": str(self.instances_file.resolve()),
            "split": self.split,
            "limit": self.limit,
        }

    def inputs(self) -> list[str]:
        return [str(self.refs_file), str(self.instances_file)]

    def plan(self) -> Iterator[PlannedImage]:
        """The refs and instances files parsed once; each image planned with the refs, the
        index entries and the malformed-ref reasons its record is made from (no image opened)."""
        refs, bad = load_refs(self.refs_file)
        index = load_instances(self.instances_file)
        if self.split != "all":
            available = sorted({r["split"] for r in refs})
            if self.split not in available:
                raise ValueError(f"split {self.split!r} not in {self.refs_file.name}; available: {available}")
            refs = [r for r in refs if r["split"] == self.split]
        groups: dict[tuple[str, Any], list[dict]] = defaultdict(list)
        for ref in refs:
            groups[(ref["split"], ref["image_id"])].append(ref)
        # Malformed refs are quarantined on their image when it can be told, else together under
        # the split (or "unknown") with image_id None; they never refuse the file.
        broken: dict[tuple[str, Any], list[tuple[int, Any, str]]] = defaultdict(list)
        for i, ref, problem in bad:
            split, image_id = _where(ref)
            if self.split in ("all", split) or split == "unknown":  # a split it cannot tell: kept
                broken[(split, image_id)].append((i, ref, f"ref #{i} {problem}"))
        keys = sorted(set(groups) | set(broken), key=lambda k: record_sort_key(*k))
        if self.limit is not None:
            keys = keys[: self.limit]
        for split, image_id in keys:
            mine = groups.get((split, image_id), [])
            sub = index.subset([image_id], [r["ann_id"] for r in mine])
            yield PlannedImage(self.name, split, image_id, (sub, mine, broken.get((split, image_id), [])),
                               problems=len(broken.get((split, image_id), [])))

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        index, refs, broken = planned.payload
        split, image_id = planned.split, planned.image_id
        rec = self._record(index, split, image_id, refs)
        for i, ref, reason in broken:
            rid = ref.get("ref_id") if isinstance(ref, dict) else None
            aid = ref.get("ann_id") if isinstance(ref, dict) else None
            rec.errors.append(source_error(self.name, split, image_id, reason,
                                           ann_id=aid if _plain(aid) else None,
                                           ref_id=rid if _plain(rid) else f"#{i}",
                                           detail=f"ref #{i} of {self.refs_file.name} not built"))
        return rec

    def _record(self, index: CocoIndex, split: str, image_id: Any, refs: list[dict]) -> ImageRecord:
        err = lambda reason, **kw: source_error(self.name, split, image_id, reason, **kw)  # noqa: E731
        rec = ImageRecord(source=self.name, split=split, image_id=image_id, width=0, height=0, targets=[])
        if not refs:
            return rec  # only malformed refs here; the caller adds their records
        refs = sorted(refs, key=lambda r: id_sort_key(r["ref_id"]))
        img = index.images.get(image_id)
        ids = f"ref ids: {', '.join(str(r['ref_id']) for r in refs)}"
        if img is None:
            rec.errors.append(err(f"unknown image_id {image_id!r}: not in instances.json", detail=ids))
            return rec
        problem = index.image_problem(image_id) or text_problem(image_id, "image_id") \
            or text_problem(split, "split") or check_image_size(img.get("width"), img.get("height"))
        if problem:
            rec.errors.append(err(problem, detail=ids))
            return rec
        rec.width, rec.height = int(img["width"]), int(img["height"])
        if not attach_image(rec, self.image_root, img.get("file_name"), err, ids):
            return rec  # masks are never decoded at a size the image does not have
        seen: set[Any] = set()
        for ref in refs:
            ref_id, ann_id = ref["ref_id"], ref["ann_id"]
            e = lambda reason: err(reason, ann_id=ann_id, ref_id=ref_id)  # noqa: E731
            if ref_id in seen:
                rec.errors.append(e(f"duplicate ref_id {ref_id!r} on this image"))
                continue
            seen.add(ref_id)
            ann = index.anns.get(ann_id)
            if index.ann_problem(ann_id):
                rec.errors.append(e(index.ann_problem(ann_id)))
                continue
            if ann is None:
                rec.errors.append(e(f"ann_id {ann_id!r} not found in instances.json"))
                continue
            if ann.get("image_id") != image_id:
                rec.errors.append(e(f"ann {ann_id!r} belongs to image {ann.get('image_id')!r}, not {image_id!r}"))
                continue
            try:
                sentences, sent_ids = _sentences(ref)
            except ValueError as ex:
                rec.errors.append(e(str(ex)))
                continue
            if not sentences:
                rec.errors.append(e("ref has no non-empty sentence"))
                continue
            cat_id = ann.get("category_id")
            if index.category_name(cat_id) is None and index.category_name(ref.get("category_id")) is not None:
                cat_id = ref.get("category_id")
            problem = index.category_problem(cat_id)
            if problem:
                rec.errors.append(e(problem))
                continue
            category = index.category_name(cat_id)
            try:
                _, rle, box = decode_target_mask(ann.get("segmentation"), rec.height, rec.width)
            except ValueError as ex:
                rec.errors.append(e(str(ex)))
                continue
            rec.targets.append(Target(
                target_id=f"ref{ref_id}", sentences=sentences, category=category, mask_rle=rle,
                box=box, ann_id=ann_id, ref_id=ref_id, sent_ids=sent_ids,
            ))
        return rec


def _make(dataset: str, options: ReferOptions) -> ReferSource:
    return ReferSource(dataset, **asdict(options))


for _name in DEFAULT_SPLIT_BY:
    SOURCES.register(_name, ReferOptions, partial(_make, _name))
