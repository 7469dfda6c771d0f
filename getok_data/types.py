"""Records that flow between stages: what a source yields and what a build writes.

Plain dataclasses (no Ray, no torch) so every stage and every runner can share them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from numbers import Integral, Real
from typing import Any


@dataclass
class ErrorRecord:
    """One quarantined item: an image or a target that could not be used, and why.

    Written one per line to ``errors.jsonl``; never silently dropped.
    """

    source: str
    split: str
    image_id: Any
    reason: str
    stage: str = "source"  # source | read | segment | annotate
    ann_id: Any = None
    ref_id: Any = None
    detail: str = ""

    def to_dict(self) -> dict:
        """JSON-ready and total: a lone surrogate (``\\udcff`` from a surrogateescape-decoded name)
        is written as its ``\\uXXXX`` escape and an id of an odd type as its ``repr``, so one bad
        string can never stop ``errors.jsonl`` or a sidecar from being written."""
        return {k: _json_safe(v) for k, v in asdict(self).items()}


def _json_safe(v: Any) -> Any:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(v, Integral):
        return int(v)
    if isinstance(v, Real):
        return float(v)
    return _json_safe(repr(v))


@dataclass
class Target:
    """One object to ground: a GT mask plus the expressions that refer to it."""

    target_id: str  # unique within its image, e.g. "ref40373" or "ann2134523"
    sentences: list[str]
    category: str
    mask_rle: dict  # COCO RLE, counts as str, size [h, w] == image size
    box: list[float]  # [x0, y0, x1, y1] in pixels, from the mask
    ann_id: Any = None
    ref_id: Any = None
    sent_ids: list[Any] = field(default_factory=list)
    # Optional keypoints [[x, y, v], ...] (COCO order) and their names.
    keypoints: list[list[float]] | None = None
    keypoint_names: list[str] | None = None
    # Optional, set by the sources that have them (issue 18); absent from the sample JSON when unset.
    no_target: bool = False  # gRefCOCO ann_id [-1]: nothing to ground; mask_rle is all background
    instances: list[dict] | None = None  # gRefCOCO multi-target: [{ann_id, category, mask_rle, box}]
    ignore_rle: dict | None = None  # ReasonSeg "ignore" pixels: neither intersection nor union
    extra: dict | None = None  # source fields written as-is into the target JSON (is_sentence, ...)
    # Optional polyline [[x, y], ...] in pixels (lanes: ordered, clipped; getok_data/lanes.py).
    polyline: list[list[float]] | None = None


@dataclass
class ImageRecord:
    """One image with all its targets, as a source yields it.

    At most one of ``image_path`` / ``image_bytes`` is set (neither: an image-level error
    is in ``errors``). ``errors`` holds the
    target-level problems found while loading (the bad targets are not in ``targets``).
    """

    source: str
    split: str
    image_id: Any
    width: int
    height: int
    targets: list[Target]
    image_path: str | None = None
    image_bytes: bytes | None = None
    image_ext: str = "jpg"  # member extension for the original bytes: jpg or png
    errors: list[ErrorRecord] = field(default_factory=list)
    #: The image's file name as the annotations give it (relative to the image root), used in
    #: quarantine reasons so errors.jsonl does not depend on where the data lives.
    image_name: str | None = None

    @property
    def key(self) -> str:
        return sample_key(self.source, self.split, self.image_id)


@dataclass
class PlannedImage:
    """One image as planning knows it: its identity and the annotations its record is made from.

    Planning (the driver) reads annotation files only; the source's ``resolve`` turns a planned
    image into its ``ImageRecord`` (path checks, existence, header size, mask decoding,
    quarantine) in the shard job, on the worker that builds that shard. ``payload`` is the
    source's own (picklable, annotations only); ``problems`` counts the annotation problems
    planning already saw (``build --dry-run`` reports them).
    """

    source: str
    split: str
    image_id: Any
    payload: Any
    problems: int = 0

    @property
    def key(self) -> str:
        return sample_key(self.source, self.split, self.image_id)


_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _escape(text: str, keep: frozenset[str]) -> str:
    """Injective: kept characters pass through, any other becomes ``-<hex code point>-``."""
    return "".join(c if c in keep else f"-{ord(c):x}-" for c in text)


def key_part(image_id: Any) -> str:
    """The image-id part of a sample key, injective over ints and strings.

    ``int`` -> its decimal form (``-`` for negatives); a ``str`` of ``[A-Za-z0-9_]`` -> itself,
    except one that is the decimal form of an int (``"50"``), whose first character is escaped so
    it cannot meet the int 50; every other character -> ``-<hex>-`` (``"a.b"`` -> ``a-2e-b``,
    ``"a-b"`` -> ``a-2d-b``). A string's part has an even number of ``-``, a negative int's one.
    """
    if isinstance(image_id, Integral) and not isinstance(image_id, bool):
        return str(int(image_id))
    if isinstance(image_id, str):
        text = _escape(image_id, _KEEP | {"_"})
        if image_id.isascii() and image_id.isdigit() and str(int(image_id)) == image_id:
            text = f"-{ord(image_id[0]):x}-{image_id[1:]}"
        return text
    return f"-t{_escape(type(image_id).__name__, _KEEP)}-{_escape(repr(image_id), _KEEP)}"


def sample_key(source: str, split: str, image_id: Any) -> str:
    """WebDataset key ``{source}_{split}_{image_id}`` using only [A-Za-z0-9_-], unique by
    construction for one source: the split is escaped so it holds no ``_`` (``+`` in a source
    name is written ``plus``), and the id part is injective (:func:`key_part`). Keys of int ids
    and of ``[A-Za-z0-9_]`` string ids under plain split names are as they always were."""
    src = _escape(str(source).replace("+", "plus"), _KEEP | {"_", "-"})
    return f"{src}_{_escape(str(split), _KEEP)}_{key_part(image_id)}"
