"""CULane (``*.lines.txt`` beside each image, optional ``list/*.txt``) as polyline targets.

A ``.lines.txt`` holds one lane per line, ``x1 y1 x2 y2 ...`` (x a float pixel column that may
lie off the image, y bottom-up, lines ending in a space). With ``list`` (e.g.
``list/train_gt.txt``), the frames are its first column (a path from the data root, leading
``/`` stripped; the segmentation path and the four existence flags are not needed: the flags are
per lane slot, not a count of lines). Without it, every ``*.lines.txt`` under the data root is
a frame, its image the ``.jpg`` (else ``.png``) of the same stem. A line with no numbers is an
empty lane slot (the official reader keeps it as an empty lane) and is left out by policy; a
frame with no lane at all has nothing to ground and is skipped like an unannotated COCO image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import math
from pathlib import Path
from typing import Iterator

from ..location import RemotePath, location
from ..types import ImageRecord, PlannedImage
from .base import SOURCES, Source, check_limit, id_sort_key, resolve_image_path, source_error
from .lane_record import add_lane_targets, image_size, image_unusable, lane_image_id

__all__ = ["CulaneSource", "parse_lines_txt"]


def parse_lines_txt(text: str) -> list[tuple[int, list[tuple[float, float]]]]:
    """``(slot, points)`` for each non-empty line; ValueError naming the line on bad numbers."""
    lanes = []
    for slot, line in enumerate(text.splitlines()):
        parts = line.split()
        if not parts:
            continue
        try:
            vals = [float(v) for v in parts]
        except ValueError as e:
            raise ValueError(f"line {slot + 1}: not numbers: {e}") from e
        if len(vals) % 2 or not all(math.isfinite(v) for v in vals):
            raise ValueError(f"line {slot + 1}: {len(vals)} values, expected finite x y pairs")
        lanes.append((slot, list(zip(vals[0::2], vals[1::2]))))
    return lanes


def _split_of(list_path: Path) -> str:
    stem = list_path.stem
    return stem[:-3] if stem.endswith("_gt") else stem


@dataclass(frozen=True)
class CulaneOptions:
    data_root: str | None = None  # holds the frames with *.lines.txt beside each (required)
    list: str | None = None  # frame list relative to data_root (list/train_gt.txt); None: every frame
    split: str | None = None  # a label for the keys; None: from the list name
    limit: int | None = None  # first N frames after sorting

    def __post_init__(self) -> None:
        if self.data_root is None:
            raise ValueError("data_root: required for culane (--data-root)")


class CulaneSource(Source):
    """One ``ImageRecord`` per frame, one target per lane.

    Options: ``data_root`` (required), ``list`` (a frame list relative to the data root, else
    as given), ``split`` (the label in sample keys; default: the list's name without
    ``_gt``, e.g. ``train``, or ``all`` without a list), ``limit`` (first N frames by path).
    """

    name = "culane"

    def __init__(self, *, data_root: str | Path, list: str | Path | None = None,  # noqa: A002
                 split: str | None = None, limit: int | None = None) -> None:
        if data_root is None:
            raise ValueError("culane source needs --data-root")
        self.data_root = location(data_root)
        if not self.data_root.is_dir():
            raise FileNotFoundError(f"culane data root is not a folder: {self.data_root}")
        self.list = None
        if list is not None:
            lp = location(list)
            self.list = lp if isinstance(lp, RemotePath) or lp.is_absolute() or not (self.data_root / lp).is_file() \
                else self.data_root / lp
            if not self.list.is_file():
                raise FileNotFoundError(f"culane list file not found: {self.list}")
        self.split = split or (_split_of(self.list) if self.list else "all")
        if not isinstance(self.split, str) or not self.split:
            raise ValueError(f"split must be a non-empty string, got {split!r}")
        self.limit = check_limit(limit)

    def describe(self) -> dict:
        return {"source": self.name, "data_root": str(self.data_root.resolve()),
                "list": str(self.list.resolve()) if self.list else None, "split": self.split, "limit": self.limit}

    def _frames(self) -> list[str]:
        """Image paths relative to the data root (list order is not kept: sorted, unique)."""
        if self.list is not None:
            rels = []
            for line in self.list.read_text(encoding="utf-8").splitlines():
                if line.split():
                    rels.append(line.split()[0].lstrip("/"))
            return sorted(set(rels), key=lambda r: id_sort_key(lane_image_id(r)))
        rels = []
        for p in self.data_root.rglob("*.lines.txt"):
            stem = p.name[: -len(".lines.txt")]
            img = next((p.with_name(stem + e) for e in (".jpg", ".png") if p.with_name(stem + e).is_file()),
                       p.with_name(stem + ".jpg"))
            rels.append(img.relative_to(self.data_root).as_posix())
        return sorted(rels, key=lambda r: id_sort_key(lane_image_id(r)))

    def inputs(self) -> list[str]:
        return [str(self.list)] if self.list is not None else []

    def plan(self) -> Iterator[ImageRecord | PlannedImage]:
        """The frame list and each frame's ``.lines.txt`` (annotations: a frame without a lane
        plans nothing, as it always did, so blocks keep their images); the image itself is checked
        and its header read in ``resolve``, on the worker."""
        frames = self._frames()
        if self.limit is not None:
            frames = frames[: self.limit]
        for rel in frames:
            image_id = lane_image_id(rel)
            rec = ImageRecord(source=self.name, split=self.split, image_id=image_id, width=0, height=0, targets=[])
            err = lambda reason, **kw: source_error(self.name, self.split, image_id, reason, **kw)  # noqa: E731
            lines_rel = image_id + ".lines.txt"
            lines_path, problem = resolve_image_path(self.data_root, lines_rel)
            if problem:
                rec.errors.append(err(problem.replace("missing image file", "missing lane file")))
                yield rec
                continue
            try:
                lanes = parse_lines_txt(location(lines_path).read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                rec.errors.append(err(f"{lines_rel}: {e}"))
                yield rec
                continue
            if not lanes:
                continue  # no lane in this frame: nothing to ground
            yield PlannedImage(self.name, self.split, image_id, (rel, lanes))

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        rel, lanes = planned.payload
        image_id = planned.image_id
        rec = ImageRecord(source=self.name, split=self.split, image_id=image_id, width=0, height=0, targets=[])
        err = lambda reason, **kw: source_error(self.name, self.split, image_id, reason, **kw)  # noqa: E731
        path, problem = resolve_image_path(self.data_root, rel)
        size = image_size(path) if path else problem
        if isinstance(size, str):
            image_unusable(rec, [s for s, _ in lanes], size, err)
            return rec
        rec.image_path, (rec.width, rec.height) = path, size
        rec.image_ext = "png" if path.lower().endswith(".png") else "jpg"
        add_lane_targets(rec, lanes, err)
        return rec


SOURCES.register("culane", CulaneOptions, lambda o: CulaneSource(**asdict(o)))
