"""Hugging Face parquet / arrow grounding sets with the images embedded (lmms-lab/RefCOCO,
Seg-Zero / VisionReasoner's ``Ricky06662/*``, ...), read with pyarrow only.

``data_files``: parquet files (a glob, a list, or one path), read row group by row group; or a
``datasets`` ``save_to_disk`` folder (its ``.arrow`` IPC-stream files, one folder per split for a
``DatasetDict``). ``columns`` maps roles to column names (``image=...,text=...`` plus one geometry
``mask=``, ``rle=``, ``polygon=`` or ``bbox=``, optional ``image_id=``, ``ann_id=``, ``category=``,
and ``bbox_format=xywh|xyxy|xyxy_norm``, a value rather than a column); a ``preset`` fills the
map for a known layout (column names from the dataset cards, /work/shared/fixtures/FORMATS.md
section 4) and ``columns`` overrides single roles of it.

Rows of one image (same ``image_id`` value, else the same image bytes) become one
``ImageRecord``; rows with the same ``ann_id`` on an image become one ``Target`` (their texts
appended). Geometry, first present of: ``mask`` (an H x W nested list of bools, or an encoded
mask image, nonzero = foreground), ``rle`` (a COCO RLE struct; it, ``polygon`` and ``bbox`` may
also be JSON strings), ``polygon`` (COCO polygon parts, or one flat ``[x1, y1, ...]``), ``bbox`` (the box
filled, when that is all a set has). The split is the file name's prefix (``val-00000-of-00001``
-> ``val``), a ``DatasetDict`` folder's name, else ``train``.
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..location import Location, RemotePath, location
from ..masks import mask_box, mask_to_rle, segmentation_to_mask
from ..types import ImageRecord, PlannedImage, Target
from .base import (
    SOURCES,
    Source,
    check_image_size,
    check_limit,
    id_sort_key,
    source_error,
)

__all__ = ["HfSource", "PRESETS", "parse_columns"]

ROLES = ("image", "text", "mask", "rle", "polygon", "bbox", "image_id", "ann_id", "category", "bbox_format")
GEOMETRY = ("mask", "rle", "polygon", "bbox")
BBOX_FORMATS = ("xywh", "xyxy", "xyxy_norm")

#: Column maps of the common RefCOCO-family layouts (FORMATS.md section 4; the dataset cards).
PRESETS: dict[str, dict[str, str]] = {
    # lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg: answer = the expressions, one flat polygon, COCO xywh
    "lmms-refcoco": {"image": "image", "text": "answer", "polygon": "segmentation", "bbox": "bbox",
                     "bbox_format": "xywh", "ann_id": "question_id", "image_id": "file_name"},
    # Ricky06662/refcoco_*, refcocog_*, ReasonSeg_* (Seg-Zero, VisionReasoner): full bool mask, xyxy px
    "visionreasoner": {"image": "image", "text": "text", "mask": "mask", "bbox": "bbox", "bbox_format": "xyxy",
                       "image_id": "image_id", "ann_id": "ann_id"},
}
CACHE_BYTES = 2 << 30  # decoded row groups kept for the images that follow (least recently used out)
_SPLIT_RE = re.compile(r"^([A-Za-z0-9_+]+?)-\d{5}-of-\d{5}")


def parse_columns(spec: str | dict | None, preset: str | None) -> dict[str, str]:
    """The role -> column map: the preset's, then ``spec`` (``"image=img,text=caption"``)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown hf preset {preset!r}; expected one of {sorted(PRESETS)}")
    out = dict(PRESETS[preset]) if preset else {}
    if isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise ValueError(f"--columns entry {part!r} is not role=column")
            k, v = (s.strip() for s in part.split("=", 1))
            items[k] = v
        spec = items
    for k, v in (spec or {}).items():
        if k not in ROLES:
            raise ValueError(f"unknown --columns role {k!r}; roles: {list(ROLES)}")
        if not isinstance(v, str) or not v:
            raise ValueError(f"--columns role {k!r} needs a column name")
        out[k] = v
    for need in ("image", "text"):
        if need not in out:
            raise ValueError(f"hf source needs an {need}= column (--columns or --preset)")
    if not any(g in out for g in GEOMETRY):
        raise ValueError("hf source needs one of mask=, rle=, polygon=, bbox= (--columns or --preset)")
    if out.get("bbox_format", "xywh") not in BBOX_FORMATS:
        raise ValueError(f"bbox_format must be one of {BBOX_FORMATS}, got {out['bbox_format']!r}")
    return out


@dataclass
class _File:
    path: Location
    kind: str  # parquet | arrow
    split: str


@dataclass
class _Group:
    split: str
    image_id: Any
    rows: list[tuple[int, int, int]] = field(default_factory=list)  # (file, chunk, row)


def _split_of(path: Path, default: str = "train") -> str:
    m = _SPLIT_RE.match(path.name)
    return m.group(1) if m else default


def _find_files(data_files: Any) -> list[_File]:
    specs = [data_files] if isinstance(data_files, (str, Path)) else list(data_files or [])
    if not specs:
        raise ValueError("hf source needs data_files= (parquet files / glob, or a save_to_disk folder)")
    out: list[_File] = []
    for spec in specs:
        p = location(spec)
        if p.is_dir() and not (isinstance(p, RemotePath) and any(c in str(spec) for c in "*?[")):
            if (p / "dataset_dict.json").is_file():
                splits = json.loads((p / "dataset_dict.json").read_text()).get("splits", [])
                for s in splits:
                    out += [_File(f, "arrow", str(s)) for f in sorted((p / str(s)).glob("*.arrow"))]
            elif (p / "state.json").is_file():
                state = json.loads((p / "state.json").read_text())
                names = [d["filename"] for d in state.get("_data_files", [])] or sorted(x.name for x in p.glob("*.arrow"))
                out += [_File(p / n, "arrow", str(state.get("_split") or "train")) for n in names]
            else:
                out += [_File(f, "parquet", _split_of(f)) for f in sorted(p.glob("**/*.parquet"))]
            continue
        if isinstance(p, RemotePath):
            matches = [RemotePath(f"{p.protocol}://{k}") for k in sorted(p.fs.glob(p.key))] \
                if any(c in str(spec) for c in "*?[") else [p]
        else:
            matches = sorted(glob.glob(str(spec), recursive=True)) if any(c in str(spec) for c in "*?[") else [str(spec)]
        for m in matches:
            f = location(m)
            if not f.is_file():
                raise FileNotFoundError(f"hf data file not found: {f}")
            out.append(_File(f, "arrow" if f.suffix == ".arrow" else "parquet", _split_of(f)))
    if not out:
        raise FileNotFoundError(f"no parquet / arrow files match {data_files!r}")
    return out


def _parquet(path: Location) -> pq.ParquetFile:
    """A parquet file, local or at an fsspec URL (read by ranges through its file object)."""
    return pq.ParquetFile(path.open("rb") if isinstance(path, RemotePath) else path)


def _chunks(f: _File) -> tuple[int, Any]:
    """(number of chunks, reader(k, columns) -> pyarrow Table) of one file."""
    if f.kind == "parquet":
        pf = _parquet(f.path)
        return pf.num_row_groups, lambda k, cols: pf.read_row_group(k, columns=cols)
    source = pa.BufferReader(f.path.read_bytes()) if isinstance(f.path, RemotePath) else pa.memory_map(str(f.path))
    table = pa.ipc.open_stream(source).read_all()
    return 1, lambda k, cols: table if cols is None else table.select(cols)


def _image_bytes(v: Any) -> bytes | None:
    if isinstance(v, dict):
        v = v.get("bytes")
    return bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else None


def _texts(v: Any) -> list[str]:
    vals = [v] if isinstance(v, str) else (list(v) if isinstance(v, (list, tuple)) else [])
    return [" ".join(t.split()) for t in vals if isinstance(t, str) and t.strip()]


def _box_xyxy(v: Any, fmt: str, w: int, h: int) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) != 4 or not all(isinstance(x, (int, float)) for x in v):
        raise ValueError(f"bbox must be 4 numbers, got {v!r}")
    a, b, c, d = (float(x) for x in v)
    if fmt == "xywh":
        c, d = a + c, b + d
    elif fmt == "xyxy_norm":
        a, b, c, d = a * w, b * h, c * w, d * h
    if not all(math.isfinite(x) for x in (a, b, c, d)) or c <= a or d <= b:
        raise ValueError(f"degenerate bbox {v!r} ({fmt})")
    return [a, b, c, d]


def _geometry(row: dict, cols: dict[str, str], h: int, w: int) -> np.ndarray:
    """The row's target mask (bool [h, w]) from its first present geometry column."""
    for role in GEOMETRY:
        if role not in cols or row.get(cols[role]) is None:
            continue
        v = row[cols[role]]
        if isinstance(v, str) and role in ("rle", "polygon", "bbox"):
            v = json.loads(v)  # a JSON-encoded column
        if role == "mask":
            png = _image_bytes(v)
            if png is not None:  # an encoded mask image (PNG): foreground = nonzero
                with Image.open(io.BytesIO(png)) as im:
                    v = np.asarray(im.convert("L")) > 0
            m = np.asarray(v, dtype=bool)
            if m.shape != (h, w):
                raise ValueError(f"mask column is {m.shape}, the image is {h}x{w} (height x width)")
            return m
        if role == "rle":
            return segmentation_to_mask(dict(v), h, w)
        if role == "polygon":
            parts = list(v)
            if parts and all(isinstance(x, (int, float)) for x in parts):
                parts = [parts]  # one flat polygon (lmms-lab)
            return segmentation_to_mask([list(p) for p in parts], h, w)
        x0, y0, x1, y1 = _box_xyxy(v, cols.get("bbox_format", "xywh"), w, h)
        m = np.zeros((h, w), bool)
        m[max(0, math.floor(y0)):max(0, math.ceil(y1)), max(0, math.floor(x0)):max(0, math.ceil(x1))] = True
        return m
    raise ValueError(f"no geometry: the {[cols[g] for g in GEOMETRY if g in cols]} column(s) are empty")


def _plain_id(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    return v if isinstance(v, (int, str)) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class HfOptions:
    data_files: str | None = None  # parquet files / glob, or a save_to_disk folder (required)
    columns: str | dict[str, str] | None = None  # role=column,...; overrides the preset
    preset: str | None = None  # lmms-refcoco | visionreasoner
    split: str = "all"  # all, or one split of the data files
    limit: int | None = None  # first N images after sorting

    def __post_init__(self) -> None:
        if self.data_files is None:
            raise ValueError("data_files: required for hf (--data-files)")


class HfSource(Source):
    """Rows of parquet / arrow files as grounding targets (module docstring).

    Options: ``data_files`` (required), ``columns`` (str or dict), ``preset``, ``split`` (``all``
    or one split name), ``limit`` (first N images after sorting).
    """

    name = "hf"

    def __init__(self, *, data_files: Any, columns: str | dict | None = None, preset: str | None = None,
                 split: str = "all", limit: int | None = None) -> None:
        self.cols = parse_columns(columns, preset)
        self.preset = preset
        self.files = _find_files(data_files)
        self.data_files = data_files
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be 'all' or a split name, got {split!r}")
        if split != "all":
            available = sorted({f.split for f in self.files})
            self.files = [f for f in self.files if f.split == split]
            if not self.files:
                raise ValueError(f"split {split!r} not among the data files' splits {available}")
        self.split = split
        self.limit = check_limit(limit)

    def describe(self) -> dict:
        return {"source": self.name, "files": [str(f.path.resolve()) for f in self.files],
                "splits": sorted({f.split for f in self.files}), "columns": self.cols, "preset": self.preset,
                "split": self.split, "limit": self.limit}

    def _check_schema(self, names: list[str], f: _File) -> None:
        missing = sorted({c for r, c in self.cols.items() if r != "bbox_format" and c not in names})
        if missing:
            raise ValueError(f"{f.path}: column(s) {missing} not in the file (columns: {names})")

    def _plan(self) -> list[_Group]:
        """Pass 1: group rows by image (ids and image hashes only, no decoding)."""
        groups: dict[tuple[str, Any], _Group] = {}
        for fi, f in enumerate(self.files):
            count, read = _chunks(f)
            id_col = self.cols.get("image_id")
            for k in range(count):
                cols = [id_col] if id_col else [self.cols["image"]]
                if k == 0:
                    self._check_schema(read(0, None).schema.names if f.kind == "arrow"
                                       else _parquet(f.path).schema_arrow.names, f)
                values = read(k, cols).column(0).to_pylist()
                for r, v in enumerate(values):
                    if id_col:
                        image_id = _plain_id(v)
                        if image_id is None:
                            image_id = f"row{fi}-{k}-{r}"  # null id: its own record (errors name it)
                    else:
                        data = _image_bytes(v)
                        image_id = "img" + hashlib.sha256(data).hexdigest()[:16] if data else f"row{fi}-{k}-{r}"
                    g = groups.setdefault((f.split, image_id), _Group(f.split, image_id))
                    g.rows.append((fi, k, r))
        out = sorted(groups.values(), key=lambda g: (g.split, id_sort_key(g.image_id)))
        return out if self.limit is None else out[: self.limit]

    def plan(self) -> Iterator[PlannedImage]:
        """Each image planned by its rows' places (file, chunk, row): ids only, nothing decoded."""
        for g in self._plan():
            yield PlannedImage(self.name, g.split, g.image_id, g)

    def _resolve(self, planned: PlannedImage) -> ImageRecord:
        g = planned.payload
        return self._record(g, [self._row(fi, k, r) for fi, k, r in g.rows], g.rows)

    def _row(self, fi: int, k: int, r: int) -> dict:
        """One row, its chunk decoded once and kept while it fits in ``CACHE_BYTES`` (least
        recently used first out): a shard's images are consecutive, so are their rows."""
        cache = self.__dict__.setdefault("_chunk_cache", OrderedDict())
        if (fi, k) not in cache:
            if "_readers" not in self.__dict__:
                self._readers = [_chunks(f)[1] for f in self.files]
            wanted = sorted({c for role, c in self.cols.items() if role != "bbox_format"})
            table = self._readers[fi](k, wanted)
            cache[(fi, k)] = (table.to_pylist(), table.nbytes)
            while sum(v[1] for v in cache.values()) > CACHE_BYTES and len(cache) > 1:
                cache.popitem(last=False)
        cache.move_to_end((fi, k))
        return cache[(fi, k)][0][r]

    def _record(self, g: _Group, rows: list[dict], where: list[tuple[int, int, int]]) -> ImageRecord:
        err = lambda reason, **kw: source_error(self.name, g.split, g.image_id, reason, **kw)  # noqa: E731
        rec = ImageRecord(source=self.name, split=g.split, image_id=g.image_id, width=0, height=0, targets=[])
        data = next((b for b in (_image_bytes(r.get(self.cols["image"])) for r in rows) if b), None)
        if data is None:
            rec.errors.append(err(f"no embedded image bytes in column {self.cols['image']!r}",
                                  detail=f"rows {[f'{self.files[a].path.name}:{b}:{c}' for a, b, c in where]}"))
            return rec
        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except Exception as e:  # PIL raises many types for corrupt data
            rec.errors.append(err(f"cannot read the embedded image: {type(e).__name__}: {e}"))
            return rec
        problem = check_image_size(w, h)
        if problem:
            rec.errors.append(err(problem))
            return rec
        rec.width, rec.height, rec.image_bytes = int(w), int(h), data
        merged: dict[Any, dict] = {}
        order: list[Any] = []
        ann_col = self.cols.get("ann_id")
        for n, (row, (fi, k, r)) in enumerate(zip(rows, where)):
            ann_id = _plain_id(row.get(ann_col)) if ann_col else None
            tid = f"ann{ann_id}" if ann_id is not None else f"row{fi}-{k}-{r}"
            texts = _texts(row.get(self.cols["text"]))
            if tid in merged:
                merged[tid]["sentences"] += [t for t in texts if t not in merged[tid]["sentences"]]
                continue
            merged[tid] = {"row": row, "ann_id": ann_id, "sentences": list(texts), "where": (fi, k, r)}
            order.append(tid)
        for tid in sorted(order, key=lambda t: (id_sort_key(merged[t]["ann_id"]) if merged[t]["ann_id"] is not None
                                                else (2, 0, t))):
            m = merged[tid]
            e = lambda reason: err(reason, ann_id=m["ann_id"], ref_id=tid)  # noqa: E731
            if not m["sentences"]:
                rec.errors.append(e(f"no text in column {self.cols['text']!r}"))
                continue
            try:
                mask = _geometry(m["row"], self.cols, rec.height, rec.width)
            except (ValueError, TypeError) as ex:
                rec.errors.append(e(f"bad geometry: {ex}"))
                continue
            box = mask_box(mask)
            if box is None:
                rec.errors.append(e("empty mask"))
                continue
            cat_col = self.cols.get("category")
            category = row_cat if (cat_col and isinstance(row_cat := m["row"].get(cat_col), str)) else m["sentences"][0]
            rec.targets.append(Target(target_id=tid, sentences=m["sentences"], category=category,
                                      mask_rle=mask_to_rle(mask), box=box, ann_id=m["ann_id"]))
        return rec


SOURCES.register("hf", HfOptions, lambda o: HfSource(**asdict(o)))
