"""``export swift``: ms-swift's standard multimodal JSONL (``messages`` with ``<image>`` tags + ``images``).

ms-swift reads ``{"messages": [{"role", "content"}...], "images": [path]}`` and replaces each
``<image>`` tag by the next image; the other columns (``solution`` and the reward columns) reach
GRPO reward plugins (ORM) as keyword arguments.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..dataset import Sample
from .jsonl import base_columns, write_jsonl
from .llamafactory import messages
from .registry import ExportFormat, register
from .rows import ExportStats, MediaWriter, Row


def layout(row: Row, image: str, cand: str) -> dict:
    return dict(base_columns(row, image, cand), messages=messages(row))


def write(out: Path, samples: Iterator[tuple[Sample, list[Row]]], media: MediaWriter, stats: ExportStats) -> None:
    write_jsonl(out, samples, media, stats, layout)


FORMAT = register(ExportFormat("swift", ".jsonl", write, "ms-swift messages + images JSONL", True))
