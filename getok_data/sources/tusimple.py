"""TuSimple lane detection (``label_data*.json``, ``test_label*.json``) as polyline targets.

Each file is JSON Lines: ``{"lanes": [[x or -2, ...], ...], "h_samples": [y, ...], "raw_file":
"clips/<date>/<clip>/20.jpg"}`` for the last frame of a clip. A lane's points are
``(x, y) for x, y in zip(lane, h_samples) if x >= 0`` (the README's and lanedet's rule); a lane
slot with no point (all ``-2``) is "no lane there" in TuSimple's own encoding and is left out by
policy. Every other lane becomes a ``<pl>`` target (getok_data/lanes.py). Image sizes come from
the image headers (the JSON has none).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import json
import re
from numbers import Real
from pathlib import Path
from typing import Any, Iterator

from ..location import location
from ..types import ImageRecord, PlannedImage
from .base import SOURCES, Source, check_limit, record_sort_key, resolve_image_path, source_error
from .lane_record import add_lane_targets, image_size, image_unusable, lane_image_id

__all__ = ["TUSIMPLE_SPLITS", "TusimpleSource", "split_of"]

#: Split of each known file (lanedet's convention); other ``label_data*.json`` files are train,
#: other ``test_label*.json`` files test (see :func:`split_of`).
TUSIMPLE_SPLITS = {"label_data_0313.json": "train", "label_data_0601.json": "train",
                   "label_data_0531.json": "val", "test_label.json": "test"}
_SPLIT_SETS = {"all": {"train", "val", "test"}, "trainval": {"train", "val"},
               "train": {"train"}, "val": {"val"}, "test": {"test"}}
_LABEL_FILE = re.compile(r"^(label_data|test_label).*\.json$")


def split_of(file_name: str) -> str:
    """The split of a label file: :data:`TUSIMPLE_SPLITS`, else test for ``test_label*``, else train."""
    return TUSIMPLE_SPLITS.get(file_name, "test" if file_name.startswith("test_label") else "train")


def _num(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


@dataclass(frozen=True)
class TusimpleOptions:
    data_root: str | None = None  # holds label_data_*.json (or test_label*.json) and clips/ (required)
    split: str = "all"  # all | train | test (by label file)
    limit: int | None = None  # first N frames after sorting

    def __post_init__(self) -> None:
        if self.data_root is None:
            raise ValueError("data_root: required for tusimple (--data-root, the folder holding label_data_*.json)")


class TusimpleSource(Source):
    """One ``ImageRecord`` per labelled frame, one target per lane.

    Options: ``data_root`` (folder holding the label files and ``clips/``), ``split`` (``all``
    (default), ``train``, ``val``, ``test``, ``trainval``: which files are read; each record keeps
    its file's split), ``limit`` (first N frames in (split, raw_file) order).
    """

    name = "tusimple"

    def __init__(self, *, data_root: str | Path, split: str = "all", limit: int | None = None) -> None:
        if data_root is None:
            raise ValueError("tusimple source needs --data-root (the folder holding label_data_*.json)")
        self.data_root = location(data_root)
        if not self.data_root.is_dir():
            raise FileNotFoundError(f"tusimple data root is not a folder: {self.data_root}")
        if split not in _SPLIT_SETS:
            raise ValueError(f"tusimple split must be one of {sorted(_SPLIT_SETS)}, got {split!r}")
        self.split = split
        self.limit = check_limit(limit)
        self.files = sorted(p for p in self.data_root.iterdir()
                            if p.is_file() and _LABEL_FILE.match(p.name)
                            and split_of(p.name) in _SPLIT_SETS[split])
        if not self.files:
            raise FileNotFoundError(f"no label_data*.json or test_label*.json for split {split!r} in {self.data_root}")

    def describe(self) -> dict:
        return {"source": self.name, "data_root": str(self.data_root.resolve()), "split": self.split,
                "files": [p.name for p in self.files], "limit": self.limit}

    def _frames(self) -> list[tuple[str, str, Any, str]]:
        """(split, image_id, parsed line or None, where) for every line of the selected files."""
        out = []
        for path in self.files:
            split = split_of(path.name)
            with path.open("r", encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    where = f"{path.name}:{lineno}"
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        out.append((split, where, None, f"{where}: not valid JSON: {e}"))
                        continue
                    raw = obj.get("raw_file") if isinstance(obj, dict) else None
                    if not isinstance(raw, str) or not raw:
                        out.append((split, where, None, f"{where}: no raw_file"))
                        continue
                    out.append((split, lane_image_id(raw), obj, where))
        return out

    def inputs(self) -> list[str]:
        return [str(p) for p in self.files]

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        obj, where = planned.payload
        split, image_id = planned.split, planned.image_id
        rec = ImageRecord(source=self.name, split=split, image_id=image_id, width=0, height=0, targets=[])
        self._fill(rec, obj, where, lambda reason, **kw: source_error(self.name, split, image_id, reason, **kw))
        return rec

    def plan(self) -> Iterator[ImageRecord | PlannedImage]:
        """The label files read once; each frame planned with its line (its image's size is read
        from the header in ``resolve``, on the worker)."""
        frames = sorted(self._frames(), key=lambda f: record_sort_key(f[0], f[1]))
        if self.limit is not None:
            frames = frames[: self.limit]
        seen: set[tuple[str, str]] = set()
        for split, image_id, obj, where in frames:
            rec = ImageRecord(source=self.name, split=split, image_id=image_id, width=0, height=0, targets=[])
            err = lambda reason, **kw: source_error(self.name, split, image_id, reason, **kw)  # noqa: E731
            if obj is None:
                rec.errors.append(err(where))
            elif (split, image_id) in seen:
                rec.errors.append(err(f"{where}: duplicate raw_file {obj['raw_file']!r}"))
            else:
                seen.add((split, image_id))
                yield PlannedImage(self.name, split, image_id, (obj, where))
                continue
            yield rec

    def _fill(self, rec: ImageRecord, obj: dict, where: str, err) -> None:
        lanes, ys = obj.get("lanes"), obj.get("h_samples")
        if not isinstance(lanes, list) or not isinstance(ys, list) or not all(_num(y) for y in ys):
            rec.errors.append(err(f"{where}: 'lanes' and 'h_samples' must be lists of numbers"))
            return
        path, problem = resolve_image_path(self.data_root, obj["raw_file"])
        size = image_size(path) if path else problem
        if isinstance(size, str):
            slots = [k for k, lane in enumerate(lanes) if isinstance(lane, list) and any(_num(x) and x >= 0 for x in lane)]
            image_unusable(rec, slots, size, err)
            return
        rec.image_path, (rec.width, rec.height) = path, size
        rec.image_ext = "png" if path.lower().endswith(".png") else "jpg"
        usable = []
        for slot, lane in enumerate(lanes):
            if not isinstance(lane, list) or len(lane) != len(ys) or not all(_num(x) for x in lane):
                rec.errors.append(err(f"{where}: lane {slot} is not {len(ys)} numbers (one per h_sample)", ann_id=slot))
                continue
            points = [(float(x), float(y)) for x, y in zip(lane, ys) if x >= 0]
            if points:  # all -2: no lane in this slot (TuSimple's encoding), not a lane
                usable.append((slot, points))
        add_lane_targets(rec, usable, err)


SOURCES.register("tusimple", TusimpleOptions, lambda o: TusimpleSource(**asdict(o)))
