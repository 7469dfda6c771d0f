"""Shared writer of the JSONL formats (llamafactory, swift, trl): one sorted-key JSON object a line."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

from ..dataset import Sample
from .registry import atomic_path
from .rows import ExportStats, MediaWriter, Row

# layout(row, image_path, cand_path) -> the JSON object of one line
Layout = Callable[[Row, str, str], dict]


def write_jsonl(out: Path, samples: Iterator[tuple[Sample, list[Row]]], media: MediaWriter, stats: ExportStats,
                layout: Layout) -> None:
    """Extract each sample's media once, then write its rows through ``layout``; atomic."""
    tmp = atomic_path(out)
    with open(tmp, "w", encoding="utf-8") as f:
        for sample, rows in samples:
            image, cand = media.sample(sample)
            for row in rows:
                f.write(json.dumps(layout(row, image, cand), sort_keys=True, ensure_ascii=False) + "\n")
                stats.rows += 1
    os.replace(tmp, out)


def base_columns(row: Row, image: str, cand: str) -> dict:
    """The columns every JSONL row keeps: identity, ``solution``, the reward columns, media paths."""
    return dict(row.fields, images=[image], cand_npz=cand)
