"""HumanRef (IDEA Research, "Referring to Any Person"): multi-instance person referring.

Layout as released: ``data_root/annotations.jsonl`` beside ``data_root/images/``. One JSON object
per line: ``id``, ``image_name`` (under ``images/``), ``domain``, ``sub_domain``, ``referring``,
``answer_boxes`` and ``candidate_boxes`` (``[x0, y0, x1, y1]`` pixels), ``answer_segmentations``
(one COCO RLE per answer box; ``counts`` a string or a list). The ``rejection`` domain has no
answer: nobody in the image matches.

One ``ImageRecord`` per image (sorted by ``image_name``), one ``Target`` per line, ``target_id``
``ref<id>``: its mask is the union of the answer masks (the ``seg`` answer), each answer person is
an instance (``instances``: ``{"box", "mask_rle"}``, in the file's order) for the multi-instance
``points`` / ``boxes`` answers, and ``candidate_boxes``, ``domain`` and ``sub_domain`` are kept in
the target (the scorer's DensityF1 counts the candidates). A rejection line is a no-target
target (``<seg></seg>``, and the no-match answers ``<point></point>`` / ``<box></box>``).

Quarantined with reasons: a line that is not JSON or lacks a field, answer boxes and masks that do
not pair up, a mask of another size than the image, an empty mask, a duplicate id, a missing image.
The image size comes from the masks' ``size`` (every mask of an image must agree) or, for an image
with only rejections, from its header.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..images import header_size
from ..masks import mask_box, mask_to_rle, segmentation_to_mask
from ..location import location, open_input
from ..types import ErrorRecord, ImageRecord, PlannedImage, Target, key_part
from .base import SOURCES, Source, attach_image, check_image_size, check_limit, resolve_image_path, source_error, \
    text_problem

__all__ = ["HumanRefSource", "HumanRefOptions", "REJECTION"]

REJECTION = "rejection"
FIELDS = ("id", "image_name", "domain", "referring", "answer_boxes", "candidate_boxes")


@dataclass(frozen=True)
class HumanRefOptions:
    data_root: str | None = None  # holds annotations.jsonl and images/
    image_root: str | None = None  # None: <data_root>/images
    annotations: str | None = None  # None: <data_root>/annotations.jsonl
    split: str = "test"  # HumanRef is a benchmark: the name the samples carry
    limit: int | None = None  # first N images (sorted by image_name)

    def __post_init__(self) -> None:
        if self.data_root is None:
            raise ValueError("data_root: required for humanref (--data-root)")


def _boxes(v: Any, what: str) -> list[list[float]]:
    if not isinstance(v, list):
        raise ValueError(f"{what} is not a list")
    out = []
    for b in v:
        if not (isinstance(b, (list, tuple)) and len(b) == 4
                and all(isinstance(c, Real) and not isinstance(c, bool) for c in b)):
            raise ValueError(f"{what}: {b!r} is not [x0, y0, x1, y1]")
        out.append([float(c) for c in b])
    return out


class HumanRefSource(Source):
    name = "humanref"

    def __init__(self, *, data_root: str | Path, image_root: str | Path | None = None,
                 annotations: str | Path | None = None, split: str = "test", limit: int | None = None) -> None:
        self.data_root = location(data_root)
        self.image_root = location(image_root) if image_root is not None else self.data_root / "images"
        self.annotations = location(annotations) if annotations is not None else self.data_root / "annotations.jsonl"
        if not self.annotations.is_file():
            raise FileNotFoundError(f"HumanRef annotations not found: {self.annotations}")
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image root is not a folder: {self.image_root}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a non-empty name, got {split!r}")
        self.split = split
        self.limit = check_limit(limit)

    def describe(self) -> dict:
        return {"source": self.name, "data_root": str(self.data_root.resolve()),
                "image_root": str(self.image_root.resolve()), "annotations": str(self.annotations.resolve()),
                "split": self.split, "limit": self.limit}

    def inputs(self) -> list[str]:
        return [str(self.annotations)]

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        return self._record(planned.image_id, planned.payload)

    def plan(self) -> Iterator[PlannedImage | ImageRecord]:
        """The JSONL parsed once; each image planned with its lines (a rejection-only image's
        size is read from its header in ``resolve``, on the worker)."""
        by_image: dict[str, list[tuple[int, dict]]] = defaultdict(list)
        bad: list[ErrorRecord] = []
        with open_input(self.annotations) as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                where = f"{self.annotations.name} line {lineno}"
                try:
                    obj = json.loads(raw.decode("utf-8-sig"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    bad.append(source_error(self.name, self.split, f"line{lineno}", f"{where}: not a JSON object ({e})"))
                    continue
                missing = [k for k in FIELDS if not isinstance(obj, dict) or k not in obj]
                if missing or not isinstance(obj.get("image_name"), str):
                    bad.append(source_error(self.name, self.split, f"line{lineno}",
                                            f"{where}: lacks {missing or ['a string image_name']}"))
                    continue
                by_image[obj["image_name"]].append((lineno, obj))
        names = sorted(by_image)
        if self.limit is not None:
            names = names[: self.limit]
        if bad:  # lines that name no usable image: one record holding their reasons, first
            yield ImageRecord(source=self.name, split=self.split, image_id="-unreadable-lines", width=0, height=0,
                              targets=[], errors=bad)
        for name in names:
            yield PlannedImage(self.name, self.split, name, by_image[name])

    def _size(self, name: str, lines: list[tuple[int, dict]]) -> tuple[int, int] | str:
        """(width, height): from the masks' sizes, else from the image header; or a reason."""
        sizes = set()
        for _, obj in lines:
            for seg in obj.get("answer_segmentations") or []:
                size = seg.get("size") if isinstance(seg, dict) else None
                if isinstance(size, (list, tuple)) and len(size) == 2:
                    sizes.add((size[1], size[0]))
        if len(sizes) > 1:
            return f"the masks of image {name} disagree on its size: {sorted(sizes)}"
        if sizes:
            return sizes.pop()
        path, problem = resolve_image_path(self.image_root, name)
        if problem:
            return problem
        size = header_size(path)
        return size if size is not None else f"image {name} has an unreadable header"

    def _record(self, name: str, lines: list[tuple[int, dict]]) -> ImageRecord:
        err = lambda reason, **kw: source_error(self.name, self.split, name, reason, **kw)  # noqa: E731
        rec = ImageRecord(source=self.name, split=self.split, image_id=name, width=0, height=0, targets=[])
        size = self._size(name, lines)
        if isinstance(size, str):
            rec.errors.append(err(size, detail=f"{len(lines)} referring line(s)"))
            return rec
        problem = check_image_size(*size)
        if problem:
            rec.errors.append(err(problem))
            return rec
        rec.width, rec.height = int(size[0]), int(size[1])
        if not attach_image(rec, self.image_root, name, err) or rec.image_path is None:
            return rec
        seen: set[str] = set()
        for lineno, obj in sorted(lines, key=lambda lo: (str(lo[1]["id"]), lo[0])):
            rid = obj["id"]
            e = lambda reason: err(f"{self.annotations.name} line {lineno}: {reason}", ref_id=rid)  # noqa: E731
            if str(rid) in seen:
                rec.errors.append(e(f"duplicate id {rid!r} on this image"))
                continue
            seen.add(str(rid))
            try:
                rec.targets.append(self._target(rec, obj))
            except ValueError as ex:
                rec.errors.append(e(str(ex)))
        return rec

    def _target(self, rec: ImageRecord, obj: dict) -> Target:
        rid, referring, domain = obj["id"], obj["referring"], obj["domain"]
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise ValueError(f"id must be a string or an integer, got {rid!r}")
        if not isinstance(referring, str) or not referring.strip():
            raise ValueError("empty referring expression")
        for text, what in ((referring, "referring"), (domain, "domain"), (obj.get("sub_domain"), "sub_domain")):
            problem = text_problem(text, what)
            if problem:
                raise ValueError(problem)
        answers = _boxes(obj["answer_boxes"], "answer_boxes")
        candidates = _boxes(obj["candidate_boxes"], "candidate_boxes")
        segs = obj.get("answer_segmentations") or []
        extra = {"domain": domain, "sub_domain": obj.get("sub_domain"), "candidate_boxes": candidates}
        h, w = rec.height, rec.width
        common = dict(target_id=f"ref{key_part(rid)}", sentences=[" ".join(referring.split())], category="person",
                      ref_id=rid, extra=extra)
        if domain == REJECTION or not answers:
            if answers or segs:
                raise ValueError(f"a {domain!r} line with answers: answer_boxes must be empty for rejections")
            return Target(mask_rle=mask_to_rle(np.zeros((h, w), bool)), box=[0.0, 0.0, 0.0, 0.0], no_target=True,
                          instances=[], **common)
        if not isinstance(segs, list) or len(segs) != len(answers):
            raise ValueError(f"{len(answers)} answer_boxes but {len(segs) if isinstance(segs, list) else segs!r} "
                             "answer_segmentations: they must pair up")
        union = np.zeros((h, w), bool)
        instances = []
        for k, (box, seg) in enumerate(zip(answers, segs)):
            try:
                mask = segmentation_to_mask(seg, h, w)
            except ValueError as ex:
                raise ValueError(f"answer {k}: bad segmentation: {ex}") from None
            if not mask.any():
                raise ValueError(f"answer {k}: empty mask")
            union |= mask
            instances.append({"box": box, "mask_rle": mask_to_rle(mask)})
        return Target(mask_rle=mask_to_rle(union), box=mask_box(union), instances=instances, **common)


SOURCES.register("humanref", HumanRefOptions, lambda o: HumanRefSource(**asdict(o)))
