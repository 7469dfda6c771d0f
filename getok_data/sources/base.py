"""What every source shares: the ``Source`` interface, ordering, path safety, target decoding."""
from __future__ import annotations

import abc
import functools
import json
import os
from numbers import Integral
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from ..images import header_size
from ..location import Location, RemotePath
from ..masks import mask_box, mask_to_rle, segmentation_to_mask
from ..registry import Registry
from ..types import ErrorRecord, ImageRecord, PlannedImage

__all__ = [
    "SOURCES",
    "Source",
    "MAX_IMAGE_SIDE",
    "id_sort_key",
    "record_sort_key",
    "check_image_size",
    "check_header_size",
    "check_inside",
    "text_problem",
    "check_limit",
    "resolve_image_path",
    "attach_image",
    "load_json_list",
    "decode_target_mask",
    "source_error",
]

#: Every source registers itself here (its options dataclass and a factory); see sources/__init__.py.
SOURCES = Registry("source")

#: Largest width/height accepted from annotation JSON (guards against absurd allocations).
MAX_IMAGE_SIDE = 1 << 15
#: Largest width*height accepted from annotation JSON: PIL's own decompression-bomb limit, read
#: when checked (a user who raises ``PIL.Image.MAX_IMAGE_PIXELS`` raises this too).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def max_image_pixels() -> int:
    return int(Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_IMAGE_PIXELS)


def _unique_keys(records: Callable[..., Iterator[ImageRecord]]) -> Callable[..., Iterator[ImageRecord]]:
    """Wrap a ``records()`` so a second record with an already-yielded sample key is refused:
    it becomes an image-level quarantine record (no image, no targets), never a second member."""

    @functools.wraps(records)
    def checked(self: "Source", *args: Any, **kwargs: Any) -> Iterator[ImageRecord]:
        seen: set[str] = set()
        for rec in records(self, *args, **kwargs):
            key = rec.key
            if key not in seen:
                seen.add(key)
                yield rec
                continue
            lost = len(getattr(rec, "targets", None) or [])
            yield ImageRecord(
                source=rec.source, split=rec.split, image_id=rec.image_id, width=0, height=0, targets=[],
                errors=[source_error(rec.source, rec.split, rec.image_id,
                                     f"duplicate sample key {key}: split {rec.split!r}, image_id "
                                     f"{rec.image_id!r} was already yielded; this record is refused",
                                     detail=f"{lost} target(s) of this record not built" if lost else "")])

    checked._checks_keys = True  # type: ignore[attr-defined]
    return checked


class Source(abc.ABC):
    """A grounding source: yields one ``ImageRecord`` per (split, image), sorted by (split, image_id).

    Each source module declares a frozen options dataclass beside its class and registers both
    in :data:`SOURCES`. Every subclass's
    ``records()`` is wrapped so sample keys are unique within one source: a record whose key was
    already yielded is quarantined (``duplicate sample key``), never written twice.
    """

    name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in ("records", "plan"):
            own = cls.__dict__.get(method)
            if own is not None and not getattr(own, "_checks_keys", False) \
                    and not getattr(own, "__isabstractmethod__", False):
                setattr(cls, method, _unique_keys(own))

    def records(self) -> Iterator[ImageRecord]:
        """Yield the image records lazily, in (split, image_id) order: ``resolve`` over ``plan``
        (a source that cannot plan without reading its images overrides this instead)."""
        if not self.defers:
            raise NotImplementedError(f"{type(self).__name__} defines neither records() nor plan()")
        return (self.resolve(p) for p in self.plan())

    def plan(self) -> Iterator[ImageRecord | PlannedImage]:
        """What a build plans with, in ``records()``'s order: ``PlannedImage``s made from the
        annotations alone for a source that defers its per-image work to ``resolve`` (run in
        the shard job), else the records themselves (this default: the source reads images or
        masks while it lists them)."""
        return self.records()

    def resolve(self, item: ImageRecord | PlannedImage) -> ImageRecord:
        """The record of a planned image (a record is its own)."""
        return item if isinstance(item, ImageRecord) else self._resolve(item)

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        raise NotImplementedError(f"{type(self).__name__} plans no deferred images")

    def inputs(self) -> list[str]:
        """The annotation files planning reads (their sizes and times fingerprint a plan, so a
        finished build re-runs as a no-op without planning again); [] when not known."""
        return []

    @property
    def defers(self) -> bool:
        """Whether planning leaves every image unopened (the per-image work runs in ``resolve``)."""
        return type(self).plan is not Source.plan

    @abc.abstractmethod
    def describe(self) -> dict:
        """Resolved options (JSON-serialisable) for the manifest."""


def id_sort_key(image_id: Any) -> tuple:
    """Numeric ids sort numerically and before string ids, which sort lexically."""
    if isinstance(image_id, Integral) and not isinstance(image_id, bool):
        return (0, int(image_id), "")
    return (1, 0, str(image_id))


def record_sort_key(split: str, image_id: Any) -> tuple:
    """Sort key for (split, image_id)."""
    return (str(split), id_sort_key(image_id))


def check_limit(limit: Any) -> int | None:
    """Validate the common ``limit`` option (None or an int >= 0)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 0:
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    return int(limit)


def check_image_size(width: Any, height: Any) -> str | None:
    """None when width/height are positive ints within ``MAX_IMAGE_SIDE`` and their product
    within PIL's ``MAX_IMAGE_PIXELS``; else a reason (checked before any mask is decoded)."""
    for v in (width, height):
        if isinstance(v, bool) or not isinstance(v, Integral) or not 0 < v <= MAX_IMAGE_SIDE:
            return f"invalid image size in annotations: width={width!r}, height={height!r}"
    if int(width) * int(height) > max_image_pixels():
        return (f"image size {width}x{height} in annotations is above the {max_image_pixels()}-pixel "
                "limit (PIL.Image.MAX_IMAGE_PIXELS)")
    return None


def check_header_size(path: str | None, name: str, width: int, height: int) -> str | None:
    """A reason when the image file's header says another size than the annotations (read from
    the header only, before any mask is decoded at the declared size); None otherwise, also
    when the header is unreadable (the read stage then reports why)."""
    if path is None:
        return None
    real = header_size(path)
    if real is None or real == (width, height):
        return None
    return f"image {name} is {real[0]}x{real[1]} but the annotations say {width}x{height}"


def check_inside(root: Location, path: Location, what: str) -> None:
    """Refuse ``path`` when it (or a symlink on the way) resolves outside ``root``."""
    if isinstance(root, RemotePath) or isinstance(path, RemotePath):
        if not (isinstance(path, RemotePath) and path.is_relative_to(root)):
            raise ValueError(f"{what} {path} is outside {root}; refusing to read it")
        return
    real, top = Path(path).resolve(), Path(root).resolve()
    if real != top and top not in real.parents:
        raise ValueError(f"{what} {path} resolves to {real}, outside {root}; refusing to read it")


def text_problem(text: Any, what: str) -> str | None:
    """A reason when ``text`` is a str that is not valid Unicode (a lone surrogate such as
    ``\\udcff``, left by surrogateescape decoding or a JSON ``\\udcXX`` escape); else None.

    Such text cannot be written as UTF-8, so the target (or image) holding it is quarantined
    rather than repaired: a guess at the intended characters would be silently wrong.
    """
    if not isinstance(text, str):
        return None
    for k, c in enumerate(text):
        if "\ud800" <= c <= "\udfff":
            shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
            return f"{what} is not valid Unicode (lone surrogate U+{ord(c):04X} at {k}): {shown!r}"
    return None


def resolve_image_path(image_root: Location, file_name: Any) -> tuple[str | None, str | None]:
    """Resolve ``image_root / file_name`` safely: ``(path, None)`` or ``(None, reason)``.

    Refuses absolute names, ``..`` components and symlinks that resolve outside ``image_root``;
    a name that stays inside but does not exist gives ``"missing image file: <file_name> ..."``
    (the name as given, so reasons do not depend on where the data lives).
    Only ``stat``-level checks are made: the file is never opened.
    """
    if not isinstance(file_name, str) or not file_name or "\x00" in file_name:
        return None, f"invalid image file_name: {file_name!r}"
    rel = Path(file_name)
    if rel.is_absolute() or os.path.isabs(file_name) or ".." in rel.parts or ".." in file_name.split("\\") \
            or "://" in file_name:
        return None, f"image path escapes --image-root: {file_name}"
    if isinstance(image_root, RemotePath):  # an object store: no symlinks; the normalised key is what is read
        candidate = image_root / file_name
        if not candidate.is_relative_to(image_root):
            return None, f"image path escapes --image-root: {file_name}"
        try:
            exists = candidate.is_file()
        except (OSError, ValueError):
            return None, f"image path cannot be resolved: {file_name}"
        return (str(candidate), None) if exists else (None, f"missing image file: {file_name} (under --image-root)")
    root = Path(image_root).resolve()
    candidate = root / rel
    try:
        resolved = candidate.resolve()
        inside = resolved == root or root in resolved.parents
        exists = inside and resolved.is_file()
    except (OSError, RuntimeError, ValueError):  # symlink loops, names the OS cannot encode
        return None, f"image path cannot be resolved: {file_name}"
    if not inside:
        return None, f"image path escapes --image-root: {file_name}"
    if not exists:
        return None, f"missing image file: {file_name} (under --image-root)"
    return str(resolved), None


def _polygon_outside(seg: Any, h: int, w: int) -> bool:
    """True when seg is a polygon list whose every point lies outside the image rectangle."""
    if not isinstance(seg, (list, tuple)) or not seg or isinstance(seg[0], dict):
        return False
    xs: list[float] = []
    ys: list[float] = []
    for part in seg:
        if isinstance(part, (list, tuple)):
            xs.extend(part[0::2])
            ys.extend(part[1::2])
    if not xs or not ys:
        return False
    return max(xs) <= 0 or min(xs) >= w or max(ys) <= 0 or min(ys) >= h


def attach_image(rec: ImageRecord, image_root: Path, file_name: Any, err: Callable[..., ErrorRecord],
                 detail: str = "") -> bool:
    """Point ``rec`` at its image file under ``image_root`` (path safety, existence, the header's
    size against the declared one); each problem becomes an error of ``rec``. False when the header
    gives another size: then no mask may be decoded at the declared size (the caller stops)."""
    rec.image_path, problem = resolve_image_path(image_root, file_name)
    if problem:
        rec.errors.append(err(problem))
        return True
    rec.image_name = file_name
    problem = check_header_size(rec.image_path, rec.image_name, rec.width, rec.height)
    if problem:
        rec.image_path = None
        rec.errors.append(err(problem, detail=detail))
        return False
    return True


def load_json_list(path: Location, what: str = "a JSON list") -> list:
    """A JSON file whose top level is a list; ``ValueError`` naming the file (``expected {what}``)."""
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected {what}")
    return data


def decode_target_mask(seg: Any, h: int, w: int) -> tuple[np.ndarray, dict, list[float]]:
    """Decode one target's segmentation: ``(mask, rle, box)``; ``ValueError(reason)`` if unusable."""
    if seg is None:
        raise ValueError("annotation has no segmentation")
    try:
        mask = segmentation_to_mask(seg, h, w)
    except ValueError as e:
        raise ValueError(f"bad segmentation: {e}") from e
    box = mask_box(mask)
    if box is None:
        if _polygon_outside(seg, h, w):
            raise ValueError("mask entirely outside the image")
        raise ValueError("empty mask")
    return mask, mask_to_rle(mask), box


def source_error(
    source: str, split: str, image_id: Any, reason: str, ann_id: Any = None, ref_id: Any = None, detail: str = ""
) -> ErrorRecord:
    """An ``ErrorRecord`` with ``stage="source"``."""
    return ErrorRecord(
        source=source, split=split, image_id=image_id, reason=reason, stage="source",
        ann_id=ann_id, ref_id=ref_id, detail=detail,
    )
